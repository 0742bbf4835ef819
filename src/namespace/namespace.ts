/**
 * The directory tree seen through the mount: built from ListObjectsV2 with a '/' delimiter and
 * HEAD, cached for the metadata TTL. Keys are split on '/'; a "dir/" marker object makes a
 * directory; a name that is both an object and a prefix shows as the directory (the object is
 * shadowed and logged), as mountpoint-s3 does; keys that cannot be POSIX names are skipped.
 * s3fs's legacy "name_$folder$" objects are directories too.
 *
 * A lookup costs one request in the common case: a HEAD of the key, and a LIST of "name/" (one
 * key) only when that misses. Without a fresh listing of the parent, a name that is both an
 * object and a prefix is the object to a lookup (finding the prefix too would cost a second
 * request on every lookup); any listing of the parent shows the directory, as above.
 *
 * Once the TTL has run out, the entries of a directory the mount has listed are revalidated by
 * listing it again (a few requests), not by a request per entry: a pass over a listed directory
 * costs what its listing costs. A listed object whose ETag and LastModified are the ones known
 * keeps its known metadata; one that changed is a new version (a new inode, a new staged file)
 * whose metadata is read with HEAD when it is looked up.
 *
 * A node's user metadata (its mode, owner and times) comes from HEAD: a listing carries none
 * (and never replaces what the mount knows). A listing is answered without it, so `ls` of a large
 * directory costs its listing alone; a lookup of a listed node reads its metadata with a HEAD,
 * and those of the entries after it at once, ahead of the stats that follow (`ls -l`).
 */
import createDebug from 'debug';
import { errorMessage, FsError } from '../errors';
import type { ObjectInfo, ObjectStore, StoreChecksum } from '../store/object-store';
import { SingleFlight } from '../util/single-flight';
import { InodeTable, ROOT_INO } from './inode-table';
import { baseName, checkPath, dirPrefixOf, isShowableName, joinPath, keyOf, parentOf } from './paths';

const debug = createDebug('stagefs:namespace');

/** Entries after a looked-up one whose metadata is read at once, ahead of the lookups that follow. */
const STAT_AHEAD = 32;
/**
 * The largest directory revalidated by listing it again when a lookup finds its entries expired
 * (20 pages of 1,000 keys): someone listed it, so a pass over it is likely, and its listing costs
 * less than a HEAD per entry. A larger one is revalidated one HEAD per name looked up.
 */
const RELIST_MAX_ENTRIES = 20_000;
/** The suffix of s3fs's legacy directory objects. */
const LEGACY_DIR_SUFFIX = '_$folder$';

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
  /** The store's checksum of the whole object, when HEAD gave one. */
  checksum?: StoreChecksum;
  /** When the metadata was learned. */
  metadataAt?: number;
}

export interface DirNode {
  kind: 'dir';
  path: string;
  ino: number;
  mtime: Date;
  /** The user metadata of the directory's marker object ({} when it has none). */
  metadata?: Record<string, string>;
  metadataAt?: number;
  /** When an entry was last made, removed or renamed in it through the mount (ms), if it was. */
  entriesChangedAt?: number;
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
  /** HEADs under way for nodes' metadata, so a lookup joins the one read ahead for it. */
  private readonly metadataReads = new Map<Node, Promise<void>>();
  /** Each cached listing's nodes in order, to find the entries after a looked-up one. */
  private readonly listingOrder = new WeakMap<Map<string, Node>, { nodes: Node[]; index: Map<string, number> }>();
  /**
   * Listings in flight, with what the mount changed in their directory meanwhile: the store may
   * have answered before those changes, so they are applied to the listing; a directory
   * forgotten meanwhile is not cached from it.
   */
  private readonly listingsUnderway = new Map<string, { changes: Map<string, Node | null>; forgotten: boolean }>();
  private readonly shadowWarned = new Set<string>();
  /** The mount root's attributes live here, never on the bucket (or prefix) itself. */
  private rootMetadata: Record<string, string> = {};
  /**
   * Directories whose entries changed through the mount, and when: their mtime and ctime move
   * then, as on a local disk. Kept in memory only (a PUT on the marker per entry would double
   * the cost of every create), so a remount shows the stored times again.
   */
  private readonly entriesChanged = new Map<string, number>();

