/**
 * POSIX attributes kept as object metadata, in the x-amz-meta-* names s3fs uses (mode with the
 * file type bits, uid, gid, mtime, ctime, atime), so buckets move between s3fs and stagefs both
 * ways with the same types, modes, owners and times. A change writes every field at once.
 */
import { constants } from 'node:fs';
import { formatEpochSeconds, parseEpochSeconds } from '../util/epoch-seconds';

export interface PosixAttrs {
  /** Permission bits (0o7777). */
  mode?: number;
  uid?: number;
  gid?: number;
  /** ms since the epoch. */
  atime?: number;
  mtime?: number;
  ctime?: number;
}

/** The attributes an object's metadata holds, with the file type bits (S_IFMT) s3fs keeps in the mode. */
export interface StoredAttrs extends PosixAttrs {
  type?: number;
}

/** Every attribute, as a change writes them. */
export type FullAttrs = Required<PosixAttrs> & { type: number };

/** The metadata names the attributes take; other user metadata of an object is kept as it is. */
const POSIX_FIELDS = ['mode', 'uid', 'gid', 'mtime', 'ctime', 'atime'];

function integer(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  return Number(text.trim());
}

export function parseMetadata(metadata: Record<string, string> | undefined): StoredAttrs {
  if (!metadata) return {};
  const mode = integer(metadata.mode);
  return {
    type: mode === undefined || (mode & constants.S_IFMT) === 0 ? undefined : mode & constants.S_IFMT,
    mode: mode === undefined ? undefined : mode & 0o7777,
    uid: integer(metadata.uid),
    gid: integer(metadata.gid),
    atime: parseEpochSeconds(metadata.atime),
    mtime: parseEpochSeconds(metadata.mtime),
    ctime: parseEpochSeconds(metadata.ctime),
  };
}

/** `metadata` with all of `attrs` written in, replacing what it said of them. */
export function withAttrs(metadata: Record<string, string> | undefined, attrs: FullAttrs): Record<string, string> {
  const kept = Object.fromEntries(Object.entries(metadata ?? {}).filter(([name]) => !POSIX_FIELDS.includes(name)));
  return {
    ...kept,
    mode: String(attrs.type | (attrs.mode & 0o7777)),
    uid: String(attrs.uid),
    gid: String(attrs.gid),
    mtime: formatEpochSeconds(attrs.mtime),
    ctime: formatEpochSeconds(attrs.ctime),
    atime: formatEpochSeconds(attrs.atime),
  };
}

/** The metadata without the fields a file being written keeps apart (its times). */
export function withoutTimes(metadata: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata ?? {}).filter(([name]) => !['mtime', 'ctime', 'atime'].includes(name)));
}
