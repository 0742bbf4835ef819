/**
 * The durable record of each file being written, kept beside its data in the write path's own
 * directory (not in the cache index): pending writes must survive a wiped cache directory and a
 * damaged index, and a crash at any point must leave enough to upload them. Each record is one
 * small JSON file, replaced atomically (write, fsync, rename) and synchronously, so the record
 * on disk always describes bytes the data file holds before any of them can be lost.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Where a part's bytes are, recorded per part: local file, base object, or a sent part. */
export type PartPlace = 'L' | 'B' | 'S';

export interface PendingRecord {
  id: string;
  key: string;
  size: number;
  /** ms since the epoch. */
  mtime: number;
  /** ms since the epoch; absent in records of older versions (then mtime). */
  ctime?: number;
  atime?: number;
  /** Object metadata (x-amz-meta-*) the upload carries, its times aside. */
  metadata: Record<string, string>;
  /** Whether the content or metadata changed since the last upload. */
  dirty: boolean;
  /** The object version whose bytes the 'B' parts hold. */
  base?: { key: string; etag: string; size: number; mtime: number };
  /** One letter per part; parts past the end of this string are local. */
  parts: string;
  /** The multipart upload under way, with the ETags of parts sent and then dropped locally. */
  session?: { key: string; uploadId: string; sent: Record<number, string> };
  /** Deleted through the mount while open: never uploaded, dropped once found. */
  unlinked?: boolean;
  /** A write failed: the file must not be published, and is dropped once found. */
  failed?: string;
  /** Why the last upload attempt failed, for status. */
  lastError?: string;
}

/** What `stagefs status` shows of a pending write. */
export interface PendingWrite {
  key: string;
  size: number;
  dirty: boolean;
  error?: string;
}

export class PendingRecords {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  dataPath(id: string): string {
    return join(this.dir, `${id}.data`);
  }

  private recordPath(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  /**
   * Replaces the record of `record.id` atomically. With `durable` it is on disk when this returns,
   * as it must be before local bytes it no longer lists are dropped; otherwise it survives the
   * process (a crash) and, at worst after a power loss, a recovery uploads again what it need not.
   */
  write(record: PendingRecord, durable = false): void {
    const temporary = `${this.recordPath(record.id)}.tmp`;
    const fd = openSync(temporary, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(record));
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, this.recordPath(record.id));
  }

  remove(id: string): void {
    for (const path of [this.recordPath(id), this.dataPath(id)]) {
      try {
        unlinkSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }

  /** Every record on disk, and the data files no record names (kept, never deleted). */
  scan(): { records: PendingRecord[]; unnamedData: string[] } {
    const names = readdirSync(this.dir);
    const records = names.filter((n) => n.endsWith('.json')).map((n) => JSON.parse(readFileSync(join(this.dir, n), 'utf8')) as PendingRecord);
    const named = new Set(records.map((r) => `${r.id}.data`));
    return { records, unnamedData: names.filter((n) => n.endsWith('.data') && !named.has(n)).map((n) => join(this.dir, n)) };
  }
}

/** The pending writes recorded in `dir`, for admin tools reading while the mount runs. */
export function readPendingWrites(dir: string): PendingWrite[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const writes: PendingWrite[] = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    let record: PendingRecord;
    try {
      record = JSON.parse(readFileSync(join(dir, name), 'utf8')) as PendingRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // uploaded and dropped meanwhile
      throw err;
    }
    if (record.unlinked || record.failed) continue;
    writes.push({ key: record.key, size: record.size, dirty: record.dirty, error: record.lastError });
  }
  return writes;
}
