/**
 * The filesystem operations behind every FUSE engine, as plain async functions that return data
 * or throw a typed FsError; every answer (EPERM for a device node, ETXTBSY for a writer of a file
 * the kernel reads directly, ...) is decided here, so both engines give the same one. Paths are
 * absolute inside the mount.
 *
 * An open file reads one version of an object through the staging cache until the file is
 * written: from its first change the write path (src/write) owns its data, and every handle of
 * the path reads and writes it there.
 */
import { constants } from 'node:fs';
import createDebug from 'debug';
import type { CacheHandle, DirectAccess, StagingCache } from '../cache/staging-cache';
import type { ObjectVersion } from '../cache/staged-object';
import { errorMessage, FsError, StoreError } from '../errors';
import type { FileNode, Namespace, Node } from '../namespace/namespace';
import { baseName, dirPrefixOf, keyOf, parentOf } from '../namespace/paths';
import type { ObjectInfo, ObjectStore } from '../store/object-store';
import { SingleFlight } from '../util/single-flight';
import type { LocalFile } from '../write/local-file';
import { WritePath } from '../write/write-path';
import { localAttr, localAttrs, nodeAttr, nodeAttrs, nodeType, type Attr } from './attrs';
import { DirectoryScans } from './directory-scan';
import { HandleTable } from './handle-table';
import { withAttrs, withoutTimes, type FullAttrs, type PosixAttrs } from './object-metadata';

export type { Attr } from './attrs';

const debug = createDebug('stagefs:fs');
const warn = createDebug('stagefs:warn');

export interface DirEntry {
  name: string;
  attr: Attr;
  /** Attributes from a listing alone: the node's metadata (its mode, owner, type) is still unread. */
  partial: boolean;
}

export interface FsStats {
  blockSize: number;
  blocks: number;
  blocksFree: number;
  files: number;
  filesFree: number;
  nameMax: number;
}

/** What setattr may change; absent fields stay as they are (ctime moves by itself). */
export interface AttrChanges extends Omit<PosixAttrs, 'ctime'> {
  size?: number;
}

/** Who asks: the owner of what a request makes (when the engine knows it). */
export interface Caller {
  uid: number;
  gid: number;
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
  /** Where files being written keep their data and records until uploaded. */
  writeDir: string;
  punchHole: ((fd: number, offset: number, length: number) => void) | undefined;
}

/** What an open handle reads: one version of an object, or a file being written. */
type Reading = { kind: 'object'; node: FileNode; handle: CacheHandle } | { kind: 'local'; file: LocalFile };

interface OpenFile {
  path: string;
  writable: boolean;
  reading: Reading;
  /** An engine serves the handle's reads itself: 'fast' until told otherwise, 'kernel' for good (passthrough). */
  direct: 'none' | 'fast' | 'kernel';
}

/** Linux's O_ACCMODE, which node's constants lack. */
const O_ACCMODE = 3;
const STATFS_BLOCK = 4096;
const MAX_U32 = 0xffffffff;
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
/** Objects copied at once when a directory is renamed. */
const RENAME_COPIES_IN_FLIGHT = 8;
/** Symbolic link targets kept in memory, by key and version. */
const LINK_TARGETS_KEPT = 10_000;
/** Node types mknod makes as objects with s3fs's type bits (regular files are created as files). */
const S_ISGID = 0o2000;
const SPECIAL_TYPES = [constants.S_IFIFO, constants.S_IFSOCK, constants.S_IFCHR, constants.S_IFBLK];
/** Copies of an object that keeps changing in the store before a rename or chmod gives up. */
const COPY_ATTEMPTS = 3;
/**
 * How long an open for writing waits for the kernel's passthrough readers of the file to go:
 * close(2) does not wait for its RELEASE, so an open right after a reader's close can come first.
 */
