/**
 * The staging cache: serves reads of object versions from sparse local files, faulting missing
 * blocks from the object store, and keeps the LMDB index in step. Reads that cannot get cache
 * space are served straight from the store (bypass), so a full cache never fails a read.
 */
import { readSync } from 'node:fs';
import createDebug from 'debug';
import type { CacheConfig } from '../config';
import { errorMessage } from '../errors';
import type { ObjectStore } from '../store/object-store';
import { CacheIndex, type Counters, zeroCounters, COUNTER_NAMES } from './cache-index';
import { Fetcher, NoCacheSpace } from './fetcher';
import { Readahead } from './readahead';
import { reconcile } from './reconcile';
import { SpaceLedger } from './space-ledger';
import { entryId, StagedFiles } from './staged-files';
import { StagedObject, type ObjectVersion } from './staged-object';

const debug = createDebug('stagefs:cache');
const warn = createDebug('stagefs:warn');

/** Largest ranged GET: big enough to amortise a request, small enough to keep several in flight. */
const MAX_REQUEST_BYTES = 8 * 1024 * 1024;
const MAX_READAHEAD_BYTES = 64 * 1024 * 1024;
const MAX_READAHEAD_FETCHES = 8;
const FLUSH_INTERVAL_MS = 200;

export interface CacheHandle {
  /** Undefined for an empty object, which needs no staging. */
  readonly object: StagedObject | undefined;
  readonly readahead: Readahead;
}

export interface CacheStats {
  capacityBytes: number;
  stagedBytes: number;
  reservedBytes: number;
  entryCount: number;
  counters: Counters;
}

export interface StagingCacheOptions {
  config: CacheConfig;
  store: ObjectStore;
  now?: () => number;
}

export class StagingCache {
  private readonly entries = new Map<string, StagedObject>();
  /** Key -> the entries of its versions, to retire older ones when a newer one is opened. */
  private readonly versionsByKey = new Map<string, Set<StagedObject>>();
  private readonly changed = new Set<StagedObject>();
  private readonly counters: Counters;
  private unflushedCounters = zeroCounters();
  private readonly fetcher: Fetcher;
  private readaheadFetches = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly now: () => number;

  private constructor(
    private readonly config: CacheConfig,
    private readonly store: ObjectStore,
    private readonly index: CacheIndex,
    private readonly files: StagedFiles,
    private readonly ledger: SpaceLedger,
    now: () => number,
  ) {
    this.now = now;
    this.counters = index.counters();
    this.fetcher = new Fetcher(store, files, {
      reserve: async (bytes) => this.ledger.tryReserve(bytes),
      committed: (object, bytes) => {
        this.ledger.commit(bytes);
        this.changed.add(object);
      },
      released: (bytes) => this.ledger.release(bytes),
      fetched: (bytes) => this.count('bytesFetched', bytes),
    });
  }

  static async open(options: StagingCacheOptions): Promise<StagingCache> {
    const index = CacheIndex.open(options.config.dir);
    const files = new StagedFiles(options.config.dir);
    const report = await reconcile(index, files);
    const cache = new StagingCache(
      options.config,
      options.store,
      index,
      files,
      new SpaceLedger(options.config.capacityBytes),
      options.now ?? Date.now,
    );
    for (const object of report.objects) cache.adopt(object);
    debug(
      'cache %s: %d entries, %d bytes staged; %d orphan files deleted, %d records without file dropped',
      options.config.dir,
      report.objects.length,
      cache.ledger.staged,
      report.orphanFilesDeleted,
      report.missingFilesDropped,
    );
    cache.flushTimer = setInterval(() => void cache.flush(), FLUSH_INTERVAL_MS);
    cache.flushTimer.unref();
    return cache;
  }

