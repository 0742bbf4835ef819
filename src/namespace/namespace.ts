/**
 * The directory tree seen through the mount: built from ListObjectsV2 with a '/' delimiter and
 * HEAD, cached for the metadata TTL. Keys are split on '/'; a "dir/" marker object makes a
 * directory; a name that is both an object and a prefix shows as the directory (the object is
 * shadowed and logged), as mountpoint-s3 does; keys that cannot be POSIX names are skipped.
 */
import createDebug from 'debug';
import { FsError } from '../errors';
import type { ObjectInfo, ObjectStore } from '../store/object-store';
import { SingleFlight } from '../util/single-flight';
import { InodeTable, ROOT_INO } from './inode-table';
import { baseName, checkPath, dirPrefixOf, isShowableName, joinPath, keyOf, parentOf } from './paths';

const debug = createDebug('stagefs:namespace');

export interface FileNode {
  kind: 'file';
  path: string;
  ino: number;
  key: string;
  size: number;
  etag: string;
  mtime: Date;
  /** User metadata, known when the object was read with HEAD or written by this mount. */
  metadata?: Record<string, string>;
}

export interface DirNode {
  kind: 'dir';
  path: string;
  ino: number;
  mtime: Date;
}

export type Node = FileNode | DirNode;

interface Cached<T> {
  value: T;
  fetchedAt: number;
}

export interface NamespaceOptions {
  store: ObjectStore;
  prefix: string;
  ttlMs: number;
  now?: () => number;
}

export class Namespace {
  readonly inodes = new InodeTable();
  private readonly store: ObjectStore;
  private readonly prefix: string;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly mountedAt: Date;
  /** Path -> node, or null for a name known not to exist. */
  private readonly nodes = new Map<string, Cached<Node | null>>();
  /** Directory path -> its complete listing. */
  private readonly listings = new Map<string, Cached<Map<string, Node>>>();
  private readonly lookups = new SingleFlight<string, Node | null>();
  private readonly listingsInFlight = new SingleFlight<string, Map<string, Node>>();
  private readonly shadowWarned = new Set<string>();

  constructor(options: NamespaceOptions) {
    this.store = options.store;
    this.prefix = options.prefix;
    this.ttlMs = options.ttlMs;
    this.now = options.now ?? Date.now;
    this.mountedAt = new Date(this.now());
  }

  get root(): DirNode {
    return { kind: 'dir', path: '/', ino: ROOT_INO, mtime: this.mountedAt };
  }

  /** The node at `path`, no older than the TTL; FsError ENOENT when there is none. */
  async lookup(path: string): Promise<Node> {
    checkPath(path);
    if (path === '/') return this.root;
    const node = await this.lookupOrNull(path);
    if (!node) throw new FsError('ENOENT', `no such file or directory: ${path}`);
    return node;
  }

  /** The node at `path`, fetched from the store even when a cached answer is still fresh. */
  async lookupFresh(path: string): Promise<Node> {
    this.forget(path);
    return this.lookup(path);
  }

  async lookupFile(path: string): Promise<FileNode> {
    const node = await this.lookup(path);
    if (node.kind !== 'file') throw new FsError('EISDIR', `is a directory: ${path}`);
    return node;
  }

  /** The children of the directory at `path`, sorted by name. */
  async readdir(path: string): Promise<Node[]> {
    const dir = await this.lookup(path);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    const children = await this.listing(path);
    return [...children.values()];
  }

  /** Drops what is cached about `path` and its parent's listing, after the mount changed it. */
  forget(path: string): void {
    this.nodes.delete(path);
    this.listings.delete(parentOf(path));
    this.listings.delete(path);
  }

  /** Forgets everything cached at or below `path`, and its parent's listing. */
  forgetTree(path: string): void {
    const below = path === '/' ? '/' : path + '/';
    for (const cached of [this.nodes, this.listings]) {
      for (const known of [...cached.keys()]) {
        if (known === path || known.startsWith(below)) cached.delete(known);
      }
    }
    this.listings.delete(parentOf(path));
  }

  /** Records a node the mount itself created or changed, so it is visible at once. */
  remember(node: Node): void {
    this.nodes.set(node.path, { value: node, fetchedAt: this.now() });
    const listing = this.listings.get(parentOf(node.path));
    if (listing) listing.value.set(baseName(node.path), node);
  }