const KERNEL_READERS_WAIT_MS = 2000;
/** Entries past the one opened that a scan of a directory's files keeps fetched ahead (directory-scan.ts). */
const SCAN_AHEAD = 8;
/** Files fetched ahead by a directory scan are at most this large: one GET each, few bytes to waste. */
const SCAN_FILE_MAX_BYTES = 1024 * 1024;
/** An ETag that is the MD5 of the object's bytes (a single-part upload), which the cache checks them against. */
const MD5_ETAG = /^"?[0-9a-f]{32}"?$/;

export class Filesystem {
  private readonly namespace: Namespace;
  private readonly cache: StagingCache;
  private readonly store: ObjectStore;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly owner: { uid: number; gid: number };
  private readonly readOnly: boolean;
  private readonly handles = new HandleTable<OpenFile>();
  private readonly scans = new DirectoryScans(SCAN_AHEAD);
  /** Called when a handle the kernel read directly is released. */
  private readonly kernelReaderGone = new Set<() => void>();
  private readonly localizing = new SingleFlight<string, LocalFile>();
  private readonly writes: WritePath;
  private readonly linkTargets = new Map<string, string>();
  /** Told when a handle's reads must come back through here (its file is being written). */
  private revokeDirect: (fh: number) => void = () => undefined;

  constructor(options: FilesystemOptions) {
    this.namespace = options.namespace;
    this.cache = options.cache;
    this.store = options.store;
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.owner = { uid: options.uid, gid: options.gid };
    this.readOnly = options.readOnly;
    this.writes = new WritePath({
      store: options.store,
      cache: options.cache,
      dir: options.writeDir,
      bucket: options.bucket,
      prefix: options.prefix,
      punchHole: options.punchHole,
      stored: (file, info) => this.stored(file, info),
      abandoned: (file) => this.abandoned(file),
    });
  }

  /** Uploads what a previous run left unuploaded, before anything is served. */
  recover(): Promise<void> {
    return this.writes.recover();
  }

  /** Uploads what is still pending, before the mount goes. */
  drain(): Promise<void> {
    return this.writes.drain();
  }

  /** Files written through the mount and not uploaded yet. */
  pendingUploads(): { count: number; bytes: number } {
    return this.writes.pending();
  }

  /** An engine that serves reads itself registers how to stop doing so for a handle. */
  onDirectAccessRevoked(revoke: (fh: number) => void): void {
    this.revokeDirect = revoke;
  }

  async getattr(path: string): Promise<Attr> {
    const local = this.writes.fileAt(path);
    if (local) return this.localAttr(local);
    return nodeAttr(await this.namespace.lookup(path), this.owner);
  }

  /** The attributes of an open file, also once it is unlinked or renamed. */
  getattrOpen(fh: number): Attr {
    const { reading } = this.handles.get(fh);
    return reading.kind === 'local' ? this.localAttr(reading.file) : nodeAttr(reading.node, this.owner);
  }

