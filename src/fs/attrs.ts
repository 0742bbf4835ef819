/** The attributes stat shows for nodes of the namespace and for files being written. */
import { constants } from 'node:fs';
import type { LocalFile } from '../write/local-file';
import type { Node } from '../namespace/namespace';
import { parseMetadata } from './object-metadata';

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

function attr(ino: number, kind: 'file' | 'dir', size: number, mtime: Date, metadata: Record<string, string> | undefined, owner: Owner): Attr {
  const posix = parseMetadata(metadata);
  const type = kind === 'file' ? constants.S_IFREG : constants.S_IFDIR;
  const time = posix.mtime === undefined ? mtime : new Date(posix.mtime);
  return {
    ino,
    mode: type | (posix.mode ?? (kind === 'file' ? FILE_MODE : DIR_MODE)),
    // 1 for directories tells find(1) not to count subdirectories from the link count.
    nlink: 1,
    uid: posix.uid ?? owner.uid,
    gid: posix.gid ?? owner.gid,
    size,
    blocks: Math.ceil(size / 512),
    blksize: PREFERRED_IO,
    atime: time,
    mtime: time,
    ctime: time,
  };
}

export function nodeAttr(node: Node, owner: Owner): Attr {
  if (node.kind === 'dir') return attr(node.ino, 'dir', 0, node.mtime, undefined, owner);
  return attr(node.ino, 'file', node.size, versionedMtime(node.mtime, node.etag), node.metadata, owner);
}

export function localAttr(ino: number, file: LocalFile, owner: Owner): Attr {
  return attr(ino, 'file', file.size, new Date(file.mtime), { ...file.metadata, mtime: String(file.mtime / 1000) }, owner);
}