  /** Opens a handle on one version of an object; the entry counts it until `release`. */
  open(version: Omit<ObjectVersion, 'bucket'> & { bucket: string }): CacheHandle {
    const readahead = new Readahead({ initialBytes: 2 * this.config.blockSize, maxBytes: MAX_READAHEAD_BYTES });
    if (version.size === 0) return { object: undefined, readahead };
    const id = entryId(version.bucket, version.key, version.etag);
    let object = this.entries.get(id);
    if (!object) {
      object = new StagedObject(id, version, this.config.blockSize);
      object.lastAccess = this.now();
      this.adopt(object);
    }
    for (const other of this.versionsByKey.get(version.key) ?? []) {
      if (other !== object) void this.retire(other);
    }
    object.openHandles++;
    object.lastAccess = this.now();
    this.changed.add(object);
    return { object, readahead };
  }

  release(handle: CacheHandle): void {
    const object = handle.object;
    if (!object) return;
    object.openHandles = Math.max(0, object.openHandles - 1);
    object.lastAccess = this.now();
    this.changed.add(object);
  }

  /** Reads up to `length` bytes at `position` into `buffer`; returns the count read. */
  async read(handle: CacheHandle, buffer: Buffer, length: number, position: number): Promise<number> {
    const object = handle.object;
    if (!object || position >= object.size) return 0;
    const end = Math.min(object.size, position + length);
    const first = object.blockOf(position);
    const last = object.blockOf(end - 1);
    object.lastAccess = this.now();
    const window = handle.readahead.onRead(position, end);
    if (object.blocks.hasAll(first, last)) {
      this.count('hits', 1);
      if (window) this.readAhead(object, handle.readahead, end, window);
      return this.readStaged(object, buffer, position, end);
    }
    this.count('misses', 1);
    const waits = this.demand(object, first, last);
    if (window) this.readAhead(object, handle.readahead, end, window);
    try {
      await Promise.all(waits);
    } catch (err) {
      if (err instanceof NoCacheSpace) return this.bypass(object, buffer, position, end);
      throw err;
    }
    return this.readStaged(object, buffer, position, end);
  }

  stats(): CacheStats {
    return {
      capacityBytes: this.ledger.capacity,
      stagedBytes: this.ledger.staged,
      reservedBytes: this.ledger.reserved,
      entryCount: this.entries.size,
      counters: { ...this.counters },
    };
  }

