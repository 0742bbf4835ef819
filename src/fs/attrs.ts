/** The attributes stat shows for nodes of the namespace and for files being written. */
import { constants } from 'node:fs';
import type { LocalFile } from '../write/local-file';
import type { Node } from '../namespace/namespace';
import { parseMetadata, type FullAttrs } from './object-metadata';

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

export interface Owner {
  uid: number;
  gid: number;
}

const FILE_MODE = 0o644;
const DIR_MODE = 0o755;
/** The I/O size tools such as cp use for their buffers: large requests suit the engines. */
const PREFERRED_IO = 1024 * 1024;
/** The types an object (not a prefix) can stand for, as s3fs stores them in its mode. */
const OBJECT_TYPES = [constants.S_IFREG, constants.S_IFLNK, constants.S_IFIFO, constants.S_IFSOCK, constants.S_IFCHR, constants.S_IFBLK];

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

/** The file type (S_IFMT bits) of a node: a directory, or what the object's metadata says it is. */
export function nodeType(node: Node): number {
  if (node.kind === 'dir') return constants.S_IFDIR;
  const type = parseMetadata(node.metadata).type;
  return type !== undefined && OBJECT_TYPES.includes(type) ? type : constants.S_IFREG;
}

/** Every attribute of a node: what its metadata says, defaults for what it does not. */
export function nodeAttrs(node: Node, owner: Owner): FullAttrs {
  const stored = parseMetadata(node.metadata);
  const type = nodeType(node);
  const fallback = node.kind === 'file' ? versionedMtime(node.mtime, node.etag).getTime() : node.mtime.getTime();
  const storedMtime = stored.mtime ?? fallback;
  const changed = node.kind === 'dir' ? node.entriesChangedAt : undefined;
  // A directory whose entries changed through the mount since its times were stored: both moved then.
  const mtime = changed !== undefined && changed > storedMtime ? changed : storedMtime;
  const ctime = changed !== undefined && changed > (stored.ctime ?? mtime) ? changed : stored.ctime ?? mtime;
  return {
    type,
    mode: stored.mode ?? (type === constants.S_IFDIR ? DIR_MODE : type === constants.S_IFLNK ? 0o777 : FILE_MODE),
    uid: stored.uid ?? owner.uid,
    gid: stored.gid ?? owner.gid,
    mtime,
    ctime,
    atime: stored.atime ?? storedMtime,
  };
}

function attr(ino: number, attrs: FullAttrs, size: number): Attr {
  return {
    ino,
    mode: attrs.type | attrs.mode,
    // 1 for directories tells find(1) not to count subdirectories from the link count.
    nlink: 1,
    uid: attrs.uid,
    gid: attrs.gid,
    size,
    blocks: Math.ceil(size / 512),
    blksize: PREFERRED_IO,
    atime: new Date(attrs.atime),
    mtime: new Date(attrs.mtime),
    ctime: new Date(attrs.ctime),
  };
}

export function nodeAttr(node: Node, owner: Owner): Attr {
  return attr(node.ino, nodeAttrs(node, owner), node.kind === 'file' ? node.size : 0);
}

/** Every attribute of a file being written. */
export function localAttrs(file: LocalFile, owner: Owner): FullAttrs {
  const stored = parseMetadata(file.metadata);
  return {
    type: constants.S_IFREG,
    mode: stored.mode ?? FILE_MODE,
    uid: stored.uid ?? owner.uid,
    gid: stored.gid ?? owner.gid,
    mtime: file.mtime,
    ctime: file.ctime,
    atime: file.atime,
  };
}

export function localAttr(ino: number, file: LocalFile, owner: Owner): Attr {
  return attr(ino, localAttrs(file, owner), file.size);
}
