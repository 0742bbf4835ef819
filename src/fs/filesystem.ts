/**
 * The filesystem operations behind every FUSE engine, as plain async functions that return data
 * or throw a typed FsError. Paths are absolute inside the mount.
 *
 * Reads of objects go through the staging cache. A file written through the mount becomes a
 * working copy (a local file) on its first change: created empty, emptied by O_TRUNC, or copied
 * whole from the object before the first write into it. Every handle of that path then reads and
 * writes the copy; it is uploaded on close and on fsync, and once clean and closed it becomes an
 * ordinary staged version of the new object.
 */
import { constants } from 'node:fs';
import createDebug from 'debug';
import type { CacheHandle, DirectAccess, StagingCache } from '../cache/staging-cache';
import type { ObjectVersion } from '../cache/staged-object';
import type { WorkingCopy } from '../cache/working-copy';
import { errorMessage, FsError, StoreError } from '../errors';
import type { FileNode, Namespace, Node } from '../namespace/namespace';
import { baseName, dirPrefixOf, keyOf, parentOf } from '../namespace/paths';
import type { ObjectInfo, ObjectStore } from '../store/object-store';
import { SingleFlight } from '../util/single-flight';
import { Writeback } from '../writeback/writeback';
import { nodeAttr, workingAttr, type Attr } from './attrs';
import { HandleTable } from './handle-table';
import { formatMetadata, parseMetadata, type PosixAttrs } from './object-metadata';

export type { Attr } from './attrs';

const debug = createDebug('stagefs:fs');
const warn = createDebug('stagefs:warn');

export interface DirEntry {
  name: string;
  attr: Attr;
}

export interface FsStats {
  blockSize: number;
  blocks: number;
  blocksFree: number;
  files: number;
  filesFree: number;
  nameMax: number;
}

/** What setattr may change; absent fields stay as they are. */
export interface AttrChanges extends PosixAttrs {
  size?: number;
}

export interface FilesystemOptions {
  namespace: Namespace;
  cache: StagingCache;
  store: ObjectStore;
  bucket: string;
  prefix: string;
  uid: number;
  gid: number;
  readOnly: boolean;
}

/** A file being written through the mount, under its current path. */
interface LocalFile {
  path: string;
  copy: WorkingCopy;
  /** The inode the kernel knows the file by while it is being written. */
  ino: number;
  unlinked: boolean;
}

interface OpenFile {
  path: string;
  writable: boolean;
  /** Until this path has a working copy: the object version it was opened on. */
  node: FileNode | undefined;
  clean: CacheHandle | undefined;
  local: LocalFile | undefined;
}

/** Linux's O_ACCMODE, which node's constants lack. */
const O_ACCMODE = 3;
const STATFS_BLOCK = 4096;
const MAX_U32 = 0xffffffff;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
/** Objects copied at once when a directory is renamed. */
const RENAME_COPIES_IN_FLIGHT = 8;
/** Copies of an object that keeps changing in the store before a rename or chmod gives up. */
const COPY_ATTEMPTS = 3;

export class Filesystem {
  private readonly namespace: Namespace;
  private readonly cache: StagingCache;
  private readonly store: ObjectStore;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly owner: { uid: number; gid: number };
  private readonly readOnly: boolean;
  private readonly handles = new HandleTable<OpenFile>();
  private readonly locals = new Map<string, LocalFile>();
  private readonly copyUps = new SingleFlight<string, LocalFile>();
  readonly writeback: Writeback;

  constructor(options: FilesystemOptions) {
    this.namespace = options.namespace;
    this.cache = options.cache;
    this.store = options.store;
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.owner = { uid: options.uid, gid: options.gid };
    this.readOnly = options.readOnly;
    this.writeback = new Writeback(options.store, options.cache.working, { uploaded: (copy, info) => this.uploaded(copy, info) });
  }