  /** Records that `path` no longer exists. */
  remove(path: string): void {
    this.nodes.set(path, { value: null, fetchedAt: this.now() });
    this.listings.get(parentOf(path))?.value.delete(baseName(path));
    this.listings.delete(path);
  }

  fileNode(path: string, info: ObjectInfo): FileNode {
    return {
      kind: 'file',
      path,
      ino: this.inodes.fileIno(path, info.etag),
      key: info.key,
      size: info.size,
      etag: info.etag,
      mtime: info.mtime,
      metadata: info.metadata,
    };
  }

  dirNode(path: string): DirNode {
    return { kind: 'dir', path, ino: this.inodes.inoOf(path), mtime: this.mountedAt };
  }

  private fresh<T>(cached: Cached<T> | undefined): cached is Cached<T> {
    return cached !== undefined && this.now() - cached.fetchedAt < this.ttlMs;
  }

  private async lookupOrNull(path: string): Promise<Node | null> {
    const cached = this.nodes.get(path);
    if (this.fresh(cached)) return cached.value;
    const parentListing = this.listings.get(parentOf(path));
    if (this.fresh(parentListing)) return parentListing.value.get(baseName(path)) ?? null;
    return this.lookups.run(path, async () => {
      const node = await this.fetchNode(path);
      this.nodes.set(path, { value: node, fetchedAt: this.now() });
      return node;
    });
  }

  /** HEAD the key and probe the prefix at once; the directory wins when both exist. */
  private async fetchNode(path: string): Promise<Node | null> {
    const parent = parentOf(path);
    if (parent !== '/') {
      const parentNode = await this.lookupOrNull(parent);
      if (!parentNode) return null;
      if (parentNode.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${parent}`);
    }
    const key = keyOf(this.prefix, path);
    const [info, children] = await Promise.all([
      this.store.head(key),
      this.store.list(key + '/', { maxKeys: 1 }),
    ]);
    const isDir = children.objects.length > 0 || children.prefixes.length > 0;
    if (isDir) {
      if (info) this.warnShadowed(key);
      return this.dirNode(path);
    }
    return info ? this.fileNode(path, info) : null;
  }

  private listing(path: string): Promise<Map<string, Node>> {
    const cached = this.listings.get(path);
    if (this.fresh(cached)) return Promise.resolve(cached.value);
    return this.listingsInFlight.run(path, async () => {
      const children = await this.fetchListing(path);
      const fetchedAt = this.now();
      this.listings.set(path, { value: children, fetchedAt });
      for (const child of children.values()) this.nodes.set(child.path, { value: child, fetchedAt });
      return children;
    });
  }

  private async fetchListing(path: string): Promise<Map<string, Node>> {
    const dirPrefix = dirPrefixOf(this.prefix, path);
    const children = new Map<string, Node>();
    const files: ObjectInfo[] = [];
    let continuationToken: string | undefined;
    do {
      const page = await this.store.list(dirPrefix, { delimiter: '/', continuationToken });
      for (const prefix of page.prefixes) {
        const name = prefix.slice(dirPrefix.length, -1);
        if (this.showable(name, prefix)) children.set(name, this.dirNode(joinPath(path, name)));
      }
      files.push(...page.objects);
      continuationToken = page.continuationToken;
    } while (continuationToken);
    for (const info of files) {
      const name = info.key.slice(dirPrefix.length);
      if (name === '') continue; // the directory's own marker object
      if (!this.showable(name, info.key)) continue;
      if (children.has(name)) {
        this.warnShadowed(info.key);
        continue;
      }
      children.set(name, this.fileNode(joinPath(path, name), info));
    }
    debug('listed %s: %d entries', path, children.size);
    return new Map([...children].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  private showable(name: string, key: string): boolean {
    if (isShowableName(name)) return true;
    debug('skipping key %j: %j cannot be a file name', key, name);
    return false;
  }

  private warnShadowed(key: string): void {
    if (this.shadowWarned.has(key)) return;
    this.shadowWarned.add(key);
    debug('object %j is hidden by the directory of the same name', key);
  }
}