  async readdir(path: string): Promise<DirEntry[]> {
    const entries = new Map<string, DirEntry>();
    for (const node of await this.namespace.readdir(path)) {
      const name = baseName(node.path);
      entries.set(name, { name, attr: nodeAttr(node, this.owner), partial: !this.namespace.metadataKnown(node) });
    }
    // Files being written here are not in the store's listing yet, or not as they are now.
    for (const local of this.writes.files()) {
      const name = baseName(local.path);
      if (parentOf(local.path) === path) entries.set(name, { name, attr: this.localAttr(local), partial: false });
    }
    return [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async open(path: string, flags: number): Promise<number> {
    const writable = (flags & O_ACCMODE) !== constants.O_RDONLY;
    if (writable || flags & constants.O_TRUNC) this.checkWritable(path);
    if (writable) await this.kernelReadersGone(path);
    let local = this.writes.fileAt(path);
    if (local?.failure && flags & constants.O_TRUNC && writable) {
      // Starting the file over: the failed one stays with its handles until they close.
      await this.writes.replace(path);
      local = undefined;
    }
    if (flags & constants.O_TRUNC && writable) {
      local ??= await this.localFor(path, 'empty');
      if (local.size > 0) await this.writes.truncate(local, 0);
    }
    let reading: Reading;
    if (local) {
      this.writes.attach(local);
      reading = { kind: 'local', file: local };
    } else {
      const node = await this.namespace.lookupFile(path);
      reading = { kind: 'object', node, handle: await this.cache.open(this.versionOf(node), !writable) };
      if (!writable) this.scanAhead(path);
    }
    const fh = this.handles.add({ path, writable, reading, direct: 'none' });
    debug('open %s as %d (%s)', path, fh, reading.kind === 'local' ? 'being written' : reading.node.etag);
    return fh;
  }

  /**
   * Fetches the small files listed after `path` when the opens of its directory go through it in
   * listing order. Only objects whose bytes the cache can check whole: with the store's checksum
   * (known from a HEAD), or an ETag that is their MD5.
   */
  private scanAhead(path: string): void {
    const listed = this.namespace.listingPosition(path);
    const window = listed && this.scans.opened(parentOf(path), listed.position);
    if (!listed || !window) return;
    for (const node of listed.entries(window.from, window.to)) {
      if (node.kind !== 'file' || node.size === 0 || node.size > SCAN_FILE_MAX_BYTES || this.writes.fileAt(node.path)) continue;
      if (node.checksum === undefined && !MD5_ETAG.test(node.etag)) continue;
      this.cache.prefetch(this.versionOf(node), () => undefined).catch((err: unknown) => debug('fetching %s ahead: %s', node.path, errorMessage(err)));
    }
  }

  /** Creates (or empties) a regular file and opens it. */
  async create(path: string, mode: number, flags: number, caller?: Caller): Promise<{ fh: number; attr: Attr }> {
    this.checkWritable(path);
    const parent = await this.requireDirectory(parentOf(path));
    const existing = this.writes.fileAt(path) ?? (await this.lookupOrUndefined(path));
    if (existing && flags & constants.O_EXCL) throw new FsError('EEXIST', `exists: ${path}`);
    if (existing && 'kind' in existing && existing.kind === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
    if (!existing) {
      this.namespace.inodes.release(path); // a new file: a new inode, whatever the kernel holds of an old one
      const attrs = this.newAttrs(parent, constants.S_IFREG, mode, caller);
      await this.writes.create(path, withoutTimes(withAttrs(undefined, attrs)));
      this.namespace.touchEntries(parentOf(path));
    }
    const fh = await this.open(path, flags & ~(constants.O_CREAT | constants.O_EXCL));
    return { fh, attr: await this.getattr(path) };
  }

  /**
   * A node made without opening it: a regular file, or a fifo, socket or device node stored as
   * s3fs stores one (an empty object whose mode carries the type; device numbers are not kept).
   */
  async mknod(path: string, mode: number, caller?: Caller): Promise<Attr> {
    const type = mode & constants.S_IFMT;
    if (type === constants.S_IFREG || type === 0) {
      const { fh, attr } = await this.create(path, mode & 0o7777, constants.O_WRONLY | constants.O_EXCL, caller);
      await this.flush(fh);
      await this.release(fh);
      return attr;
    }
    if (!SPECIAL_TYPES.includes(type)) throw new FsError('EPERM', `cannot make a node of type 0o${type.toString(8)} here: ${path}`);
    return this.makeObject(path, type, mode, new Uint8Array(0), caller);
  }

  /** A symbolic link, stored as s3fs stores one: the target is the object's body, S_IFLNK in its mode. */
  async symlink(target: string, path: string, caller?: Caller): Promise<Attr> {
    if (target.length === 0) throw new FsError('ENOENT', `empty symbolic link target for ${path}`);
    if (Buffer.byteLength(target) > 4095) throw new FsError('ENAMETOOLONG', `symbolic link target too long for ${path}`);
    return this.makeObject(path, constants.S_IFLNK, 0o777, Buffer.from(target, 'utf8'), caller);
  }

  async readlink(path: string): Promise<string> {
    const node = await this.namespace.lookup(path);
    if (node.kind !== 'file' || nodeType(node) !== constants.S_IFLNK) throw new FsError('EINVAL', `not a symbolic link: ${path}`);
    const known = this.linkTargets.get(`${node.key}\0${node.etag}`);
    if (known !== undefined) return known;
    const chunks: Buffer[] = [];
    for await (const chunk of await this.store.getRange(node.key, 0, node.size, node.etag)) chunks.push(Buffer.from(chunk));
    const body = Buffer.concat(chunks);
    if (body.length !== node.size) throw new FsError('EIO', `symbolic link ${path}: read ${body.length} of ${node.size} bytes`);
    const target = body.toString('utf8');
    if (this.linkTargets.size >= LINK_TARGETS_KEPT) this.linkTargets.clear();
    this.linkTargets.set(`${node.key}\0${node.etag}`, target);
    return target;
  }

  link(path: string): Promise<Attr> {
    return Promise.reject(new FsError('EPERM', `hard links are not kept here: ${path}`));
  }

  async read(fh: number, buffer: Buffer, length: number, position: number): Promise<number> {
    const { reading } = this.handles.get(fh);
    if (reading.kind === 'local') return this.writes.read(reading.file, buffer, length, position);
    return this.cache.read(reading.handle, buffer, length, position);
  }

  async write(fh: number, data: Buffer, position: number): Promise<number> {
    const file = this.handles.get(fh);
    if (!file.writable) throw new FsError('EBADF', `not open for writing: ${file.path}`);
    const local = file.reading.kind === 'local' ? file.reading.file : await this.localFor(file.path, 'copy');
    return this.writes.write(local, data, position);
  }

  /** close(2) of a writer's handle: uploads what was written, so the writer learns of a failure. */
  async flush(fh: number): Promise<void> {
    const file = this.handles.get(fh);
    if (file.writable && file.reading.kind === 'local') await this.writes.flush(file.reading.file);
  }

  async fsync(fh: number): Promise<void> {
    return this.flush(fh);
  }

  async release(fh: number): Promise<void> {
    const { reading, direct } = this.handles.remove(fh);
    if (reading.kind === 'local') this.writes.detach(reading.file);
    else this.cache.release(reading.handle);
    if (direct === 'kernel') for (const wake of [...this.kernelReaderGone]) wake();
  }

  /** Waits a little for the kernel's direct readers of `path` to close; ETXTBSY if they stay. */
  private async kernelReadersGone(path: string): Promise<void> {
    const deadline = Date.now() + KERNEL_READERS_WAIT_MS;
    while ([...this.handles.values()].some((file) => file.path === path && file.direct === 'kernel')) {
      const left = deadline - Date.now();
      if (left <= 0) throw new FsError('ETXTBSY', `${path} is open for reading by the kernel directly (passthrough)`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.kernelReaderGone.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.kernelReaderGone.add(wake);
      });
    }
  }

  /**
   * Direct access to an open file's staged bytes, for an engine that reads them itself; none
   * while the file is (or may be) written, since its readers must see the writes.
   */
  async directAccess(fh: number, kind: 'fast' | 'kernel'): Promise<DirectAccess | undefined> {
    const file = this.handles.get(fh);
    if (file.writable || file.reading.kind === 'local') return undefined;
    if ([...this.handles.values()].some((other) => other.path === file.path && other.writable)) return undefined;
    const reading = file.reading;
    const access = await this.cache.directAccess(reading.handle, kind);
    // The file may have been written meanwhile: its handles then read the new data here.
    if (file.reading !== reading) return undefined;
    if (access && (kind === 'fast' || access.complete)) file.direct = kind;
    return file.direct === 'none' ? undefined : access;
  }

  /** A read an engine served itself from staged bytes. */
  noteRead(fh: number, position: number, length: number): void {
    const { reading } = this.handles.get(fh);
    if (reading.kind === 'object') this.cache.noteHit(reading.handle, position, position + length);
  }

  /** An open handle of `path`, for engines that must name an open file after its name is gone. */
  openHandleOf(path: string): number | undefined {
    for (const [fh, file] of this.handles.entries()) if (file.path === path) return fh;
    return undefined;
  }

  /** Files open now count as in use, though the kernel may serve their reads without us (page cache, passthrough). */
  touchOpenFiles(): void {
    for (const { reading } of this.handles.values()) if (reading.kind === 'object') this.cache.touch(reading.handle);
  }

  /**
   * The attributes of inode `ino` itself, for a LOOKUP of "." by node id (a file handle opened
   * after the kernel forgot the inode): ESTALE when the inode no longer names a file.
   */
  async getattrInode(ino: number): Promise<Attr> {
    const path = this.namespace.inodes.pathOf(ino);
    if (path === undefined) throw new FsError('ESTALE', `unknown inode ${ino}`);
    const local = this.writes.fileAt(path);
    const attr = local ? this.localAttr(local) : nodeAttr(await this.namespace.lookup(path), this.owner);
    if (attr.ino !== ino) throw new FsError('ESTALE', `inode ${ino} no longer names ${path}`);
    return attr;
  }

  /** The generation of an inode number, which file handles carry beside it. */
  generationOf(ino: number): number {
    return this.namespace.inodes.generationOf(ino);
  }

  /** The path of an inode number the kernel holds, for engines that speak in inodes. */
  pathOf(ino: number): string {
    const path = this.namespace.inodes.pathOf(ino);
    if (path === undefined) throw new FsError('ENOENT', `unknown inode ${ino}`);
    return path;
  }

  /**
   * chmod, chown, utimens and truncate; `fh` when the change comes through an open handle, which
   * then names the file (also once unlinked or renamed).
   */
  async setattr(path: string, changes: AttrChanges, fh?: number): Promise<Attr> {
    this.checkWritable(path);
    const handle = fh === undefined ? undefined : this.handles.get(fh);
    const target = handle?.path ?? path;
    if (changes.size !== undefined) {
      const local = handle?.reading.kind === 'local' ? handle.reading.file : await this.localFor(target, changes.size === 0 ? 'empty' : 'copy');
      await this.writes.truncate(local, changes.size);
      this.writes.idle(local);
    }
    const { mode, uid, gid, mtime, atime } = changes;
    if (mode !== undefined || uid !== undefined || gid !== undefined || mtime !== undefined || atime !== undefined) {
      await this.setPosixAttrs(target, { mode, uid, gid, mtime, atime }, handle?.reading.kind === 'local' ? handle.reading.file : undefined);
    }
    return fh === undefined ? this.getattr(path) : this.getattrOpen(fh);
  }

  async mkdir(path: string, mode: number, caller?: Caller): Promise<Attr> {
    this.checkWritable(path);
    const parent = await this.requireDirectory(parentOf(path));
    if (this.writes.fileAt(path) || (await this.lookupOrUndefined(path))) throw new FsError('EEXIST', `exists: ${path}`);
    const metadata = withAttrs(undefined, this.newAttrs(parent, constants.S_IFDIR, mode, caller));
    await this.store.put(dirPrefixOf(this.prefix, path), new Uint8Array(0), metadata);
    const node = this.namespace.dirNode(path, metadata);
    this.namespace.remember(node);
    this.namespace.touchEntries(parentOf(path));
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
    this.namespace.touchEntries(parentOf(path));
  }

  /**
   * Deletes the object now; handles open on it keep reading (and writing) what it held until
   * they close, as on a local disk: a file being written keeps its data, and one being read is
   * staged whole first (where the cache has room).
   */
  async unlink(path: string): Promise<void> {
    this.checkWritable(path);
    const open = [...this.handles.values()].filter((file) => file.path === path);
    if (!this.writes.fileAt(path) && open.some((file) => file.writable)) await this.localFor(path, 'copy');
    if (this.writes.fileAt(path)) {
      await this.writes.unlink(path);
    } else {
      const node = await this.namespace.lookup(path);
      if (node.kind === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
      if (open.length > 0) await this.stageForReaders(node);
      await this.store.delete(node.key);
      this.forgetCached(node.key);
    }
    this.namespace.remove(path);
    this.namespace.inodes.release(path);
    this.namespace.touchEntries(parentOf(path));
  }

  async rename(from: string, to: string, flags = 0): Promise<void> {
    this.checkWritable(from);
    this.checkWritable(to);
    if (flags & RENAME_EXCHANGE) throw new FsError('EINVAL', 'RENAME_EXCHANGE is not supported');
    if (from === to) return;
    const sourceLocal = this.writes.fileAt(from);
    const source = sourceLocal ? undefined : await this.namespace.lookup(from);
    const targetLocal = this.writes.fileAt(to);
    const target = targetLocal ? undefined : await this.lookupOrUndefined(to);
    if ((targetLocal || target) && flags & RENAME_NOREPLACE) throw new FsError('EEXIST', `exists: ${to}`);
    await this.requireDirectory(parentOf(to));
    if (source?.kind === 'dir') {
      if (to.startsWith(from + '/')) throw new FsError('EINVAL', `cannot move ${from} into itself`);
      if (targetLocal || target?.kind === 'file') throw new FsError('ENOTDIR', `not a directory: ${to}`);
      if (target && !(await this.isEmptyDirectory(to))) throw new FsError('ENOTEMPTY', `directory not empty: ${to}`);
    } else if (target?.kind === 'dir') {
      throw new FsError('EISDIR', `is a directory: ${to}`);
    }
    // The inodes move first: what the store makes under the new names is theirs.
    this.namespace.inodes.rename(from, to);
    try {
      if (source?.kind === 'dir') {
        await this.renameDirectory(from, to);
      } else if (sourceLocal) {
        await this.writes.rename(from, to);
        this.namespace.forget(to);
      } else {
        await this.renameObject(source as FileNode, to);
      }
    } catch (err) {
      this.namespace.inodes.rename(to, from);
      throw err;
    }
    if (source?.kind !== 'dir') this.namespace.remove(from);
    this.namespace.touchEntries(parentOf(from));
    this.namespace.touchEntries(parentOf(to));
    for (const file of this.handles.values()) {
      if (file.path === from || file.path.startsWith(from + '/')) file.path = to + file.path.slice(from.length);
    }
  }

  /** The object version a file node (or an object of a listing) stands for, as the cache knows it. */
  versionOf(node: ObjectInfo): ObjectVersion {
    return { bucket: this.bucket, key: node.key, etag: node.etag, size: node.size, mtime: node.mtime.getTime(), checksum: node.checksum };
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

  private async requireDirectory(path: string): Promise<Node> {
    const node = await this.namespace.lookup(path);
    if (node.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    return node;
  }

  /**
   * The attributes of a new node in `parent`: the caller's (or the mount's) owner; in a setgid
   * directory its group, and a new directory there is setgid too, as on a local disk.
   */
  private newAttrs(parent: Node, type: number, mode: number, caller: Caller | undefined): FullAttrs {
    const now = Date.now();
    const owner = caller ?? this.owner;
    const parentAttrs = nodeAttrs(parent, this.owner);
    const setgid = (parentAttrs.mode & S_ISGID) !== 0;
    const perms = (mode & 0o7777) | (setgid && type === constants.S_IFDIR ? S_ISGID : 0);
    return { type, mode: perms, uid: owner.uid, gid: setgid ? parentAttrs.gid : owner.gid, mtime: now, ctime: now, atime: now };
  }

  /** A node stored whole at once (a symbolic link, a fifo): a new object that must not exist yet. */
  private async makeObject(path: string, type: number, mode: number, body: Uint8Array, caller: Caller | undefined): Promise<Attr> {
    this.checkWritable(path);
    const parent = await this.requireDirectory(parentOf(path));
    if (this.writes.fileAt(path) || (await this.lookupOrUndefined(path))) throw new FsError('EEXIST', `exists: ${path}`);
    const metadata = withAttrs(undefined, this.newAttrs(parent, type, mode, caller));
    const key = keyOf(this.prefix, path);
    this.namespace.inodes.release(path);
    const info = await this.store.put(key, body, metadata);
    const node = this.namespace.fileNode(path, { ...info, metadata });
    this.namespace.remember(node);
    this.namespace.touchEntries(parentOf(path));
    return nodeAttr(node, this.owner);
  }

  private async isEmptyDirectory(path: string): Promise<boolean> {
    const marker = dirPrefixOf(this.prefix, path);
    const page = await this.store.list(marker, { maxKeys: 2 });
    const children = page.objects.filter((o) => o.key !== marker).length + page.prefixes.length;
    const localChildren = [...this.writes.files()].some((file) => file.path.startsWith(path + '/'));
    return children === 0 && !localChildren;
  }

  private localAttr(file: LocalFile): Attr {
    file.ino ??= this.namespace.inodes.inoOf(file.path);
    return localAttr(file.ino, file, this.owner);
  }

  /**
   * The file being written at `path`, made on its first change: empty, or over the object
   * (whose bytes stay in the store until changed). Every handle of the path reads it from then on.
   */
  private localFor(path: string, content: 'empty' | 'copy'): Promise<LocalFile> {
    const existing = this.writes.fileAt(path);
    if (existing) return Promise.resolve(existing);
    return this.localizing.run(path, async () => {
      const node = await this.namespace.lookupFile(path);
      const { mtime, ctime, atime } = nodeAttrs(node, this.owner);
      // Emptied (O_TRUNC, truncate to 0) is a change of content now; a copy keeps the object's times until changed.
      const times = content === 'empty' ? { atime } : { mtime, ctime, atime };
      const local = await this.writes.openExisting(path, this.versionOf(node), withoutTimes(node.metadata), content === 'empty', times);
      // The kernel knows the file by the object's inode until it is written whole anew.
      local.ino = node.ino;
      for (const [fh, file] of this.handles.entries()) {
        if (file.path !== path || file.reading.kind !== 'object') continue;
        if (file.direct === 'fast') this.revokeDirect(fh);
        file.direct = 'none';
        this.cache.release(file.reading.handle);
        file.reading = { kind: 'local', file: local };
        this.writes.attach(local);
      }
      return local;
    });
  }

  /** The write path made `info` the object of a file being written (an upload, a copy): the file keeps its inode. */
  private stored(file: LocalFile, info: ObjectInfo): void {
    if (this.writes.fileAt(file.path) !== file) return;
    this.namespace.inodes.produced(file.path, info.etag);
    this.namespace.remember(this.namespace.fileNode(file.path, { ...info, metadata: this.writes.metadataOf(file) }));
  }

  /**
   * A file's changes were dropped (a write failed): its path shows the stored version again,
   * under a new inode, since the kernel cached the dropped changes under the old one.
   */
  private abandoned(file: LocalFile): void {
    this.namespace.inodes.release(file.path);
    this.namespace.forget(file.path);
  }

  /** Stages an object whole so the handles open on it can read it after it is deleted. */
  private async stageForReaders(node: FileNode): Promise<void> {
    try {
      await this.cache.prefetch(this.versionOf(node), () => undefined);
    } catch (err) {
      warn('%s is deleted while open; its readers get only what the cache holds: %s', node.path, errorMessage(err));
    }
  }

  private forgetCached(key: string): void {
    try {
      this.cache.evictKey(key);
    } catch (err) {
      // In use: those versions leave once closed, as versions no longer current.
      debug('keeping cached %s for its readers: %s', key, errorMessage(err));
    }
  }

  /** A stored object moves: a server-side copy of the version the mount knows, then a delete. */
  private async renameObject(node: FileNode, to: string): Promise<void> {
    await this.writes.replace(to);
    const toKey = keyOf(this.prefix, to);
    const { copied, info } = await this.copyObject(node, toKey);
    await this.store.delete(node.key);
    await this.cache.rekey(this.versionOf(copied), { bucket: this.bucket, key: toKey, etag: info.etag, size: info.size, mtime: info.mtime.getTime() });
    this.namespace.inodes.produced(to, info.etag);
    this.namespace.remember(this.namespace.fileNode(to, { ...info, metadata: info.metadata ?? copied.metadata }));
  }

  /** Moves every object below `from` to `to`, then deletes the originals: not atomic, as in every S3 mount. */
  private async renameDirectory(from: string, to: string): Promise<void> {
    const fromPrefix = dirPrefixOf(this.prefix, from);
    const toPrefix = dirPrefixOf(this.prefix, to);
    // Files being written move with their own data (and their objects, if any).
    const moving = [...this.writes.files()].filter((file) => file.path.startsWith(from + '/'));
    for (const file of moving) await this.writes.rename(file.path, to + file.path.slice(from.length));
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
        this.namespace.inodes.produced(to + '/' + object.key.slice(fromPrefix.length), info.etag);
      }
    };
    await Promise.all(Array.from({ length: RENAME_COPIES_IN_FLIGHT }, copier));
    if (objects.length === 0) await this.store.put(toPrefix, new Uint8Array(0)); // an implicit directory keeps existing
    await this.store.deleteMany(objects.map((o) => o.key));
    this.namespace.forgetTree(from);
    this.namespace.forgetTree(to);
  }

  /** Writes every attribute at once: what changed, and what the node had (or its defaults). */
  private async setPosixAttrs(path: string, changes: Omit<PosixAttrs, 'ctime'>, open?: LocalFile): Promise<void> {
    const local = open ?? this.writes.fileAt(path);
    const ctime = Date.now();
    if (local) {
      const attrs = { ...localAttrs(local, this.owner), ...definedOnly(changes) };
      this.writes.setAttributes(local, withoutTimes(withAttrs(local.metadata, attrs)), { mtime: changes.mtime, atime: changes.atime });
      return this.writes.idle(local);
    }
    if (path === '/') {
      // The mount root is the bucket (or a prefix of it): its attributes stay in memory.
      const root = this.namespace.root;
      this.namespace.setRootMetadata(withAttrs(root.metadata, { ...nodeAttrs(root, this.owner), ...definedOnly(changes), ctime }));
      this.namespace.entriesSettled('/');
      return;
    }
    const node = await this.namespace.lookupFresh(path);
    if (node.kind === 'dir') {
      // A directory's attributes live on its marker object (made now, for a directory without one).
      const metadata = withAttrs(node.metadata, { ...nodeAttrs(node, this.owner), ...definedOnly(changes), ctime });
      await this.store.put(dirPrefixOf(this.prefix, path), new Uint8Array(0), metadata);
      this.namespace.entriesSettled(path);
      this.namespace.remember(this.namespace.dirNode(path, metadata));
      return;
    }
    // Of the version actually copied, should the object have changed in the store meanwhile.
    const withChanges = (source: ObjectInfo) =>
      withAttrs(source.metadata, { ...nodeAttrs({ ...node, etag: source.etag, size: source.size, mtime: source.mtime, metadata: source.metadata }, this.owner), ...definedOnly(changes), ctime });
    const { copied, info } = await this.copyObject(node, node.key, withChanges);
    await this.cache.rekey(this.versionOf(copied), { ...this.versionOf(copied), etag: info.etag });
    this.namespace.inodes.produced(path, info.etag);
    this.namespace.remember(this.namespace.fileNode(path, { ...info, metadata: withChanges(copied) }));
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

function definedOnly<T extends object>(attrs: T): Partial<T> {
  return Object.fromEntries(Object.entries(attrs).filter(([, value]) => value !== undefined)) as Partial<T>;
}
