/**
 * The staging cache: serves reads of object versions from sparse local files, faulting missing
 * blocks from the object store, keeps the LMDB index in step, and keeps staged plus reserved
 * bytes within the cache size by evicting what nothing uses. Reads that cannot get cache space
 * are served straight from the store (bypass), so a full cache never fails a read.
 */
import { readSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import createDebug from 'debug';
import type { CacheConfig } from '../config';
import { errorMessage } from '../errors';
import type { ObjectStore } from '../store/object-store';
import { formatBytes } from '../units';
import { BlockChecker, type BlockVerdict } from './block-checker';
import { BypassReader, MemoryBudget } from './bypass-reader';
import { DiskSpace } from './disk-space';
import { type CacheIndex, COUNTER_NAMES, type CounterName, type Counters, type SpaceRecord, type StagedHead, zeroCounters } from './cache-index';
import { Evictor } from './evictor';
import { Fetcher, NoCacheSpace } from './fetcher';
import { openSoundIndex, sealIndex } from './index-health';
import { ObjectDigests } from './object-digests';
import { Readahead } from './readahead';
import { reconcile } from './reconcile';
import { SpaceLedger, type Reservation } from './space-ledger';
import { entryId, newFileName, StagedFiles } from './staged-files';
import { StagedObject, type ObjectVersion } from './staged-object';
import type { LegacyWriteRecord } from './cache-index';

const debug = createDebug('stagefs:cache');
const evictLog = createDebug('stagefs:evict');
const warn = createDebug('stagefs:warn');
const verifyLog = createDebug('stagefs:verify');

/** Largest ranged GET: big enough to amortise a request, small enough to keep several in flight. */
const MAX_REQUEST_BYTES = 8 * 1024 * 1024;
const MAX_READAHEAD_BYTES = 64 * 1024 * 1024;
const MAX_READAHEAD_FETCHES = 8;
/**
 * A small random read into an aligned extent of this many bytes that already holds staged or
 * fetching blocks fetches the rest of the extent in the background: the clusters a booting qcow2
 * image reads sit close together, and a GET for the extent costs the store and us far less than
 * a GET per block touched (cold random 4 KiB reads on RGW: 2,900 -> 4,400 IOPS). Reads spread
 * thinly over a large image still fetch only their own blocks, and reads of a block or more
 * only theirs: they already use a GET well, and extra GETs beside them slowed them down.
 */
const DENSE_EXTENT_BYTES = 8 * 1024 * 1024;
const MAX_PREFETCH_FETCHES = 4;
/** GETs that readers wait for, at most at once: enough to keep the store busy, few enough to bound what they reserve. */
const MIN_DEMAND_FETCHES = 4;
const MAX_DEMAND_FETCHES = 16;
/**
 * Most unchecked bytes an open waits to have checked before handing a file to the kernel (a
 * tenth of a second or so); a larger file is checked in the background and handed over at a
 * later open, its reads meanwhile served (and checked) here.
 */
const MAX_OPEN_CHECK_BYTES = 64 * 1024 * 1024;
/** The head of block 0 a large object's first open fetches (see `open`): as large as most header probes. */
const HEAD_BYTES = 128 * 1024;
const BYPASS_MEMORY_BYTES = 32 * 1024 * 1024;
const FLUSH_INTERVAL_MS = 200;

export interface CacheHandle {
  /** Undefined for an empty object, which needs no staging. */
  readonly object: StagedObject | undefined;
  readonly readahead: Readahead;
  bypass?: BypassReader;
}

/** What a reader outside JavaScript needs to serve staged ranges of an open handle itself. */
export interface DirectAccess {
  fd: number;
  /**
   * Bits of the blocks staged and verified in this mount, set as blocks land or pass their
   * check; cleared only for a block found bad. Reads of other blocks go through `read`.
   */
  blocks: Uint8Array;
  blockSize: number;
  size: number;
  /** Every block is staged and verified in this mount: the kernel may read the file unchecked. */
  complete: boolean;
}

/** What a scrub found: entries with staged blocks, blocks compared with their CRC, blocks given their first CRC, bad blocks dropped. */
export interface ScrubReport {
  entries: number;
  checked: number;
  recorded: number;
  bad: number;
}

export interface CacheStats {
  capacityBytes: number;
  stagedBytes: number;
  reservedBytes: number;
  entryCount: number;
  counters: Counters;
}

/** An admin action the cache refuses, with the reason to show. */
export class CacheRefusal extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CacheRefusal';
  }
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
  /** Removals of evicted entries' records and files still under way. */
  private readonly removing = new Set<Promise<void>>();
  private readonly changed = new Set<StagedObject>();
  private readonly counters: Counters;
  private unflushedCounters = zeroCounters();
  /** The space last recorded in the index: a flush with nothing new to record writes nothing (and syncs nothing). */
  private recordedSpace: Omit<SpaceRecord, 'updatedAt'> | undefined;
  private readonly fetcher: Fetcher;
  private readonly evictor: Evictor;
  private readonly bypassBudget = new MemoryBudget(BYPASS_MEMORY_BYTES);
  private readonly disk: DiskSpace;
  private readonly checker = new BlockChecker();
  private readonly digests: ObjectDigests;
  /** Written files an older index kept among the entries, until the write path takes them. */
  private legacy: Array<{ record: LegacyWriteRecord; path: string }> = [];
  private readaheadFetches = 0;
  private timers: NodeJS.Timeout[] = [];
  private flushing: Promise<void> | undefined;

  private constructor(
    private readonly config: CacheConfig,
    private readonly store: ObjectStore,
    private readonly index: CacheIndex,
    private readonly files: StagedFiles,
    private readonly ledger: SpaceLedger,
    private readonly now: () => number,
  ) {
    this.counters = index.counters();
    this.disk = new DiskSpace(config.dir);
    this.fetcher = new Fetcher(store, files, {
      reserve: (bytes) => this.reserve(bytes),
      headBefore: (object) => this.headBefore(object),
      staged: (object) => {
        this.changed.add(object);
        this.digests.advance(object);
      },
      fetched: (bytes) => this.count('bytesFetched', bytes),
    }, { maxDemandFetches: demandFetchLimit(config) });
    this.digests = new ObjectDigests(files, { mismatch: (object) => this.dropStaged(object) });
    this.evictor = new Evictor({
      config,
      ledger,
      entries: () => this.entries.values(),
      evict: (object, reason) => this.evict(object, reason),
      now,
    });
  }

  static async open(options: StagingCacheOptions): Promise<StagingCache> {
    const { index, setAside } = openSoundIndex(options.config.dir);
    const files = new StagedFiles(options.config.dir);
    const report = await reconcile(index, files, { setAside });
    const cache = new StagingCache(
      options.config,
      options.store,
      index,
      files,
      new SpaceLedger(options.config.capacityBytes),
      options.now ?? Date.now,
    );
    for (const object of report.objects) cache.adopt(object);
    cache.legacy = report.legacyWrites;
    debug(
      'cache %s: %d entries, %s staged; %d orphan files deleted, %d records without file dropped',
      options.config.dir,
      report.objects.length,
      formatBytes(cache.ledger.staged),
      report.orphanFilesDeleted,
      report.missingFilesDropped,
    );
    // A cache dir reused with a smaller --cache-size starts by shrinking to it.
    cache.evictor.enforceWatermarks();
    cache.startTimer(FLUSH_INTERVAL_MS, () => void cache.flush());
    cache.startTimer(options.config.sweepIntervalMs, () => cache.sweep());
    return cache;
  }

  /**
   * Opens a handle on one version of an object; the entry counts it until `release`. A handle
   * opened `toRead` starts fetching the object's first block: nearly every reader reads it first
   * (a copy, a qcow2 header, a small file whole), so its GET counts as one a reader waits for (a
   * demand fetch, capped as those are) and is on its way while the kernel turns the open into
   * that first read. Of a large object only the block's head is fetched (HEAD_BYTES): the first
   * read of most opens is a probe of a header, whose bytes a GET of an eighth of a block brings
   * sooner (the store starts answering a short range sooner, and is free sooner for the next
   * open's requests); a reader that goes on past the head fetches the block as any other.
   */
  async open(version: ObjectVersion, toRead = false): Promise<CacheHandle> {
    const readahead = new Readahead({ initialBytes: 2 * this.config.blockSize, maxBytes: MAX_READAHEAD_BYTES });
    if (version.size === 0) return { object: undefined, readahead };
    const object = this.entryFor(version);
    object.openHandles++;
    object.lastAccess = this.now();
    this.changed.add(object);
    this.retireOthers(version);
    if (toRead && this.hasUnrequested(object, 0, 0) && !object.head && !object.headFetch) {
      const large = object.size > object.blockSize && object.blockSize > HEAD_BYTES;
      void (large ? this.fetcher.fetchHead(object, HEAD_BYTES) : this.fetcher.fetch(object, 0, 0, true));
    }
    return { object, readahead };
  }

  release(handle: CacheHandle): void {
    handle.bypass?.release();
    const object = handle.object;
    if (!object) return;
    object.openHandles = Math.max(0, object.openHandles - 1);
    object.lastAccess = this.now();
    this.changed.add(object);
    if (object.superseded) this.retire(object);
  }

  /** Reads up to `length` bytes at `position` into `buffer`; returns the count read. */
  async read(handle: CacheHandle, buffer: Buffer, length: number, position: number): Promise<number> {
    const object = handle.object;
    if (!object || position >= object.size) return 0;
    const end = Math.min(object.size, position + length);
    const first = object.blockOf(position);
    const last = object.blockOf(end - 1);
    object.lastAccess = this.now();
    if (object.blocks.hasAll(first, last) && (await this.verifyStaged(object, first, last))) {
      this.noteHit(handle, position, end);
      return this.readStaged(object, buffer, position, end);
    }
    const headFetched = !object.head && object.headFetch !== undefined;
    if (last === 0 && (await this.headHolds(object, end))) {
      this.noteRead(handle, position, end, headFetched ? 'misses' : 'hits');
      return this.readStaged(object, buffer, position, end);
    }
    const window = handle.readahead.onRead(position, end);
    this.count('misses', 1);
    const startsFetches = this.hasUnrequested(object, first, last);
    const extent = window || end - position >= object.blockSize ? undefined : this.denseExtent(object, first, last);
    const staging = this.stage(object, first, last, end);
    const fetchAhead = window
      ? () => this.readAhead(object, handle.readahead, end, window)
      : extent && (() => void this.fetchFree(object, extent.first, extent.last));
    if (fetchAhead) {
      // A read that starts GETs of its own gets the store to itself until they land: readahead
      // sharing the bandwidth would delay the bytes the reader waits for (time to first byte).
      if (startsFetches) void staging.then(fetchAhead, () => undefined);
      else fetchAhead();
    }
    try {
      await staging;
      // Blocks of the range staged before this mount are checked too; a bad one is fetched again.
      while (!(await this.verifyStaged(object, first, last, end))) await this.stage(object, first, last, end);
    } catch (err) {
      if (!(err instanceof NoCacheSpace)) throw err;
      this.count('bypassedReads', 1);
      handle.bypass ??= new BypassReader(this.store, object, this.bypassBudget, (bytes) => this.count('bytesFetched', bytes));
      return handle.bypass.read(buffer, position, end, window);
    }
    return this.readStaged(object, buffer, position, end);
  }

  /**
   * Whether the object's head holds its bytes before `end`, which are then on disk and good: a
   * staged head (checked once per mount), or one being fetched (waited for). False when the read
   * needs more than the head, and when the head failed: the read then stages block 0.
   */
  private async headHolds(object: StagedObject, end: number): Promise<boolean> {
    if (object.blocks.has(0)) return false;
    const fetching = object.headFetch;
    if (!object.head && fetching && end <= HEAD_BYTES) {
      try {
        await fetching.written(end);
        return true;
      } catch (err) {
        debug('fetching the head of %s: %s', object.key, errorMessage(err));
        return false;
      }
    }
    const head = object.head;
    return head !== undefined && end <= head.bytes && (await this.headIsGood(object));
  }

  /** The staged head a fetch of block 0 starts after (see FetcherHooks.headBefore). */
  private async headBefore(object: StagedObject): Promise<StagedHead | undefined> {
    // A failed fetch of the head leaves none: the block is fetched whole.
    await object.headFetch?.staged.catch(() => undefined);
    return (await this.headIsGood(object)) ? object.head : undefined;
  }

  /** Whether the object has a staged head whose bytes are good: checked once per mount, dropped when bad. */
  private async headIsGood(object: StagedObject): Promise<boolean> {
    const head = object.head;
    if (!head) return false;
    if (object.headVerified) return true;
    const { fd } = await object.openFile(this.files);
    if (object.head !== head) return false; // block 0 was staged, or the head dropped, meanwhile
    if (this.checker.checkHead(object, fd) === 'good') return true;
    this.ledger.adjustStaged(-object.dropHead());
    this.changed.add(object);
    this.count('badBlocks', 1);
    warn('%s (%s): the staged head of block 0 does not match its checksum; dropped, to be fetched again', object.key, object.etag);
    return false;
  }

  /** Records a read of staged bytes, served here or by a reader outside JavaScript. */
  noteHit(handle: CacheHandle, position: number, end: number): void {
    this.noteRead(handle, position, end, 'hits');
  }

  /** Records a read served from disk: a hit, or a miss that waited for its bytes to land there. */
  private noteRead(handle: CacheHandle, position: number, end: number, counter: 'hits' | 'misses'): void {
    const object = handle.object;
    if (!object) return;
    object.lastAccess = this.now();
    this.changed.add(object);
    this.count(counter, 1);
    const window = handle.readahead.onRead(position, end);
    if (window) this.readAhead(object, handle.readahead, end, window);
  }

  /** An open handle is in use even while its reads never reach the cache (page cache, passthrough). */
  touch(handle: CacheHandle): void {
    const object = handle.object;
    if (!object) return;
    object.lastAccess = this.now();
    this.changed.add(object);
  }

  /**
   * Opens the staging file of a handle for direct reads; undefined for an empty object. For the
   * kernel, which reads the whole file unchecked, the blocks of a fully staged file are verified
   * first (see MAX_OPEN_CHECK_BYTES).
   */
  async directAccess(handle: CacheHandle, kind: 'fast' | 'kernel'): Promise<DirectAccess | undefined> {
    const object = handle.object;
    if (!object) return undefined;
    if (kind === 'kernel' && object.blocks.complete && !object.verified.complete) {
      const checking = this.verifyUnchecked(object);
      if ((object.blocks.count - object.verified.count) * object.blockSize <= MAX_OPEN_CHECK_BYTES) await checking;
    }
    const file = await object.openFile(this.files);
    return {
      fd: file.fd,
      blocks: object.verified.liveBits,
      blockSize: object.blockSize,
      size: object.size,
      complete: object.verified.complete,
    };
  }

  /** Stages the whole object, reporting bytes staged so far against its size. */
  async prefetch(version: ObjectVersion, onProgress: (staged: number, size: number) => void): Promise<void> {
    const handle = await this.open(version);
    try {
      const object = handle.object;
      if (!object) return onProgress(0, 0);
      onProgress(object.stagedBytes, object.size);
      const maxRunBlocks = Math.max(1, Math.floor(MAX_REQUEST_BYTES / object.blockSize));
      const running = new Set<Promise<void>>();
      for (let block = 0; block < object.blocks.blockCount; block += maxRunBlocks) {
        const last = Math.min(object.blocks.blockCount, block + maxRunBlocks) - 1;
        const run = this.stage(object, block, last).then(() => {
          running.delete(run);
          onProgress(object.stagedBytes, object.size);
        });
        running.add(run);
        if (running.size >= MAX_PREFETCH_FETCHES) await Promise.race(running);
      }
      await Promise.all(running);
    } catch (err) {
      if (err instanceof NoCacheSpace) {
        throw new CacheRefusal(`no room in the cache for ${formatBytes(version.size)} (${this.describeSpace()})`);
      }
      throw err;
    } finally {
      this.release(handle);
    }
  }

  /**
   * The same bytes now stand under another key or ETag (a rename, a metadata change): the staged
   * blocks of `from` are kept for `to` instead of being fetched again. The entry keeps its file
   * and its open handles; only its identity changes. A staged entry of `to` already there stays
   * (both hold the same bytes) and `from` goes as soon as nothing uses it.
   */
  async rekey(from: ObjectVersion, to: ObjectVersion): Promise<void> {
    const object = this.entries.get(entryId(from.bucket, from.key, from.etag));
    if (!object || object.size !== to.size) return;
    const id = entryId(to.bucket, to.key, to.etag);
    if (object.id === id) return;
    if (this.entries.has(id)) return this.retire(object);
    const previous = { id: object.id, key: object.key };
    this.unlist(object);
    object.retarget(to.key, to.etag);
    this.adopt(object, false);
    await this.index.removeEntry(previous.id, object.fileName);
    debug('%s is now staged as %s (%s)', previous.key, to.key, to.etag);
  }

  /**
   * Takes a file that holds version `version` (uploaded through the mount) into the cache as its
   * staged entry, with the blocks `isStaged` names. Synchronous: the file changes hands in one
   * step. Refused (false) when an entry of that version is in use: it keeps its own file, and
   * the caller keeps (and drops) the offered one.
   */
  adoptFile(version: ObjectVersion, path: string, isStaged: (start: number, end: number) => boolean): boolean {
    const id = entryId(version.bucket, version.key, version.etag);
    const object = new StagedObject(version, this.config.blockSize, { file: newFileName(id), blocks: new Uint8Array(0), lastAccess: this.now(), pinned: false });
    for (let block = 0; block < object.blocks.blockCount; block++) {
      if (isStaged(object.blockStart(block), object.blockEnd(block))) object.markStaged(block);
    }
    const existing = this.entries.get(id);
    // An entry in use keeps its file; so does one holding at least as much of the object.
    if (existing && (!existing.evictable || existing.stagedBytes >= object.stagedBytes)) return false;
    try {
      this.files.moveIn(path, object.fileName);
    } catch (err) {
      debug('not keeping %s staged: %s', version.key, errorMessage(err));
      return false;
    }
    if (existing) this.evict(existing, 'replaced');
    this.adopt(object);
    this.retireOthers(version);
    return true;
  }

  /**
   * Checks every staged block of the entry of `version` (of every entry when none is given)
   * against its CRC, also blocks verified before in this mount; bad blocks are dropped.
   */
  async scrub(version?: ObjectVersion): Promise<ScrubReport> {
    const objects = version ? [this.entries.get(entryId(version.bucket, version.key, version.etag))] : [...this.entries.values()];
    const report: ScrubReport = { entries: 0, checked: 0, recorded: 0, bad: 0 };
    for (const object of objects) {
      if (!object) continue;
      const found = await this.verifyObject(object, true);
      report.entries += found.entries;
      report.checked += found.checked;
      report.recorded += found.recorded;
      report.bad += found.bad;
    }
    return report;
  }

  /** Reserves cache space for bytes about to be written, evicting what nothing uses if needed. */
  reserveSpace(bytes: number): Reservation | undefined {
    return this.reserve(bytes);
  }

  /** Bytes written outside staged entries (files being written) left the disk. */
  unstage(bytes: number): void {
    this.ledger.adjustStaged(-bytes);
  }

  /** Counts bytes found on disk outside staged entries at start (files being written). */
  countStaged(bytes: number): void {
    this.ledger.adjustStaged(bytes);
  }

  /** Written files an older version of stagefs kept in the index, for the write path to take over. */
  takeLegacyWrites(): Array<{ record: LegacyWriteRecord; path: string }> {
    const taken = this.legacy;
    this.legacy = [];
    return taken;
  }

  /** The write path has taken a legacy written file: its old record goes. */
  async forgetLegacyWrite(id: string): Promise<void> {
    await this.index.remove(id);
  }

  /**
   * Pins or unpins an object's current version. A pin keeps the file local: it is set before the
   * file is staged whole, so no eviction can slip in between, and taken back if staging fails.
   */
  async setPinned(version: ObjectVersion, pinned: boolean): Promise<void> {
    if (version.size === 0) return;
    const object = this.entryFor(version);
    object.pinned = pinned;
    this.changed.add(object);
    if (!pinned) return;
    try {
      await this.prefetch(version, () => undefined);
    } catch (err) {
      object.pinned = false;
      throw err;
    }
  }

  /** Evicts every staged version of `key`; refuses, changing nothing, while one is in use or pinned. */
  evictKey(key: string): number {
    const versions = [...(this.versionsByKey.get(key) ?? [])];
    for (const object of versions) {
      if (object.openHandles > 0) throw new CacheRefusal(`refused: in use (${object.openHandles} open handle${object.openHandles > 1 ? 's' : ''})`);
      if (object.activeFetches > 0 || object.inflight.size > 0) throw new CacheRefusal('refused: being fetched');
      if (object.pinned) throw new CacheRefusal('refused: pinned; unpin it first');
    }
    for (const object of versions) this.evict(object, 'admin');
    return versions.length;
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
    for (const timer of this.timers) clearInterval(timer);
    for (const object of this.entries.values()) {
      object.openHandles = 0;
      this.changed.add(object);
    }
    await Promise.all(this.removing);
    // A flush under way took its snapshot before the last changes: the closing one must be a new one.
    await this.flushing;
    await this.flush();
    await Promise.all([...this.entries.values()].map((object) => object.closeFile()));
    await this.digests.close();
    await this.index.close();
    sealIndex(this.config.dir);
  }

  private startTimer(intervalMs: number, tick: () => void): void {
    const timer = setInterval(tick, intervalMs);
    timer.unref();
    this.timers.push(timer);
  }

  private entryFor(version: ObjectVersion): StagedObject {
    const id = entryId(version.bucket, version.key, version.etag);
    let object = this.entries.get(id);
    if (!object) {
      object = new StagedObject(version, this.config.blockSize);
      object.lastAccess = this.now();
      this.adopt(object);
    }
    object.storeChecksum ??= version.checksum;
    return object;
  }

  /**
   * Reserves cache space, evicting what nothing uses when it does not fit; never waits on I/O.
   * The disk must have room too: reserved bytes are not on disk yet, so they count against it.
   */
  private reserve(bytes: number): Reservation | undefined {
    if (!this.disk.fits(bytes, this.ledger.reserved)) {
      evictLog('cache disk has no room for %s more', formatBytes(bytes));
      return undefined;
    }
    const reservation = this.ledger.reserve(bytes) ?? (this.evictor.makeRoom(bytes) ? this.ledger.reserve(bytes) : undefined);
    if (reservation) this.evictor.enforceWatermarks();
    return reservation;
  }

  private hasUnrequested(object: StagedObject, first: number, last: number): boolean {
    for (let block = first; block <= last; block++) {
      if (!object.blocks.has(block) && !object.inflight.has(block)) return true;
    }
    return false;
  }

  /**
   * Stages blocks first..last: starts fetches for the missing ones and waits for all of them,
   * or, for a reader of the bytes before `readEnd`, only until those bytes are on disk.
   */
  private async stage(object: StagedObject, first: number, last: number, readEnd?: number): Promise<void> {
    let runStart = -1;
    for (let block = first; block <= last + 1; block++) {
      const missing = block <= last && !object.blocks.has(block) && !object.inflight.has(block);
      if (missing && runStart < 0) runStart = block;
      if (!missing && runStart >= 0) {
        void this.fetcher.fetch(object, runStart, block - 1, readEnd !== undefined);
        runStart = -1;
      }
    }
    const waits: Promise<void>[] = [];
    for (let block = first; block <= last; block++) {
      const inflight = object.inflight.get(block);
      if (!inflight) continue;
      waits.push(readEnd === undefined ? inflight.staged : inflight.written(Math.min(readEnd, object.blockEnd(block))));
    }
    await Promise.all(waits);
  }

  /** Keeps the blocks of [end, end + window) staged or in flight, a few GETs at a time. */
  private readAhead(object: StagedObject, readahead: Readahead, end: number, window: number): void {
    const stop = Math.min(object.size, end + window);
    const from = Math.max(end, readahead.scheduledUntil);
    if (from >= stop) return;
    const next = this.fetchFree(object, object.blockOf(from), object.blockOf(stop - 1));
    readahead.scheduledUntil = Math.max(readahead.scheduledUntil, Math.min(stop, object.blockStart(next)));
  }

  /**
   * Starts background fetches of the blocks of first..last that are neither staged nor in
   * flight, a run per GET, while fewer than MAX_READAHEAD_FETCHES run; returns the first block
   * it left unscheduled (last + 1 when it got through).
   */
  private fetchFree(object: StagedObject, first: number, last: number): number {
    const maxRunBlocks = Math.max(1, Math.floor(MAX_REQUEST_BYTES / object.blockSize));
    const free = (block: number) => !object.blocks.has(block) && !object.inflight.has(block);
    let block = first;
    while (block <= last) {
      if (!free(block)) {
        block++;
        continue;
      }
      if (this.readaheadFetches >= MAX_READAHEAD_FETCHES) break;
      let runEnd = block;
      while (runEnd < last && runEnd + 1 - block < maxRunBlocks && free(runEnd + 1)) runEnd++;
      this.readaheadFetches++;
      void this.fetcher.fetch(object, block, runEnd).finally(() => this.readaheadFetches--);
      block = runEnd + 1;
    }
    return block;
  }

  /**
   * The aligned DENSE_EXTENT_BYTES extent(s) around a random read of blocks first..last, when
   * some other block of them is staged or being fetched already and some is still missing.
   */
  private denseExtent(object: StagedObject, first: number, last: number): { first: number; last: number } | undefined {
    const extentBlocks = Math.max(1, Math.floor(DENSE_EXTENT_BYTES / object.blockSize));
    const start = first - (first % extentBlocks);
    const stop = Math.min(object.blocks.blockCount - 1, last - (last % extentBlocks) + extentBlocks - 1);
    let touched = false;
    let missing = false;
    for (let block = start; block <= stop; block++) {
      if (block >= first && block <= last) continue;
      if (object.blocks.has(block) || object.inflight.has(block)) touched = true;
      else missing = true;
    }
    return touched && missing ? { first: start, last: stop } : undefined;
  }

  /**
   * Checks the staged blocks first..last not yet verified in this mount, dropping bad ones.
   * True when every block of the range is staged and verified, or, for a reader of the bytes
   * before `readEnd`, being fetched with those bytes on disk already (bytes of a checked
   * response, written by the fetch, which alone writes that block until it ends).
   */
  private async verifyStaged(object: StagedObject, first: number, last: number, readEnd?: number): Promise<boolean> {
    if (object.verified.hasAll(first, last)) return true;
    const { fd } = await object.openFile(this.files);
    let good = true;
    for (let block = first; block <= last; block++) {
      if (object.verified.has(block)) continue;
      if (object.blocks.has(block)) {
        if (this.checkBlock(object, fd, block) === 'bad') good = false;
        continue;
      }
      const inflight = readEnd === undefined ? undefined : object.inflight.get(block);
      if (!inflight?.isWritten(Math.min(readEnd!, object.blockEnd(block)))) good = false;
    }
    return good;
  }

  /** Checks the blocks of `object` not yet verified in this mount, once however many ask at a time. */
  private verifyUnchecked(object: StagedObject): Promise<unknown> {
    object.verifying ??= this.verifyObject(object, false)
      .catch((err: unknown) => warn('checking %s: %s', object.key, errorMessage(err)))
      .finally(() => {
        object.verifying = undefined;
      });
    return object.verifying;
  }

  /**
   * Checks each staged block of `object` (only those not verified in this mount unless
   * `recheck`), one block per turn of the event loop. The entry counts as open meanwhile, so
   * its file stays open and it is not evicted.
   */
  private async verifyObject(object: StagedObject, recheck: boolean): Promise<ScrubReport> {
    const report: ScrubReport = { entries: object.blocks.count > 0 ? 1 : 0, checked: 0, recorded: 0, bad: 0 };
    object.openHandles++;
    try {
      for (let block = 0; block < object.blocks.blockCount && !object.removed; block++) {
        if (!object.blocks.has(block) || (!recheck && object.verified.has(block))) continue;
        const { fd } = await object.openFile(this.files);
        if (object.removed) break;
        if (!object.blocks.has(block)) continue;
        const verdict = this.checkBlock(object, fd, block);
        if (verdict === 'recorded') report.recorded++;
        else report.checked++;
        if (verdict === 'bad') report.bad++;
        await nextTurn();
      }
    } finally {
      // Not a use of the entry: its place in eviction order stays.
      object.openHandles = Math.max(0, object.openHandles - 1);
      if (object.superseded) this.retire(object);
    }
    verifyLog('%s: %d blocks checked, %d given their first CRC, %d bad', object.key, report.checked, report.recorded, report.bad);
    return report;
  }

  /** Checks one staged block; a bad one is dropped (no longer staged), to be fetched again. */
  private checkBlock(object: StagedObject, fd: number, block: number): BlockVerdict {
    const verdict = this.checker.check(object, fd, block);
    if (verdict === 'recorded') this.changed.add(object);
    if (verdict === 'bad') {
      this.ledger.adjustStaged(-object.unstage(block));
      this.changed.add(object);
      this.count('badBlocks', 1);
      warn('%s (%s): staged block %d does not match its checksum; dropped, to be fetched again', object.key, object.etag, block);
    }
    return verdict;
  }

  /** Every staged block of `object` goes: its bytes, taken together, are not the object's. */
  private dropStaged(object: StagedObject): void {
    for (let block = 0; block < object.blocks.blockCount; block++) this.ledger.adjustStaged(-object.unstage(block));
    this.changed.add(object);
    this.count('checksumMismatches', 1);
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

  /** Lists an entry under its id and key; `counted` false when its bytes are in the ledger already. */
  private adopt(object: StagedObject, counted = true): void {
    if (this.entries.has(object.id)) throw new Error(`two entries for ${object.key} (${object.etag})`);
    this.entries.set(object.id, object);
    if (counted) this.ledger.adjustStaged(object.stagedBytes);
    let versions = this.versionsByKey.get(object.key);
    if (!versions) this.versionsByKey.set(object.key, (versions = new Set()));
    versions.add(object);
    this.changed.add(object);
  }

  /** Takes an entry off the lists of ids and keys. */
  private unlist(object: StagedObject): void {
    this.entries.delete(object.id);
    const versions = this.versionsByKey.get(object.key);
    versions?.delete(object);
    if (versions?.size === 0) this.versionsByKey.delete(object.key);
  }

  /** Every other version of the key goes as soon as nothing uses it. */
  private retireOthers(current: ObjectVersion): void {
    for (const other of [...(this.versionsByKey.get(current.key) ?? [])]) {
      if (other.etag !== current.etag) this.retire(other);
    }
  }

  private retire(object: StagedObject): void {
    object.superseded = true;
    if (object.evictable) this.evict(object, 'superseded');
  }

  private sweep(): void {
    const evicted = this.evictor.sweepAged();
    if (evicted) debug('age sweep evicted %d entries', evicted);
  }

  /**
   * Removes an entry: at once from memory and the ledger, then its record (one index
   * transaction) and its file. A crash between the two leaves an orphan file or a record
   * without a file, and reconciliation at the next start removes either.
   */
  private evict(object: StagedObject, reason: string): void {
    object.removed = true;
    this.digests.forget(object);
    this.unlist(object);
    this.changed.delete(object);
    this.ledger.adjustStaged(-object.stagedBytes);
    if (reason !== 'superseded' && reason !== 'replaced') this.count('evictions', 1);
    evictLog('evicting %s (%s, %s staged): %s', object.key, object.etag, formatBytes(object.stagedBytes), reason);
    const id = object.id;
    const removal = (async () => {
      await object.closeFile();
      await this.index.removeEntry(id, object.fileName);
      await this.files.remove(object.fileName);
    })()
      .catch((err: unknown) => warn('evicting %s: %s', object.key, errorMessage(err)))
      .finally(() => this.removing.delete(removal));
    this.removing.add(removal);
  }

  private describeSpace(): string {
    const pinnedOrOpen = [...this.entries.values()]
      .filter((o) => !o.evictable)
      .reduce((sum, o) => sum + o.stagedBytes, 0);
    return `cache size ${formatBytes(this.ledger.capacity)}, ${formatBytes(pinnedOrOpen)} held by open or pinned files`;
  }

  private count(name: CounterName, amount: number): void {
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
    const space = { capacityBytes: this.ledger.capacity, stagedBytes: this.ledger.staged, reservedBytes: this.ledger.reserved };
    const spaceChanged = !this.recordedSpace || COUNTED_SPACE.some((name) => this.recordedSpace![name] !== space[name]);
    try {
      await Promise.all(changed.map((object) => this.persist(object)));
      if (COUNTER_NAMES.some((name) => counters[name] !== 0)) await this.index.addCounters(counters);
      if (spaceChanged) {
        await this.index.putSpace({ ...space, updatedAt: this.now() });
        this.recordedSpace = space;
      }
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
    // Checked again after the sync: an entry evicted (or renamed) meanwhile must not come back.
    if (object.removed || object.id !== record.id) return;
    await this.index.put(record);
    if (object.openHandles === 0 && object.activeFetches === 0 && object.fileIsOpen) await object.closeFile();
  }
}

const COUNTED_SPACE = ['capacityBytes', 'stagedBytes', 'reservedBytes'] as const;

/** How many GETs readers may wait for at once, from the cache's size: each reserves its blocks. */
function demandFetchLimit(config: CacheConfig): number {
  return Math.max(MIN_DEMAND_FETCHES, Math.min(MAX_DEMAND_FETCHES, Math.floor(config.capacityBytes / (64 * config.blockSize))));
}
