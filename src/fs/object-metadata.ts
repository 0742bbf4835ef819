/**
 * POSIX attributes kept as object metadata, in the x-amz-meta-* names s3fs uses (mode, uid,
 * gid, mtime), so objects written by either tool show the same owner, mode and time in both.
 */
import { constants } from 'node:fs';

export interface PosixAttrs {
  /** Permission bits (0o7777). */
  mode?: number;
  uid?: number;
  gid?: number;
  /** ms since the epoch. */
  mtime?: number;
}

function number(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+(\.\d+)?$/.test(text)) return undefined;
  return Number(text);
}

export function parseMetadata(metadata: Record<string, string> | undefined): PosixAttrs {
  if (!metadata) return {};
  const mode = number(metadata.mode);
  const mtime = number(metadata.mtime);
  return {
    mode: mode === undefined ? undefined : mode & 0o7777,
    uid: number(metadata.uid),
    gid: number(metadata.gid),
    mtime: mtime === undefined ? undefined : Math.round(mtime * 1000),
  };
}

/** Metadata for `attrs`; a file's or directory's type bits go into the mode, as s3fs writes it. */
export function formatMetadata(attrs: PosixAttrs, kind: 'file' | 'dir'): Record<string, string> {
  const metadata: Record<string, string> = {};
  if (attrs.mode !== undefined) metadata.mode = String((kind === 'dir' ? constants.S_IFDIR : constants.S_IFREG) | (attrs.mode & 0o7777));
  if (attrs.uid !== undefined) metadata.uid = String(attrs.uid);
  if (attrs.gid !== undefined) metadata.gid = String(attrs.gid);
  if (attrs.mtime !== undefined) metadata.mtime = (attrs.mtime / 1000).toFixed(3);
  return metadata;
}
