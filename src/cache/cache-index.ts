/**
 * The LMDB index of the staging cache: the only module that touches LMDB. One record per staged
 * object and a set of cumulative counters. The mount process writes; admin commands open it
 * read-only while the mount runs (LMDB serves concurrent readers across processes).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';

export type EntryState = 'fetching' | 'partial' | 'complete';

/**
 * The first bytes of block 0 on disk while the block itself is not staged, with their CRC32C:
 * what a large object's first open fetches (see StagingCache.open), enough for header probes.
 */
export interface StagedHead {
  bytes: number;
  crc: number;
}

export interface EntryRecord {
  id: string;
  /** The staging file's name (older indexes named it by the id alone). */
  file: string;
  bucket: string;
  key: string;
  etag: string;
  size: number;
  /** Object mtime, ms since the epoch. */
  mtime: number;
  blockSize: number;
  /** Bitmap of staged blocks; a bit is set only after the block's bytes are durable on disk. */
  blocks: Uint8Array;
  /** The CRC32C of each block, 4 bytes a block in the host's byte order, valid where `crcBlocks` has its bit (absent in older indexes). */
  crcs?: Uint8Array;
  crcBlocks?: Uint8Array;
  /** The first bytes of block 0, staged while block 0 is not (absent in older indexes). */
  head?: StagedHead;
  stagedBytes: number;
  /** ms since the epoch. */
  lastAccess: number;
  openHandles: number;
  pinned: boolean;
  state: EntryState;
}

/**
 * A file written through the mount, as indexes before the write path kept its own records
 * listed it (with its data in the staging file named by the id); read once, to hand it over.
 */
export interface LegacyWriteRecord {
  id: string;
  key: string;
  size: number;
  mtime: number;
  working: true;
  dirty: boolean;
  metadata?: Record<string, string>;
}

export const COUNTER_NAMES = ['hits', 'misses', 'bytesFetched', 'evictions', 'bypassedReads', 'badBlocks', 'checksumMismatches'] as const;
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
  return { hits: 0, misses: 0, bytesFetched: 0, evictions: 0, bypassedReads: 0, badBlocks: 0, checksumMismatches: 0 };
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

function isLegacyWrite(record: EntryRecord | LegacyWriteRecord): record is LegacyWriteRecord {
  return (record as Partial<LegacyWriteRecord>).working === true;
}

export class CacheIndex {
  private constructor(
    private readonly root: RootDatabase,
    private readonly entriesDb: Database<EntryRecord | LegacyWriteRecord, string>,
    private readonly countersDb: Database<number, string>,
    private readonly metaDb: Database<SpaceRecord, string>,
  ) {}

  static open(cacheDir: string, options: { readOnly?: boolean } = {}): CacheIndex {
    const path = join(cacheDir, 'index');
    if (!options.readOnly) mkdirSync(path, { recursive: true });
    const root = open({ path, maxDbs: 4, readOnly: options.readOnly ?? false, compression: false });
    return new CacheIndex(
      root,
      root.openDB<EntryRecord | LegacyWriteRecord, string>({ name: 'entries' }),
      root.openDB<number, string>({ name: 'counters' }),
      root.openDB<SpaceRecord, string>({ name: 'meta' }),
    );
  }

  entries(): EntryRecord[] {
    return [...this.entriesDb.getRange()].map(({ value }) => value).filter((record): record is EntryRecord => !isLegacyWrite(record));
  }

  get(id: string): EntryRecord | undefined {
    const record = this.entriesDb.get(id);
    return record && !isLegacyWrite(record) ? record : undefined;
  }

  legacyWrites(): LegacyWriteRecord[] {
    return [...this.entriesDb.getRange()].map(({ value }) => value).filter(isLegacyWrite);
  }


  put(record: EntryRecord): Promise<boolean> {
    return committed(this.entriesDb.put(record.id, record));
  }

  remove(id: string): Promise<boolean> {
    return committed(this.entriesDb.remove(id));
  }

  /** Removes the record of `id` if it still names the staging file `file` (a newer entry's record stays). */
  removeEntry(id: string, file: string): Promise<boolean> {
    return committed(
      this.entriesDb.transaction(() => {
        const record = this.entriesDb.get(id);
        if (!record || (record as EntryRecord).file !== file) return false;
        this.entriesDb.removeSync(id);
        return true;
      }),
    );
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