  /**
   * Uploads what a previous run left dirty, before anything is served; what still fails stays a
   * local file of the mount, retried in the background.
   */
  async recover(): Promise<void> {
    const { uploaded, failed } = await this.writeback.uploadAll();
    if (uploaded || failed) debug('recovered writes: %d uploaded, %d still pending', uploaded, failed);
    for (const copy of this.cache.working.list()) {
      if (!copy.key.startsWith(this.prefix)) continue; // written under another mount's prefix; uploaded all the same
      const path = '/' + copy.key.slice(this.prefix.length);
      if (copy.dirty) this.addLocal(path, copy);
      else await this.settle(path, copy);
    }
    this.writeback.start();
  }

  /** Stops background uploads and tries once more to upload everything dirty. */
  async drain(): Promise<void> {
    this.writeback.stop();
    const { failed } = await this.writeback.uploadAll();
    if (failed) warn('%d files are not uploaded yet; the next mount of this cache dir uploads them', failed);
  }

  async getattr(path: string): Promise<Attr> {
    const local = this.locals.get(path);
    if (local) return workingAttr(local.ino, local.copy, this.owner);
    return nodeAttr(await this.namespace.lookup(path), this.owner);
  }

  async readdir(path: string): Promise<DirEntry[]> {
    const entries = new Map<string, Attr>();
    for (const node of await this.namespace.readdir(path)) entries.set(baseName(node.path), nodeAttr(node, this.owner));
    // Files written here and not uploaded yet are not in the store's listing.
    for (const local of this.locals.values()) {
      if (parentOf(local.path) === path) entries.set(baseName(local.path), workingAttr(local.ino, local.copy, this.owner));
    }
    return [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, attr]) => ({ name, attr }));
  }

  async open(path: string, flags: number): Promise<number> {
    const writable = (flags & O_ACCMODE) !== constants.O_RDONLY;
    if (writable || flags & constants.O_TRUNC) this.checkWritable(path);
    const file: OpenFile = { path, writable, node: undefined, clean: undefined, local: this.locals.get(path) };
    if (flags & constants.O_TRUNC && writable) {
      file.local = await this.localFor(path, 'empty');
      if (file.local.copy.size > 0) await this.cache.working.truncate(file.local.copy, 0);
    }
    if (!file.local) {
      file.node = await this.namespace.lookupFile(path);
      file.clean = await this.cache.open(this.versionOf(file.node));
    }
    if (file.local) file.local.copy.users++;
    const fh = this.handles.add(file);
    debug('open %s as %d (%s)', path, fh, file.local ? 'working copy' : file.node!.etag);
    return fh;
  }

  /** Creates (or empties) a regular file and opens it. */
  async create(path: string, mode: number, flags: number): Promise<{ fh: number; attr: Attr }> {
    this.checkWritable(path);
    await this.requireDirectory(parentOf(path));
    const existing = this.locals.get(path) ?? (await this.lookupOrUndefined(path));
    if (existing && flags & constants.O_EXCL) throw new FsError('EEXIST', `exists: ${path}`);
    if (existing && 'kind' in existing && existing.kind === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
    if (!existing) {
      const copy = await this.cache.working.create(keyOf(this.prefix, path), formatMetadata({ mode }, 'file'));
      this.addLocal(path, copy);
    }
    const fh = await this.open(path, flags & ~(constants.O_CREAT | constants.O_EXCL));
    return { fh, attr: await this.getattr(path) };
  }

  async read(fh: number, buffer: Buffer, length: number, position: number): Promise<number> {
    const file = this.handles.get(fh);
    if (file.local) return this.cache.working.read(file.local.copy, buffer, length, position);
    return this.cache.read(file.clean!, buffer, length, position);
  }

  async write(fh: number, data: Buffer, position: number): Promise<number> {
    const file = this.handles.get(fh);
    if (!file.writable) throw new FsError('EBADF', `not open for writing: ${file.path}`);
    const local = await this.attachLocal(file);
    return this.cache.working.write(local.copy, data, position);
  }

  /** close(2) of a writer's handle: uploads what was written, so the writer learns of a failure (EIO). */
  async flush(fh: number): Promise<void> {
    const file = this.handles.get(fh);
    if (file.writable && file.local && !file.local.unlinked) await this.writeback.flush(file.local.copy);
  }

  async fsync(fh: number): Promise<void> {
    return this.flush(fh);
  }

  async release(fh: number): Promise<void> {
    const file = this.handles.remove(fh);
    if (file.clean) this.cache.release(file.clean);
    if (file.local) {
      file.local.copy.users--;
      await this.afterLastUse(file.local);
    }
  }

  /** Direct access to an open file's staged bytes, for an engine that reads them itself. */
  directAccess(fh: number): Promise<DirectAccess | undefined> {
    const file = this.handles.get(fh);
    // A file being written changes under its readers: they read through here.
    if (file.writable || file.local || this.locals.has(file.path)) return Promise.resolve(undefined);
    return this.cache.directAccess(file.clean!);
  }

  /** Whether the handle may change the file (engines keep such handles off their fast paths). */
  isWritable(fh: number): boolean {
    return this.handles.get(fh).writable;
  }

  /** A read an engine served itself from staged bytes. */
  noteRead(fh: number, position: number, length: number): void {
    const file = this.handles.get(fh);
    if (file.clean) this.cache.noteHit(file.clean, position, position + length);
  }

  /** The path of an inode number the kernel holds, for engines that speak in inodes. */
  pathOf(ino: number): string {
    const path = this.namespace.inodes.pathOf(ino);
    if (path === undefined) throw new FsError('ENOENT', `unknown inode ${ino}`);
    return path;
  }

  /** chmod, chown, utimens and truncate; `fh` when the change comes through an open handle. */
  async setattr(path: string, changes: AttrChanges, fh?: number): Promise<Attr> {
    this.checkWritable(path);
    if (changes.size !== undefined) {
      const local = fh !== undefined ? await this.attachLocal(this.handles.get(fh)) : await this.localFor(path, changes.size === 0 ? 'empty' : 'copy');
      await this.cache.working.truncate(local.copy, changes.size);
      await this.afterLastUse(local);
    }
    const { mode, uid, gid, mtime } = changes;
    if (mode !== undefined || uid !== undefined || gid !== undefined || mtime !== undefined) {
      await this.setPosixAttrs(path, { mode, uid, gid, mtime });
    }
    return this.getattr(path);
  }

  async mkdir(path: string, mode: number): Promise<Attr> {
    this.checkWritable(path);
    await this.requireDirectory(parentOf(path));
    if (this.locals.has(path) || (await this.lookupOrUndefined(path))) throw new FsError('EEXIST', `exists: ${path}`);
    await this.store.put(dirPrefixOf(this.prefix, path), new Uint8Array(0), formatMetadata({ mode }, 'dir'));
    const node = this.namespace.dirNode(path);
    this.namespace.remember(node);
    return nodeAttr(node, this.owner);
  }

  async rmdir(path: string): Promise<void> {
    this.checkWritable(path);
    const node = await this.namespace.lookup(path);
    if (node.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    if (path === '/') throw new FsError('EBUSY', 'the mount root');
    if (!(await this.isEmptyDirectory(path))) throw new FsError('ENOTEMPTY', `directory not empty: ${path}`);
    await this.store.delete(dirPrefixOf(this.prefix, path));
    this.namespace.remove(path);
  }

  async unlink(path: string): Promise<void> {
    this.checkWritable(path);
    const local = this.locals.get(path);
    const node = local ? undefined : await this.namespace.lookup(path);
    if (node?.kind === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
    if (local) await this.dropLocal(local);
    await this.store.delete(keyOf(this.prefix, path));
    this.forgetCached(keyOf(this.prefix, path));
    this.namespace.remove(path);
  }

  async rename(from: string, to: string, flags = 0): Promise<void> {
    this.checkWritable(from);
    this.checkWritable(to);
    if (flags & RENAME_EXCHANGE) throw new FsError('EINVAL', 'RENAME_EXCHANGE is not supported');
    if (from === to) return;
    const sourceLocal = this.locals.get(from);
    const source = sourceLocal ? undefined : await this.namespace.lookup(from);
    const targetLocal = this.locals.get(to);
    const target = targetLocal ? undefined : await this.lookupOrUndefined(to);
    if ((targetLocal || target) && flags & RENAME_NOREPLACE) throw new FsError('EEXIST', `exists: ${to}`);
    await this.requireDirectory(parentOf(to));
    if (source?.kind === 'dir') {
      if (to.startsWith(from + '/')) throw new FsError('EINVAL', `cannot move ${from} into itself`);
      if (targetLocal || target?.kind === 'file') throw new FsError('ENOTDIR', `not a directory: ${to}`);
      if (target && !(await this.isEmptyDirectory(to))) throw new FsError('ENOTEMPTY', `directory not empty: ${to}`);
      await this.renameDirectory(from, to);
    } else {
      if (target?.kind === 'dir') throw new FsError('EISDIR', `is a directory: ${to}`);
      if (targetLocal) await this.dropLocal(targetLocal);
      await this.renameFile(from, to, sourceLocal, source as FileNode | undefined);
    }
    this.namespace.inodes.rename(from, to);
    for (const file of this.handles.values()) {
      if (file.path === from || file.path.startsWith(from + '/')) file.path = to + file.path.slice(from.length);
    }
  }

  /** The object version a file node (or an object of a listing) stands for, as the cache knows it. */
  versionOf(node: ObjectInfo): ObjectVersion {
    return { bucket: this.bucket, key: node.key, etag: node.etag, size: node.size, mtime: node.mtime.getTime() };
  }

  /** The files at `path`: the file itself, or every file below a directory. */
  async filesUnder(path: string): Promise<FileNode[]> {
    const node = await this.namespace.lookup(path);
    if (node.kind === 'file') return [node];
    const files: FileNode[] = [];
    for (const child of await this.namespace.readdir(path)) files.push(...(await this.filesUnder(child.path)));
    return files;
  }

  statfs(): FsStats {
    const stats = this.cache.stats();
    const blocks = Math.min(MAX_U32, Math.floor(stats.capacityBytes / STATFS_BLOCK));
    const used = Math.ceil((stats.stagedBytes + stats.reservedBytes) / STATFS_BLOCK);
    return {
      blockSize: STATFS_BLOCK,
      blocks,
      blocksFree: Math.max(0, blocks - used),
      files: MAX_U32,
      filesFree: MAX_U32 - stats.entryCount,
      nameMax: 255,
    };
  }

  private checkWritable(path: string): void {
    if (this.readOnly) throw new FsError('EROFS', `read-only: ${path}`);
  }

  private async lookupOrUndefined(path: string): Promise<Node | undefined> {
    try {
      return await this.namespace.lookup(path);
    } catch (err) {
      if (err instanceof FsError && err.code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private async requireDirectory(path: string): Promise<void> {
    const node = await this.namespace.lookup(path);
    if (node.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
  }

  private async isEmptyDirectory(path: string): Promise<boolean> {
    const marker = dirPrefixOf(this.prefix, path);
    const page = await this.store.list(marker, { maxKeys: 2 });
    const children = page.objects.filter((o) => o.key !== marker).length + page.prefixes.length;
    const localChildren = [...this.locals.keys()].some((p) => p.startsWith(path + '/'));
    return children === 0 && !localChildren;
  }

  private addLocal(path: string, copy: WorkingCopy, ino?: number): LocalFile {
    const local: LocalFile = { path, copy, ino: ino ?? this.namespace.inodes.inoOf(path, `local:${copy.id}`), unlinked: false };
    this.locals.set(path, local);
    return local;
  }

  /** The working copy of `path`, made on first need: empty, or copied whole from the object. */
  private localFor(path: string, content: 'empty' | 'copy'): Promise<LocalFile> {
    const existing = this.locals.get(path);
    if (existing) return Promise.resolve(existing);
    return this.copyUps.run(path, async () => {
      const node = await this.namespace.lookupFile(path);
      const metadata = node.metadata ?? {};
      const key = keyOf(this.prefix, path);
      const copy =
        content === 'empty' ? await this.cache.working.create(key, metadata) : await this.cache.workingCopyOf(this.versionOf(node), key, metadata);
      const local = this.addLocal(path, copy, node.ino);
      // Every handle of the path reads the copy from now on, so all see the writes.
      for (const file of this.handles.values()) {
        if (file.path !== path || file.local) continue;
        if (file.clean) this.cache.release(file.clean);
        file.clean = undefined;
        file.local = local;
        copy.users++;
      }
      return local;
    });
  }

  private async attachLocal(file: OpenFile): Promise<LocalFile> {
    if (!file.local) file.local = await this.localFor(file.path, 'copy');
    return file.local;
  }

  /** Once nothing has a working copy open: upload it if dirty, then keep it as a staged version. */
  private async afterLastUse(local: LocalFile): Promise<void> {
    if (local.copy.users > 0) return;
    if (local.unlinked) return this.cache.working.discard(local.copy);
    if (local.copy.dirty) {
      // Background: a release has no one to report to; the write-back retries and logs.
      this.writeback.flush(local.copy).catch((err: unknown) => debug('%s stays dirty: %s', local.path, errorMessage(err)));
      return;
    }
    await this.settle(local.path, local.copy);
  }

  /** Called by the write-back after each successful upload. */
  private uploaded(copy: WorkingCopy, info: ObjectInfo): void {
    const local = [...this.locals.values()].find((l) => l.copy === copy);
    if (!local) return;
    this.namespace.remember(this.namespace.fileNode(local.path, info));
    if (copy.users === 0 && !copy.dirty) {
      this.settle(local.path, copy).catch((err: unknown) => warn('keeping %s staged: %s', local.path, errorMessage(err)));
    }
  }

  private async settle(path: string, copy: WorkingCopy): Promise<void> {
    if (copy.dirty || copy.users > 0 || copy.removed || !copy.uploadedEtag) return;
    if (this.locals.get(path)?.copy === copy) this.locals.delete(path);
    await this.cache.working.settle(copy, { bucket: this.bucket, key: copy.key, etag: copy.uploadedEtag, size: copy.size, mtime: copy.mtime });
  }

  /** The path's working copy goes (unlink, or replaced by a rename); open handles keep it until closed. */
  private async dropLocal(local: LocalFile): Promise<void> {
    local.unlinked = true;
    this.locals.delete(local.path);
    if (local.copy.users === 0) await this.cache.working.discard(local.copy);
  }

  private forgetCached(key: string): void {
    try {
      this.cache.evictKey(key);
    } catch (err) {
      // In use: those versions leave once closed, as versions no longer current.
      debug('keeping cached %s for its readers: %s', key, errorMessage(err));
    }
  }

  private async renameFile(from: string, to: string, local: LocalFile | undefined, node: FileNode | undefined): Promise<void> {
    const fromKey = keyOf(this.prefix, from);
    const toKey = keyOf(this.prefix, to);
    if (local) {
      // Not uploaded yet (or being written): the copy is uploaded under its new key.
      await this.cache.working.retarget(local.copy, toKey);
      this.locals.delete(from);
      local.path = to;
      this.locals.set(to, local);
      await this.store.delete(fromKey);
      this.namespace.remove(from);
      await this.afterLastUse(local);
      return;
    }
    const { copied, info } = await this.copyObject(node!, toKey);
    await this.store.delete(fromKey);
    await this.cache.rekey(this.versionOf(copied), { bucket: this.bucket, key: toKey, etag: info.etag, size: info.size, mtime: info.mtime.getTime() });
    this.namespace.remove(from);
    this.namespace.remember(this.namespace.fileNode(to, info));
  }

  /** Copies every object below `from` to `to`, then deletes the originals: not atomic, as in every S3 mount. */
  private async renameDirectory(from: string, to: string): Promise<void> {
    const fromPrefix = dirPrefixOf(this.prefix, from);
    const toPrefix = dirPrefixOf(this.prefix, to);
    const objects: ObjectInfo[] = [];
    let continuationToken: string | undefined;
    do {
      const page = await this.store.list(fromPrefix, { continuationToken });
      objects.push(...page.objects);
      continuationToken = page.continuationToken;
    } while (continuationToken);
    let next = 0;
    const copier = async () => {
      while (next < objects.length) {
        const object = objects[next++];
        const key = toPrefix + object.key.slice(fromPrefix.length);
        const { copied, info } = await this.copyObject(object, key);
        const from = this.versionOf(copied);
        await this.cache.rekey(from, { ...from, key, etag: info.etag, mtime: info.mtime.getTime() });
      }
    };
    await Promise.all(Array.from({ length: RENAME_COPIES_IN_FLIGHT }, copier));
    if (objects.length === 0) await this.store.put(toPrefix, new Uint8Array(0)); // an implicit directory keeps existing
    await this.store.deleteMany(objects.map((o) => o.key));
    for (const local of [...this.locals.values()]) {
      if (!local.path.startsWith(from + '/')) continue;
      const path = to + local.path.slice(from.length);
      await this.cache.working.retarget(local.copy, keyOf(this.prefix, path));
      this.locals.delete(local.path);
      local.path = path;
      this.locals.set(path, local);
      await this.afterLastUse(local);
    }
    this.namespace.forgetTree(from);
    this.namespace.forgetTree(to);
  }

  private async setPosixAttrs(path: string, attrs: PosixAttrs): Promise<void> {
    const local = this.locals.get(path);
    if (local) {
      const merged = { ...parseMetadata(local.copy.metadata), ...definedOnly(attrs) };
      await this.cache.working.setMetadata(local.copy, formatMetadata({ ...merged, mtime: undefined }, 'file'), attrs.mtime);
      return this.afterLastUse(local);
    }
    const node = await this.namespace.lookupFresh(path);
    if (node.kind === 'dir') {
      // A directory's attributes live on its marker object.
      await this.store.put(dirPrefixOf(this.prefix, path), new Uint8Array(0), formatMetadata(definedOnly(attrs), 'dir'));
      return;
    }
    const withAttrs = (source: ObjectInfo) => formatMetadata({ ...parseMetadata(source.metadata), ...definedOnly(attrs) }, 'file');
    const { copied, info } = await this.copyObject(node, node.key, withAttrs);
    await this.cache.rekey(this.versionOf(copied), { ...this.versionOf(copied), etag: info.etag });
    this.namespace.remember(this.namespace.fileNode(path, { ...info, metadata: withAttrs(copied) }));
  }

  /**
   * A server-side copy of the object as the mount knows it (CopySourceIfMatch). If it changed in
   * the store since, the copy is made again of what the store holds now, as a fresh lookup would
   * have seen it: `copied` is the version actually copied, and only its staged blocks may follow.
   */
  private async copyObject(
    source: ObjectInfo,
    to: string,
    metadataOf?: (source: ObjectInfo) => Record<string, string>,
  ): Promise<{ copied: ObjectInfo; info: ObjectInfo }> {
    let copied = source;
    for (let attempt = 1; ; attempt++) {
      try {
        return { copied, info: await this.store.copy(copied, to, metadataOf?.(copied)) };
      } catch (err) {
        if (!(err instanceof StoreError && err.kind === 'PreconditionFailed') || attempt >= COPY_ATTEMPTS) throw err;
        const current = await this.store.head(copied.key);
        if (!current) throw new FsError('ENOENT', `${copied.key} is gone from the store`);
        debug('%s changed in the store (%s, was %s): copying the current version', copied.key, current.etag, copied.etag);
        copied = current;
      }
    }
  }
}

function definedOnly(attrs: PosixAttrs): PosixAttrs {
  return Object.fromEntries(Object.entries(attrs).filter(([, value]) => value !== undefined)) as PosixAttrs;
}
