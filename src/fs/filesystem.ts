/**
 * The filesystem operations behind every FUSE engine, as plain async functions that return data
 * or throw a typed FsError. Paths are absolute inside the mount.
 */
import { constants } from 'node:fs';
import createDebug from 'debug';
import type { StagingCache, CacheHandle, DirectAccess } from '../cache/staging-cache';
import type { ObjectVersion } from '../cache/staged-object';
import { FsError } from '../errors';
import type { FileNode, Namespace, Node } from '../namespace/namespace';
import { HandleTable } from './handle-table';

const debug = createDebug('stagefs:fs');

export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocks: number;
  blksize: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
}

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

export interface FilesystemOptions {
  namespace: Namespace;
  cache: StagingCache;
  bucket: string;
  uid: number;
  gid: number;
}

interface OpenFile {
  path: string;
  cache: CacheHandle;
}

/** Linux's O_ACCMODE, which node's constants lack. */
const O_ACCMODE = 3;
const FILE_MODE = 0o644;
const DIR_MODE = 0o755;
const STATFS_BLOCK = 4096;
const MAX_U32 = 0xffffffff;

export class Filesystem {
  private readonly namespace: Namespace;
  private readonly cache: StagingCache;
  private readonly bucket: string;
  private readonly uid: number;
  private readonly gid: number;
  private readonly handles = new HandleTable<OpenFile>();

  constructor(options: FilesystemOptions) {
    this.namespace = options.namespace;
    this.cache = options.cache;
    this.bucket = options.bucket;
    this.uid = options.uid;
    this.gid = options.gid;
  }

  async getattr(path: string): Promise<Attr> {
    return this.attrOf(await this.namespace.lookup(path));
  }

  async readdir(path: string): Promise<DirEntry[]> {
    const children = await this.namespace.readdir(path);
    return children.map((node) => ({ name: node.path.slice(node.path.lastIndexOf('/') + 1), attr: this.attrOf(node) }));
  }

  async open(path: string, flags: number): Promise<number> {
    if ((flags & O_ACCMODE) !== constants.O_RDONLY || flags & constants.O_TRUNC) {
      throw new FsError('EROFS', `read-only: ${path}`);
    }
    const node = await this.namespace.lookupFile(path);
    const cache = await this.cache.open(this.versionOf(node));
    const fh = this.handles.add({ path, cache });
    debug('open %s as %d (%s, %d bytes)', path, fh, node.etag, node.size);
    return fh;
  }

  async read(fh: number, buffer: Buffer, length: number, position: number): Promise<number> {
    return this.cache.read(this.handles.get(fh).cache, buffer, length, position);
  }

  /** Direct access to an open file's staged bytes, for an engine that reads them itself. */
  directAccess(fh: number): Promise<DirectAccess | undefined> {
    return this.cache.directAccess(this.handles.get(fh).cache);
  }

  /** A read an engine served itself from staged bytes. */
  noteRead(fh: number, position: number, length: number): void {
    this.cache.noteHit(this.handles.get(fh).cache, position, position + length);
  }

  /** The path of an inode number the kernel holds, for engines that speak in inodes. */
  pathOf(ino: number): string {
    const path = this.namespace.inodes.pathOf(ino);
    if (path === undefined) throw new FsError('ENOENT', `unknown inode ${ino}`);
    return path;
  }

  async release(fh: number): Promise<void> {
    const file = this.handles.remove(fh);
    this.cache.release(file.cache);
  }

  /** The object version a file node stands for, as the cache knows it. */
  versionOf(node: FileNode): ObjectVersion {
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

  /** Every change to the tree or to file contents: refused on this read-only mount. */
  async refuseWrite(path: string): Promise<never> {
    throw new FsError('EROFS', `read-only: ${path}`);
  }

  private attrOf(node: Node): Attr {
    const size = node.kind === 'file' ? node.size : 0;
    const mtime = node.kind === 'file' ? versionedMtime(node.mtime, node.etag) : node.mtime;
    return {
      ino: node.ino,
      mode: node.kind === 'file' ? constants.S_IFREG | FILE_MODE : constants.S_IFDIR | DIR_MODE,
      // 1 for directories tells find(1) not to count subdirectories from the link count.
      nlink: 1,
      uid: this.uid,
      gid: this.gid,
      size,
      blocks: Math.ceil(size / 512),
      blksize: STATFS_BLOCK,
      atime: mtime,
      mtime,
      ctime: mtime,
    };
  }
}

/**
 * S3 times have whole seconds; the milliseconds carry a hash of the ETag instead, so an object
 * overwritten within the same second, at the same size, still changes its mtime, and the
 * kernel drops the pages it cached of the old version.
 */
export function versionedMtime(mtime: Date, etag: string): Date {
  let hash = 0;
  for (let i = 0; i < etag.length; i++) hash = (hash * 31 + etag.charCodeAt(i)) % 1000;
  return new Date(Math.floor(mtime.getTime() / 1000) * 1000 + hash);
}
