/**
 * The FUSE kernel protocol's messages, as the native engine hands them to JavaScript: request
 * parsing and reply encoding (little-endian, 64-bit Linux layouts of <linux/fuse.h>).
 */
import { constants } from 'node:fs';
import type { Attr, FsStats } from '../fs/filesystem';

/** The largest READ the native engine gets: it asks the kernel for 256 pages (native/session.h). */
export const MAX_READ_BYTES = 256 * 4096;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  ACCESS: 34,
  CREATE: 35,
  READDIRPLUS: 44,
  RENAME2: 45,
} as const;

export const FOPEN_KEEP_CACHE = 1 << 1;

const FATTR_MODE = 1 << 0;
const FATTR_UID = 1 << 1;
const FATTR_GID = 1 << 2;
const FATTR_SIZE = 1 << 3;
const FATTR_ATIME = 1 << 4;
const FATTR_MTIME = 1 << 5;
const FATTR_FH = 1 << 6;
const FATTR_ATIME_NOW = 1 << 7;
const FATTR_MTIME_NOW = 1 << 8;
export const FOPEN_PASSTHROUGH = 1 << 7;

export const IN_HEADER_SIZE = 40;
const ATTR_SIZE = 88;
const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
const DIRENT_HEADER_SIZE = 24;

export interface RequestHeader {
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

export function parseHeader(message: Buffer): RequestHeader {
  return {
    opcode: message.readUInt32LE(4),
    unique: message.readBigUInt64LE(8),
    // Node ids are inode numbers, which stagefs keeps within 32 bits.
    nodeid: Number(message.readBigUInt64LE(16)),
    uid: message.readUInt32LE(24),
    gid: message.readUInt32LE(28),
    pid: message.readUInt32LE(32),
  };
}

/** The NUL-terminated name a LOOKUP (and similar) carries after its header. */
export function parseName(body: Buffer, offset = 0): string {
  const end = body.indexOf(0, offset);
  return body.toString('utf8', offset, end < 0 ? body.length : end);
}

export interface ReadIn {
  fh: number;
  offset: number;
  size: number;
}

export function parseReadIn(body: Buffer): ReadIn {
  return { fh: Number(body.readBigUInt64LE(0)), offset: Number(body.readBigUInt64LE(8)), size: body.readUInt32LE(16) };
}

export interface CreateIn {
  flags: number;
  /** The mode with the umask applied. */
  mode: number;
  name: string;
}

export function parseCreateIn(body: Buffer): CreateIn {
  return { flags: body.readUInt32LE(0), mode: body.readUInt32LE(4) & ~body.readUInt32LE(8), name: parseName(body, 16) };
}

export function parseMknodIn(body: Buffer): { mode: number; name: string } {
  return { mode: body.readUInt32LE(0) & ~body.readUInt32LE(8), name: parseName(body, 16) };
}

/** SYMLINK: the new link's name, then its target. */
export function parseSymlinkIn(body: Buffer): { name: string; target: string } {
  const name = parseName(body);
  return { name, target: parseName(body, Buffer.byteLength(name) + 1) };
}

export function parseMkdirIn(body: Buffer): { mode: number; name: string } {
  return { mode: body.readUInt32LE(0) & ~body.readUInt32LE(4), name: parseName(body, 8) };
}

export interface RenameIn {
  newParent: number;
  flags: number;
  from: string;
  to: string;
}

/** RENAME and RENAME2 (which adds flags such as RENAME_NOREPLACE). */
export function parseRenameIn(body: Buffer, withFlags: boolean): RenameIn {
  const namesAt = withFlags ? 16 : 8;
  const from = parseName(body, namesAt);
  const to = parseName(body, namesAt + Buffer.byteLength(from) + 1);
  return { newParent: Number(body.readBigUInt64LE(0)), flags: withFlags ? body.readUInt32LE(8) : 0, from, to };
}

export interface SetattrIn {
  fh: number | undefined;
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  /** ms since the epoch. */
  atime?: number;
  mtime?: number;
}

export function parseSetattrIn(body: Buffer, now: number): SetattrIn {
  const valid = body.readUInt32LE(0);
  const changes: SetattrIn = { fh: valid & FATTR_FH ? Number(body.readBigUInt64LE(8)) : undefined };
  if (valid & FATTR_SIZE) changes.size = Number(body.readBigUInt64LE(16));
  if (valid & FATTR_MODE) changes.mode = body.readUInt32LE(68) & 0o7777;
  if (valid & FATTR_UID) changes.uid = body.readUInt32LE(76);
  if (valid & FATTR_GID) changes.gid = body.readUInt32LE(80);
  const time = (secondsAt: number, nanosAt: number) => Number(body.readBigInt64LE(secondsAt)) * 1000 + Math.floor(body.readUInt32LE(nanosAt) / 1e6);
  if (valid & FATTR_ATIME_NOW) changes.atime = now;
  else if (valid & FATTR_ATIME) changes.atime = time(32, 56);
  if (valid & FATTR_MTIME_NOW) changes.mtime = now;
  else if (valid & FATTR_MTIME) changes.mtime = time(40, 60);
  return changes;
}

export interface WriteIn {
  fh: number;
  offset: number;
  data: Buffer;
}

export function parseWriteIn(body: Buffer): WriteIn {
  const size = body.readUInt32LE(16);
  return { fh: Number(body.readBigUInt64LE(0)), offset: Number(body.readBigUInt64LE(8)), data: body.subarray(40, 40 + size) };
}

export function writeOut(size: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeUInt32LE(size, 0);
  return out;
}

/** OPEN's flags (O_*); RELEASE's, FLUSH's, FSYNC's and RELEASEDIR's file handle. */
export const parseOpenFlags = (body: Buffer): number => body.readUInt32LE(0);
export const parseFh = (body: Buffer): number => Number(body.readBigUInt64LE(0));

const FUSE_GETATTR_FH = 1 << 0;

/** The open file a GETATTR came through (fstat, or a read revalidating the size), if any. */
export function parseGetattrFh(body: Buffer): number | undefined {
  if (body.length < 16 || !(body.readUInt32LE(0) & FUSE_GETATTR_FH)) return undefined;
  return Number(body.readBigUInt64LE(8));
}

function writeAttr(out: Buffer, at: number, attr: Attr): void {
  const seconds = (date: Date) => BigInt(Math.floor(date.getTime() / 1000));
  const nanos = (date: Date) => (date.getTime() - Math.floor(date.getTime() / 1000) * 1000) * 1_000_000;
  out.writeBigUInt64LE(BigInt(attr.ino), at);
  out.writeBigUInt64LE(BigInt(attr.size), at + 8);
  out.writeBigUInt64LE(BigInt(attr.blocks), at + 16);
  out.writeBigInt64LE(seconds(attr.atime), at + 24);
  out.writeBigInt64LE(seconds(attr.mtime), at + 32);
  out.writeBigInt64LE(seconds(attr.ctime), at + 40);
  out.writeUInt32LE(nanos(attr.atime), at + 48);
  out.writeUInt32LE(nanos(attr.mtime), at + 52);
  out.writeUInt32LE(nanos(attr.ctime), at + 56);
  out.writeUInt32LE(attr.mode, at + 60);
  out.writeUInt32LE(attr.nlink, at + 64);
  out.writeUInt32LE(attr.uid, at + 68);
  out.writeUInt32LE(attr.gid, at + 72);
  out.writeUInt32LE(0, at + 76); // rdev
  out.writeUInt32LE(attr.blksize, at + 80);
  out.writeUInt32LE(0, at + 84); // flags
}

function writeTimeout(out: Buffer, at: number, seconds: number): void {
  out.writeBigUInt64LE(BigInt(Math.floor(seconds)), at);
}

/** The generation of an inode number (which file handles carry beside it). */
export type Generations = (ino: number) => number;

function writeEntry(out: Buffer, at: number, attr: Attr | undefined, validSeconds: number, generations: Generations): void {
  out.fill(0, at, at + ENTRY_OUT_SIZE);
  if (attr) {
    out.writeBigUInt64LE(BigInt(attr.ino), at); // nodeid 0: a negative entry
    out.writeBigUInt64LE(BigInt(generations(attr.ino)), at + 8);
  }
  writeTimeout(out, at + 16, validSeconds);
  writeTimeout(out, at + 24, validSeconds);
  const nanos = Math.round((validSeconds % 1) * 1e9);
  out.writeUInt32LE(nanos, at + 32);
  out.writeUInt32LE(nanos, at + 36);
  if (attr) writeAttr(out, at + 40, attr);
}

/** fuse_entry_out; without an attr it is a negative entry the kernel may cache. */
export function entryOut(attr: Attr | undefined, validSeconds: number, generations: Generations): Buffer {
  const out = Buffer.alloc(ENTRY_OUT_SIZE);
  writeEntry(out, 0, attr, validSeconds, generations);
  return out;
}

export function attrOut(attr: Attr, validSeconds: number): Buffer {
  const out = Buffer.alloc(16 + ATTR_SIZE);
  writeTimeout(out, 0, validSeconds);
  out.writeUInt32LE(Math.round((validSeconds % 1) * 1e9), 8);
  writeAttr(out, 16, attr);
  return out;
}

export function openOut(fh: number, openFlags: number, backingId = 0): Buffer {
  const out = Buffer.alloc(16);
  out.writeBigUInt64LE(BigInt(fh), 0);
  out.writeUInt32LE(openFlags, 8);
  out.writeInt32LE(backingId, 12);
  return out;
}

export function statfsOut(stats: FsStats): Buffer {
  const out = Buffer.alloc(80);
  out.writeBigUInt64LE(BigInt(stats.blocks), 0);
  out.writeBigUInt64LE(BigInt(stats.blocksFree), 8);
  out.writeBigUInt64LE(BigInt(stats.blocksFree), 16);
  out.writeBigUInt64LE(BigInt(stats.files), 24);
  out.writeBigUInt64LE(BigInt(stats.filesFree), 32);
  out.writeUInt32LE(stats.blockSize, 40);
  out.writeUInt32LE(stats.nameMax, 44);
  out.writeUInt32LE(stats.blockSize, 48);
  return out;
}

export interface DirectoryEntry {
  name: string;
  attr: Attr;
  /**
   * Attributes from a listing alone (the node's metadata unread): READDIRPLUS gives no entry for
   * it, so the kernel looks it up when it needs it, and a non-directory's type is left unknown
   * (a symbolic link is told apart only by its metadata).
   */
  partial?: boolean;
}

const align8 = (n: number) => (n + 7) & ~7;

/** d_type of an entry: DT_UNKNOWN (0) for a non-directory whose type is not known yet. */
export function direntType(attr: Attr, partial: boolean | undefined): number {
  const type = (attr.mode >>> 12) & 0xf;
  return partial && type !== constants.S_IFDIR >>> 12 ? 0 : type;
}

/**
 * Packs directory entries from index `start` into at most `size` bytes, as READDIR (plain) or
 * READDIRPLUS (with each entry's attributes) expects. Each entry's offset is the index of the
 * next, which the kernel hands back to continue.
 */
export function packDirectory(
  entries: DirectoryEntry[],
  start: number,
  size: number,
  plus: boolean,
  validSeconds: number,
  generations: Generations,
): Buffer {
  const parts: Buffer[] = [];
  let used = 0;
  for (let index = start; index < entries.length; index++) {
    const { name, attr, partial } = entries[index];
    const nameBytes = Buffer.from(name, 'utf8');
    const direntAt = plus ? ENTRY_OUT_SIZE : 0;
    const length = align8(direntAt + DIRENT_HEADER_SIZE + nameBytes.length);
    if (used + length > size) break;
    const part = Buffer.alloc(length);
    if (plus) writeEntry(part, 0, name === '.' || name === '..' || partial ? undefined : attr, validSeconds, generations);
    part.writeBigUInt64LE(BigInt(attr.ino), direntAt);
    part.writeBigUInt64LE(BigInt(index + 1), direntAt + 8);
    part.writeUInt32LE(nameBytes.length, direntAt + 16);
    part.writeUInt32LE(direntType(attr, partial), direntAt + 20);
    nameBytes.copy(part, direntAt + DIRENT_HEADER_SIZE);
    parts.push(part);
    used += length;
  }
  return Buffer.concat(parts, used);
}