  constructor(options: NamespaceOptions) {
    this.store = options.store;
    this.prefix = options.prefix;
    this.ttlMs = options.ttlMs;
    this.now = options.now ?? Date.now;
    this.mountedAt = new Date(this.now());
  }

  get root(): DirNode {
    return {
      kind: 'dir',
      path: '/',
      ino: ROOT_INO,
      mtime: this.mountedAt,
      metadata: this.rootMetadata,
      metadataAt: this.now(),
      entriesChangedAt: this.entriesChanged.get('/'),
    };
  }

  /** An entry of directory `path` was made, removed or renamed through the mount just now. */
  touchEntries(path: string): void {
    const now = this.now();
    this.entriesChanged.set(path, now);
    const cached = this.nodes.get(path)?.value;
    if (cached?.kind === 'dir') cached.entriesChangedAt = now;
  }

  /** The times of directory `path` were just stored: they now say all that its entries' changes did. */
  entriesSettled(path: string): void {
    this.entriesChanged.delete(path);
    const cached = this.nodes.get(path)?.value;
    if (cached?.kind === 'dir') cached.entriesChangedAt = undefined;
  }

  /** New attributes of the mount root, kept in memory for the life of the mount. */
  setRootMetadata(metadata: Record<string, string>): void {
    this.rootMetadata = metadata;
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
    return [...(await this.listing(path)).values()];
  }

  /** Whether the mount knows `node`'s metadata: not so for a node known only from a listing. */
  metadataKnown(node: Node): boolean {
    return this.metadataFresh(node);
  }

  /** Drops what is cached about `path` and its parent's listing, after the mount changed it. */
  forget(path: string): void {
    this.nodes.delete(path);
    this.forgetListing(parentOf(path));
    this.forgetListing(path);
  }

  /** Forgets everything cached at or below `path`, and its parent's listing. */
  forgetTree(path: string): void {
    const below = path === '/' ? '/' : path + '/';
    for (const cached of [this.nodes, this.listings]) {
      for (const known of [...cached.keys()]) {
        if (known === path || known.startsWith(below)) cached.delete(known);
      }
    }
    for (const [listed, underway] of this.listingsUnderway) {
      if (listed === path || listed.startsWith(below)) underway.forgotten = true;
    }
    this.forgetListing(parentOf(path));
  }

  private forgetListing(path: string): void {
    this.listings.delete(path);
    const underway = this.listingsUnderway.get(path);
    if (underway) underway.forgotten = true;
  }

  /** Records a node the mount itself created or changed (its metadata included), so it is visible at once. */
  remember(node: Node): void {
    if (node.metadata) node.metadataAt = this.now();
    this.nodes.set(node.path, { value: node, fetchedAt: this.now() });
    const listing = this.listings.get(parentOf(node.path));
    if (listing) listing.value.set(baseName(node.path), node);
    this.listingsUnderway.get(parentOf(node.path))?.changes.set(baseName(node.path), node);
  }