  /** Writes every pending change to the index and stops; the cache must not be used after. */
  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    for (const object of this.entries.values()) {
      object.openHandles = 0;
      this.changed.add(object);
    }
    await this.flush();
    await Promise.all([...this.entries.values()].map((object) => object.closeFile()));
    await this.index.close();
  }

  /** Starts fetches for the missing blocks of first..last and returns what to wait on. */
  private demand(object: StagedObject, first: number, last: number): Promise<void>[] {
    const waits: Promise<void>[] = [];
    let runStart = -1;
    for (let block = first; block <= last + 1; block++) {
      const missing = block <= last && !object.blocks.has(block) && !object.inflight.has(block);
      if (missing && runStart < 0) runStart = block;
      if (!missing && runStart >= 0) {
        void this.fetcher.fetch(object, runStart, block - 1);
        runStart = -1;
      }
    }
    for (let block = first; block <= last; block++) {
      const inflight = object.inflight.get(block);
      if (inflight) waits.push(inflight.promise);
    }
    return waits;
  }

  /** Keeps the blocks of [end, end + window) staged or in flight, a few GETs at a time. */
  private readAhead(object: StagedObject, readahead: Readahead, end: number, window: number): void {
    const stop = Math.min(object.size, end + window);
    let from = Math.max(end, readahead.scheduledUntil);
    if (from >= stop) return;
    const maxRunBlocks = Math.max(1, Math.floor(MAX_REQUEST_BYTES / object.blockSize));
    let block = object.blockOf(from);
    const lastBlock = object.blockOf(stop - 1);
    while (block <= lastBlock) {
      if (object.blocks.has(block) || object.inflight.has(block)) {
        block++;
        continue;
      }
      if (this.readaheadFetches >= MAX_READAHEAD_FETCHES) break;
      let runEnd = block;
      while (
        runEnd + 1 <= lastBlock &&
        runEnd + 1 - block < maxRunBlocks &&
        !object.blocks.has(runEnd + 1) &&
        !object.inflight.has(runEnd + 1)
      ) {
        runEnd++;
      }
      this.readaheadFetches++;
      void this.fetcher.fetch(object, block, runEnd).finally(() => this.readaheadFetches--);
      block = runEnd + 1;
    }
    from = Math.min(stop, object.blockStart(block));
    readahead.scheduledUntil = Math.max(readahead.scheduledUntil, from);
  }

  private async readStaged(object: StagedObject, buffer: Buffer, position: number, end: number): Promise<number> {
    const file = await object.openFile(this.files);
    // Staged bytes are local and usually in the page cache: a synchronous pread costs less than
    // a round trip through the thread pool.
    let done = 0;
    while (position + done < end) {
      const n = readSync(file.fd, buffer, done, end - position - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /** Serves a read straight from the store when the cache has no room for it. */
  private async bypass(object: StagedObject, buffer: Buffer, position: number, end: number): Promise<number> {
    this.count('bypassedReads', 1);
    const body = await this.store.getRange(object.key, position, end, object.etag);
    let done = 0;
    for await (const chunk of body) {
      const take = Math.min(chunk.length, end - position - done);
      buffer.set(chunk.subarray(0, take), done);
      done += take;
    }
    this.count('bytesFetched', done);
    return done;
  }

  private adopt(object: StagedObject): void {
    this.entries.set(object.id, object);
    this.ledger.adjustStaged(object.stagedBytes);
    let versions = this.versionsByKey.get(object.key);
    if (!versions) this.versionsByKey.set(object.key, (versions = new Set()));
    versions.add(object);
    this.changed.add(object);
  }

  /** An older version of a key goes as soon as nothing uses it. */
  private async retire(object: StagedObject): Promise<void> {
    object.superseded = true;
    if (object.evictable) await this.remove(object);
  }

  private async remove(object: StagedObject): Promise<void> {
    object.removed = true;
    this.entries.delete(object.id);
    this.changed.delete(object);
    const versions = this.versionsByKey.get(object.key);
    versions?.delete(object);
    if (versions?.size === 0) this.versionsByKey.delete(object.key);
    this.ledger.adjustStaged(-object.stagedBytes);
    await object.closeFile();
    await this.index.remove(object.id);
    await this.files.remove(object.id);
    debug('removed %s (%s)', object.key, object.etag);
  }

  private count(name: (typeof COUNTER_NAMES)[number], amount: number): void {
    this.counters[name] += amount;
    this.unflushedCounters[name] += amount;
  }

  /** Records changed entries in the index, each only after its new blocks are synced to disk. */
  private flush(): Promise<void> {
    this.flushing ??= this.flushChanges().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async flushChanges(): Promise<void> {
    const changed = [...this.changed];
    this.changed.clear();
    const counters = this.unflushedCounters;
    this.unflushedCounters = zeroCounters();
    try {
      await Promise.all(changed.map((object) => this.persist(object)));
      await this.index.addCounters(counters);
    } catch (err) {
      warn('could not update the cache index: %s', errorMessage(err));
      for (const object of changed) this.changed.add(object);
      for (const name of COUNTER_NAMES) this.unflushedCounters[name] += counters[name];
    }
  }

  private async persist(object: StagedObject): Promise<void> {
    if (object.removed) return;
    const record = object.toRecord();
    const unsynced = object.unsyncedBlocks;
    if (unsynced > 0) {
      object.unsyncedBlocks = 0;
      try {
        await (await object.openFile(this.files)).datasync();
      } catch (err) {
        object.unsyncedBlocks += unsynced;
        throw err;
      }
    }
    await this.index.put(record);
    if (object.openHandles === 0 && object.activeFetches === 0 && object.fileIsOpen) await object.closeFile();
    if (object.superseded && object.evictable) await this.remove(object);
  }
}
