/**
 * The LMDB index of the staging cache: the only module that touches LMDB. One record per staged
 * object and a set of cumulative counters. The mount process writes; admin commands open it
 * read-only while the mount runs (LMDB serves concurrent readers across processes).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';

export type EntryState = 'fetching' | 'partial' | 'complete' | 'dirty' | 'uploading';

export interface EntryRecord {
  id: string;
  bucket: string;
  key: string;
  etag: string;
  size: number;
  /** Object mtime, ms since the epoch. */
  mtime: number;
  blockSize: number;
  /** Bitmap of staged blocks; a bit is set only after the block's bytes are durable on disk. */
  blocks: Uint8Array;
  stagedBytes: number;
  /** ms since the epoch. */
  lastAccess: number;
  openHandles: number;
  pinned: boolean;
  /** Written through the mount and not yet uploaded (working copies only). */
  dirty: boolean;
  state: EntryState;
  /** A working copy: the file is the whole content, written through the mount. */
  working?: boolean;
  /** Object metadata (mode, owner, times) a working copy's upload carries. */
  metadata?: Record<string, string>;
  /** Why the last upload of a working copy failed. */
  lastError?: string;
}

export const COUNTER_NAMES = ['hits', 'misses', 'bytesFetched', 'evictions', 'bypassedReads'] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];
export type Counters = Record<CounterName, number>;

/** The cache's space as the mount last recorded it, for admin tools in other processes. */
export interface SpaceRecord {
  capacityBytes: number;
  stagedBytes: number;
  reservedBytes: number;
  /** ms since the epoch. */
  updatedAt: number;
}

export function zeroCounters(): Counters {
  return { hits: 0, misses: 0, bytesFetched: 0, evictions: 0, bypassedReads: 0 };
}

/**
 * lmdb-js rejects a failed commit with an error that carries a second rejected promise
 * (commitError); left alone, that one ends the process as an unhandled rejection. A full disk
 * shows as errno 28, which is named here so callers can answer ENOSPC.
 */
function committed<T>(write: Promise<T>): Promise<T> {
  return write.catch((err: Error & { code?: unknown; commitError?: Promise<unknown> }) => {
    err.commitError?.catch(() => undefined);
    if (err.code === 28) err.code = 'ENOSPC';
    throw err;
  });
}

export class CacheIndex {
  private constructor(
    private readonly root: RootDatabase,
    private readonly entriesDb: Database<EntryRecord, string>,
    private readonly countersDb: Database<number, string>,
    private readonly metaDb: Database<SpaceRecord, string>,
  ) {}

  static open(cacheDir: string, options: { readOnly?: boolean } = {}): CacheIndex {
    const path = join(cacheDir, 'index');
    if (!options.readOnly) mkdirSync(path, { recursive: true });
    const root = open({ path, maxDbs: 4, readOnly: options.readOnly ?? false, compression: false });
    return new CacheIndex(
      root,
      root.openDB<EntryRecord, string>({ name: 'entries' }),
      root.openDB<number, string>({ name: 'counters' }),
      root.openDB<SpaceRecord, string>({ name: 'meta' }),
    );
  }

  entries(): EntryRecord[] {
    return [...this.entriesDb.getRange()].map(({ value }) => value);
  }

  get(id: string): EntryRecord | undefined {
    return this.entriesDb.get(id);
  }

  put(record: EntryRecord): Promise<boolean> {
    return committed(this.entriesDb.put(record.id, record));
  }

  remove(id: string): Promise<boolean> {
    return committed(this.entriesDb.remove(id));
  }

  /** Removes the record in one transaction if `mayRemove` still holds for what is stored. */
  removeIf(id: string, mayRemove: (record: EntryRecord) => boolean): Promise<boolean> {
    return committed(this.entriesDb.transaction(() => {
      const record = this.entriesDb.get(id);
      if (!record || !mayRemove(record)) return false;
      this.entriesDb.removeSync(id);
      return true;
    }));
  }

  counters(): Counters {
    const counters = zeroCounters();
    for (const name of COUNTER_NAMES) counters[name] = this.countersDb.get(name) ?? 0;
    return counters;
  }

  addCounters(delta: Counters): Promise<void> {
    return committed(
      this.countersDb.transaction(() => {
        for (const name of COUNTER_NAMES) {
          if (delta[name]) this.countersDb.putSync(name, (this.countersDb.get(name) ?? 0) + delta[name]);
        }
      }),
    );
  }

  space(): SpaceRecord | undefined {
    return this.metaDb.get('space');
  }

  putSpace(space: SpaceRecord): Promise<boolean> {
    return committed(this.metaDb.put('space', space));
  }

  /** Resolves when every write so far is committed and synced. */
  async flushed(): Promise<void> {
    await committed(Promise.resolve(this.root.flushed));
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}