  /** Records that `path` no longer exists. */
  remove(path: string): void {
    this.nodes.set(path, { value: null, fetchedAt: this.now() });
    this.listings.get(parentOf(path))?.value.delete(baseName(path));
    this.listingsUnderway.get(parentOf(path))?.changes.set(baseName(path), null);
    this.forgetListing(path);
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
      checksum: info.checksum,
    };
  }

  dirNode(path: string, metadata?: Record<string, string>): DirNode {
    return { kind: 'dir', path, ino: this.inodes.inoOf(path), mtime: this.mountedAt, metadata, entriesChangedAt: this.entriesChanged.get(path) };
  }

  private fresh<T>(cached: Cached<T> | undefined): cached is Cached<T> {
    return cached !== undefined && this.now() - cached.fetchedAt < this.ttlMs;
  }

  private async lookupOrNull(path: string): Promise<Node | null> {
    const cached = this.nodes.get(path);
    // A listing may have shown a node without its metadata (a new version): that is read below.
    if (this.fresh(cached) && (cached.value === null || this.metadataFresh(cached.value))) return cached.value;
    const parent = parentOf(path);
    const parentListing = this.listings.get(parent);
    // A listed directory whose listing expired is listed again: all its entries at once.
    const relist = parentListing !== undefined && parentListing.value.size <= RELIST_MAX_ENTRIES;
    const children = this.fresh(parentListing) ? parentListing.value : relist ? await this.listing(parent) : undefined;
    const listed = children?.get(baseName(path));
    if (children && (!listed || this.metadataFresh(listed))) return listed ?? null;
    if (children && listed) this.readAhead(children, baseName(path));
    return this.lookups.run(path, async () => {
      const node = listed ? await this.completeListed(listed) : await this.fetchNode(path);
      this.nodes.set(path, { value: node, fetchedAt: this.now() });
      return node;
    });
  }

  /**
   * A node a fresh listing shows, with the metadata the listing lacks: one HEAD, of the object or
   * of the directory's marker (none there: an implicit directory, no metadata).
   */
  private async completeListed(listed: Node): Promise<Node | null> {
    let info: ObjectInfo | undefined;
    try {
      if (listed.kind === 'dir') {
        await this.fillMetadata([listed]);
        return listed;
      }
      await this.metadataReads.get(listed);
      if (this.metadataFresh(listed)) return listed;
      info = await this.store.head(listed.key);
    } catch (err) {
      // The store cannot be asked now: the fresh listing still answers, with default attributes.
      debug('the metadata of %s is unreadable, answering from the listing: %s', listed.path, errorMessage(err));
      return listed;
    }
    if (!info) return this.fetchNode(listed.path); // gone since the listing, or a directory now
    const node = info.etag === listed.etag ? listed : this.fileNode(listed.path, info);
    node.metadata = info.metadata ?? {};
    node.checksum = info.checksum;
    node.metadataAt = this.now();
    if (node !== listed) this.listings.get(parentOf(node.path))?.value.set(baseName(node.path), node);
    return node;
  }

  private metadataFresh(node: Node): boolean {
    return node.metadata !== undefined && node.metadataAt !== undefined && this.now() - node.metadataAt < this.ttlMs;
  }

  /** Reads the metadata of the nodes that lack it (or hold it past the TTL). */
  private async fillMetadata(nodes: Node[]): Promise<void> {
    await Promise.all(nodes.filter((node) => !this.metadataFresh(node)).map((node) => this.readMetadata(node)));
  }

  /** One HEAD for `node`'s metadata, shared by everyone who asks while it is under way. */
  private readMetadata(node: Node): Promise<void> {
    const underway = this.metadataReads.get(node);
    if (underway) return underway;
    const read = (async () => {
      const info = await this.store.head(node.kind === 'file' ? node.key : dirPrefixOf(this.prefix, node.path));
      // Another version than the one listed: its metadata is not this node's (its lookup reads it).
      if (node.kind === 'file' && info && info.etag !== node.etag) return;
      // An object gone since the listing keeps the listing's word until the next one.
      node.metadata = info?.metadata ?? {};
      if (node.kind === 'file') node.checksum = info?.checksum;
      node.metadataAt = this.now();
    })().finally(() => this.metadataReads.delete(node));
    this.metadataReads.set(node, read);
    return read;
  }

  /** Starts reading the metadata of the entries listed after `name`, which `ls -l` stats next. */
  private readAhead(children: Map<string, Node>, name: string): void {
    const order = this.orderOf(children);
    const at = order.index.get(name);
    if (at === undefined) return;
    for (const node of order.nodes.slice(at + 1, at + 1 + STAT_AHEAD)) {
      if (this.metadataFresh(node) || this.metadataReads.has(node)) continue;
      this.readMetadata(node).catch((err) => debug('reading the metadata of %s ahead: %s', node.path, errorMessage(err)));
    }
  }

  private orderOf(children: Map<string, Node>): { nodes: Node[]; index: Map<string, number> } {
    let order = this.listingOrder.get(children);
    if (!order) {
      const nodes = [...children.values()];
      order = { nodes, index: new Map(nodes.map((node, i) => [baseName(node.path), i])) };
      this.listingOrder.set(children, order);
    }
    return order;
  }

  /**
   * Where `path` stands in its parent's fresh listing, and the entries at positions from..to of
   * it; undefined when the parent has no fresh listing or `path` is not in it.
   */
  listingPosition(path: string): { position: number; entries(from: number, to: number): Node[] } | undefined {
    const listing = this.listings.get(parentOf(path));
    if (!this.fresh(listing)) return undefined;
    const children = listing.value;
    const order = this.orderOf(children);
    const position = order.index.get(baseName(path));
    if (position === undefined) return undefined;
    // The listing's own node for each: a lookup may have replaced one since the order was taken (a new version).
    const current = (node: Node) => children.get(baseName(node.path));
    return { position, entries: (from, to) => order.nodes.slice(from, to + 1).flatMap((node) => current(node) ?? []) };
  }

  /**
   * What the mount knew of `node`'s metadata, when it is still about the same object. A listed
   * object with the known ETag and LastModified is the version whose metadata the mount knows
   * (a copy onto itself that changes only metadata keeps the ETag but not LastModified), so the
   * listing confirms it however old. A directory's marker is not in its parent's listing: its
   * metadata is kept only within the TTL.
   */
  private carryMetadata(node: Node, listedAt: number): void {
    const known = this.nodes.get(node.path)?.value;
    if (!known || known.kind !== node.kind || known.metadata === undefined) return;
    if (known.kind === 'file' && node.kind === 'file') {
      if (known.etag !== node.etag || !sameSecond(known.mtime, node.mtime)) return;
      node.metadata = known.metadata;
      node.checksum = known.checksum;
      node.metadataAt = listedAt;
      return;
    }
    if (!this.metadataFresh(known)) return;
    node.metadata = known.metadata;
    node.metadataAt = known.metadataAt;
  }

  /** HEAD the key; only when no object has it, probe for the directory with one LIST of its prefix. */
  private async fetchNode(path: string): Promise<Node | null> {
    const parent = parentOf(path);
    if (parent !== '/') {
      const parentNode = await this.lookupOrNull(parent);
      if (!parentNode) return null;
      if (parentNode.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${parent}`);
    }
    const key = keyOf(this.prefix, path);
    const info = await this.store.head(key);
    if (info) {
      const node = this.fileNode(path, info);
      node.metadataAt = this.now();
      node.metadata ??= {};
      return node;
    }
    const children = await this.store.list(key + '/', { maxKeys: 1 });
    if (children.objects.length === 0 && children.prefixes.length === 0) return null;
    const node = this.dirNode(path);
    // The marker object, when there is one, comes first in the listing of its prefix.
    if (children.objects[0]?.key === key + '/') await this.fillMetadata([node]);
    else node.metadata = {};
    node.metadataAt = this.now();
    return node;
  }

  private listing(path: string): Promise<Map<string, Node>> {
    const cached = this.listings.get(path);
    if (this.fresh(cached)) return Promise.resolve(cached.value);
    return this.listingsInFlight.run(path, async () => {
      const underway = { changes: new Map<string, Node | null>(), forgotten: false };
      this.listingsUnderway.set(path, underway);
      try {
        const listed = await this.fetchListing(path);
        for (const [name, node] of underway.changes) {
          if (node) listed.set(name, node);
          else listed.delete(name);
        }
        const children = underway.changes.size > 0 ? sortedByName(listed) : listed;
        if (underway.forgotten) return children;
        const fetchedAt = this.now();
        this.listings.set(path, { value: children, fetchedAt });
        for (const child of children.values()) this.nodes.set(child.path, { value: child, fetchedAt });
        return children;
      } finally {
        this.listingsUnderway.delete(path);
      }
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
      if (name.endsWith(LEGACY_DIR_SUFFIX) && name.length > LEGACY_DIR_SUFFIX.length) {
        const dirName = name.slice(0, -LEGACY_DIR_SUFFIX.length);
        if (!this.showable(dirName, info.key) || children.has(dirName)) continue;
        const legacy = this.dirNode(joinPath(path, dirName), {});
        legacy.metadataAt = this.now();
        children.set(dirName, legacy);
        continue;
      }
      if (!this.showable(name, info.key)) continue;
      if (children.has(name)) {
        this.warnShadowed(info.key);
        continue;
      }
      children.set(name, this.fileNode(joinPath(path, name), info));
    }
    const listedAt = this.now();
    for (const child of children.values()) this.carryMetadata(child, listedAt);
    debug('listed %s: %d entries', path, children.size);
    return sortedByName(children);
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

/** LastModified from a listing has milliseconds, from HEAD (an HTTP date) whole seconds. */
function sameSecond(a: Date, b: Date): boolean {
  return Math.floor(a.getTime() / 1000) === Math.floor(b.getTime() / 1000);
}

function sortedByName(children: Map<string, Node>): Map<string, Node> {
  return new Map([...children].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
