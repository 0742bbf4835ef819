/**
 * Faults blocks into staging files with ranged GETs. One GET covers a run of adjacent missing
 * blocks; its body goes to the staging file as it arrives, so a reader waits only for its own
 * bytes, not for its whole block or GET. Where the store can write a range into the file itself
 * off the JavaScript thread (writeRange: libcurl threads in the addon), it does, and reports
 * bytes on disk and block CRCs; otherwise the body is written here chunk by chunk (no copy: a
 * write takes every chunk received since the last one). A block is marked staged (its CRC
 * recorded, its space committed, its waiters woken) only once all its bytes are on disk. The store checks responses and resumes
 * broken bodies; a fetch that fails here is over, and fails only the bytes it had not written.
 * A fetch of a head (fetchHead) is one of the first bytes of block 0 alone, staged as the head.
 */
import createDebug from 'debug';
import { StoreError, errorMessage, isDiskFull } from '../errors';
import type { ObjectStore, RangeWrite } from '../store/object-store';
import { ByteBudget } from '../util/byte-budget';
import { crc32c } from '../util/crc32c';
import { Deferred } from '../util/deferred';
import type { Reservation } from './space-ledger';
import type { StagedHead } from './cache-index';
import type { StagedFiles, StagingFile } from './staged-files';
import type { InflightBlock, StagedObject } from './staged-object';

const debug = createDebug('stagefs:fetch');

/** Bytes received but not yet written, at most, before a fetch stops reading its body for a while. */
const MAX_UNWRITTEN_BYTES = 4 * 1024 * 1024;

/** No cache space could be had (reservation refused, or the disk is full): serve by bypass. */
export class NoCacheSpace extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'NoCacheSpace';
  }
}

export interface FetcherHooks {
  /** Reserves cache space for `bytes`; undefined when no room can be made. */
  reserve(bytes: number): Reservation | undefined;
  /**
   * The staged head a fetch of block 0 starts after, its bytes good (waits for a fetch of the
   * head under way); undefined when there is none: the block is fetched whole.
   */
  headBefore(object: StagedObject): Promise<StagedHead | undefined>;
  /** Blocks of `object` became staged. */
  staged(object: StagedObject): void;
  fetched(bytes: number): void;
}

export interface FetcherOptions {
  /** GETs of fetches that readers wait for (`demand`), at most at once; more wait their turn. */
  maxDemandFetches: number;
}

/** Who waits for the bytes of a fetch, and how far they are on disk. */
class FetchProgress {
  /** Bytes before this offset are on disk. */
  written: number;
  private readonly blocks = new Map<number, Deferred>();
  private waiters: Array<{ until: number; deferred: Deferred }> = [];
  private failure: { error: unknown } | undefined;
  /** Told when a reader starts waiting for the bytes before `until`: bytes held back for a larger write are wanted now. */
  onWaiter: ((until: number) => void) | undefined;

  constructor(
    readonly start: number,
    readonly end: number,
  ) {
    this.written = start;
  }

  block(block: number): InflightBlock {
    const deferred = new Deferred();
    this.blocks.set(block, deferred);
    return { staged: deferred.promise, written: (until) => this.until(until), isWritten: (until) => until <= this.written };
  }

  blockStaged(block: number): void {
    this.blocks.get(block)?.resolve();
    this.blocks.delete(block);
  }

  advance(written: number): void {
    this.written = written;
    if (!this.waiters.length) return;
    const still: typeof this.waiters = [];
    for (const waiter of this.waiters) {
      if (waiter.until <= written) waiter.deferred.resolve();
      else still.push(waiter);
    }
    this.waiters = still;
  }

  /** Fails every waiter for bytes not yet written. */
  fail(err: unknown): void {
    this.failure = { error: err };
    for (const deferred of this.blocks.values()) deferred.reject(err);
    this.blocks.clear();
    for (const waiter of this.waiters) waiter.deferred.reject(err);
    this.waiters = [];
  }

  private until(until: number): Promise<void> {
    if (until <= this.written) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure.error);
    const deferred = new Deferred();
    this.waiters.push({ until, deferred });
    this.onWaiter?.(until);
    return deferred.promise;
  }

  /** The least offset a reader waits for, if any. */
  nextWanted(): number | undefined {
    let least: number | undefined;
    for (const waiter of this.waiters) if (least === undefined || waiter.until < least) least = waiter.until;
    return least;
  }

  /** Whether a reader waits for bytes before `offset`. */
  waitsBefore(offset: number): boolean {
    return this.waiters.some((waiter) => waiter.until <= offset);
  }
}

export class Fetcher {
  /** GETs readers wait for, one unit each: a fair queue for the slots. */
  private readonly demandSlots: ByteBudget;

  constructor(
    private readonly store: ObjectStore,
    private readonly files: StagedFiles,
    private readonly hooks: FetcherHooks,
    options: FetcherOptions,
  ) {
    this.demandSlots = new ByteBudget(options.maxDemandFetches);
  }

  /**
   * Starts fetching blocks first..last, which the caller found neither staged nor in flight;
   * `demand` when a reader waits for them (such GETs are capped). Returns when the fetch ends;
   * waiters use the blocks' entries in `object.inflight`.
   */
  fetch(object: StagedObject, first: number, last: number, demand = false): Promise<void> {
    const progress = new FetchProgress(object.blockStart(first), object.blockStart(first) + object.spanLength(first, last));
    const entries = new Map<number, InflightBlock>();
    for (let block = first; block <= last; block++) {
      const entry = progress.block(block);
      entries.set(block, entry);
      object.inflight.set(block, entry);
    }
    object.activeFetches++;
    const stage = (reservation: Reservation) => new BlockStager(object, first, progress, reservation, this.hooks);
    return this.run(object, first, progress, demand, stage, first === 0).finally(() => {
      object.activeFetches--;
      for (const [block, entry] of entries) {
        if (object.inflight.get(block) === entry) object.inflight.delete(block);
      }
    });
  }

  /**
   * Starts fetching the first `bytes` of block 0, and not the rest of it, as the object's head
   * (see StagingCache.open), for a reader who waits on `object.headFetch`.
   */
  fetchHead(object: StagedObject, bytes: number): Promise<void> {
    const progress = new FetchProgress(0, bytes);
    const entry = progress.block(0);
    object.headFetch = entry;
    object.activeFetches++;
    const stage = (reservation: Reservation) => new HeadStager(object, bytes, progress, reservation, this.hooks);
    return this.run(object, 0, progress, true, stage, false).finally(() => {
      object.activeFetches--;
      if (object.headFetch === entry) object.headFetch = undefined;
    });
  }

  /** `afterHead`: a fetch of block 0 on, which starts past the head when one is staged. */
  private async run(
    object: StagedObject,
    first: number,
    progress: FetchProgress,
    demand: boolean,
    stage: (reservation: Reservation) => Stager,
    afterHead: boolean,
  ): Promise<void> {
    let slot = false;
    let reservation: Reservation | undefined;
    try {
      // Before the slot: a head still being fetched holds one of its own.
      const head = afterHead ? await this.hooks.headBefore(object) : undefined;
      if (head) progress.advance(head.bytes);
      // The slot first: a fetch waiting its turn holds no cache space that other reads could use.
      if (demand) {
        await this.demandSlots.acquire(1);
        slot = true;
      }
      const from = progress.written;
      reservation = this.hooks.reserve(progress.end - from);
      if (!reservation) throw new NoCacheSpace(`no cache space for ${progress.end - from} bytes`);
      const file = await object.openFile(this.files);
      const stager = stage(reservation);
      if (this.store.writeRange) {
        await writtenByStore(this.store.writeRange.bind(this.store), object, file, progress, stager, this.hooks, head?.crc);
      } else {
        const body = await this.store.getRange(object.key, from, progress.end, object.etag);
        await new BodyWriter(object, file, first, progress, stager, this.hooks, head?.crc).write(body);
      }
    } catch (err) {
      const failure = isDiskFull(err) ? new NoCacheSpace(`cache disk full: ${errorMessage(err)}`) : err;
      if (!(failure instanceof NoCacheSpace)) {
        debug('%s: fetch of [%d, %d) failed after %d bytes: %s', object.key, progress.start, progress.end, progress.written - progress.start, errorMessage(err));
      }
      progress.fail(failure);
    } finally {
      if (slot) this.demandSlots.release(1);
      reservation?.release();
    }
  }
}

/**
 * What a fetch stages as its bytes land: the blocks it covers (BlockStager) or the head of block
 * 0 (HeadStager). Its pieces are what the writers report CRCs of: blocks, or the head whole.
 */
interface Stager {
  /** The length of every piece but a last, shorter one. */
  readonly pieceSize: number;
  pieceLength(piece: number): number;
  /** Whether a piece was received whole and waits to be written. */
  hasWhole(): boolean;
  /** Piece `piece` was received whole, with this CRC32C. */
  received(piece: number, crc: number): void;
  /** The bytes before `until` are on disk. */
  written(until: number): void;
}

/**
 * Writes one checked body to the staging file. Chunks are kept as received and written in
 * order, one write in flight at a time, each taking every chunk received meanwhile. A write
 * starts once a block is received whole, or at once when a reader waits for bytes received:
 * few writes when nobody waits, no delay when someone does. The CRC of each block is computed
 * from the chunks as they arrive; a block is staged once written whole.
 */
class BodyWriter {
  private received: number;
  private unwritten: Buffer[] = [];
  private unwrittenBytes = 0;
  private writing: Promise<void> | undefined;
  private failure: unknown;
  /** The block whose CRC is being computed, its CRC so far and its bytes seen. */
  private crcBlock: number;
  private crc = 0;
  private crcFilled = 0;

  constructor(
    private readonly object: StagedObject,
    private readonly file: StagingFile,
    first: number,
    private readonly progress: FetchProgress,
    private readonly stager: Stager,
    private readonly hooks: FetcherHooks,
    crcBefore = 0,
  ) {
    // Past a staged head, the block's CRC goes on from the head's.
    this.received = progress.written;
    this.crcBlock = first;
    this.crc = crcBefore;
    this.crcFilled = progress.written - progress.start;
    progress.onWaiter = () => this.writeIfWanted();
  }

  async write(body: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const received of body) {
      const chunk = Buffer.isBuffer(received) ? received : Buffer.from(received.buffer, received.byteOffset, received.length);
      if (this.received + chunk.length > this.progress.end) {
        throw new StoreError('BadResponse', `${this.object.key}: the store sent more bytes than asked`);
      }
      this.checksum(chunk);
      this.received += chunk.length;
      this.hooks.fetched(chunk.length);
      this.unwritten.push(chunk);
      this.unwrittenBytes += chunk.length;
      this.writeIfWanted();
      while (this.unwrittenBytes > MAX_UNWRITTEN_BYTES && this.writing) await this.writing;
      this.writeIfWanted();
      if (this.failure) throw this.failure;
    }
    while (!this.failure && (this.writing || this.unwritten.length)) await (this.writing ??= this.drain());
    if (this.failure) throw this.failure;
    if (this.received < this.progress.end) {
      throw new StoreError('BadResponse', `${this.object.key}: the response ended early at byte ${this.received}`);
    }
  }

  /** Starts a write of what was received if a block is whole in it, a reader waits for it, or too much waits. */
  private writeIfWanted(): void {
    if (this.writing || !this.unwritten.length) return;
    if (this.stager.hasWhole() || this.unwrittenBytes > MAX_UNWRITTEN_BYTES || this.progress.waitsBefore(this.received)) this.writing = this.drain();
  }

  private checksum(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(chunk.length - offset, this.stager.pieceLength(this.crcBlock) - this.crcFilled);
      this.crc = crc32c(chunk.subarray(offset, offset + take), this.crc);
      this.crcFilled += take;
      offset += take;
      if (this.crcFilled === this.stager.pieceLength(this.crcBlock)) {
        this.stager.received(this.crcBlock, this.crc);
        this.crcBlock++;
        this.crc = 0;
        this.crcFilled = 0;
      }
    }
  }

  /** Writes what was received so far; a failure is kept for `write` to throw. */
  private async drain(): Promise<void> {
    try {
      const chunks = this.unwritten;
      const bytes = this.unwrittenBytes;
      this.unwritten = [];
      this.unwrittenBytes = 0;
      await writeAll(this.file, chunks, bytes, this.progress.written);
      this.stager.written(this.progress.written + bytes);
    } catch (err) {
      this.failure = err;
    } finally {
      this.writing = undefined;
    }
    if (!this.failure) this.writeIfWanted();
  }
}

/**
 * Marks the blocks of one fetch staged, in order, once each is both written whole and has its
 * CRC (whoever computed it), and moves the fetch's progress on.
 */
class BlockStager implements Stager {
  private nextStaged: number;
  /** CRCs of blocks received whole but not yet staged. */
  private readonly crcs = new Map<number, number>();

  constructor(
    private readonly object: StagedObject,
    first: number,
    private readonly progress: FetchProgress,
    private readonly reservation: Reservation,
    private readonly hooks: FetcherHooks,
  ) {
    this.nextStaged = first;
  }

  get pieceSize(): number {
    return this.object.blockSize;
  }

  pieceLength(block: number): number {
    return this.object.blockLength(block);
  }

  hasWhole(): boolean {
    return this.crcs.size > 0;
  }

  received(block: number, crc: number): void {
    this.crcs.set(block, crc);
  }

  written(until: number): void {
    const { object } = this;
    while (this.crcs.has(this.nextStaged) && object.blockEnd(this.nextStaged) <= until) {
      const block = this.nextStaged++;
      this.reservation.commit(object.markStaged(block, this.crcs.get(block)));
      this.crcs.delete(block);
      this.hooks.staged(object);
      this.progress.blockStaged(block);
    }
    if (until > this.progress.written) this.progress.advance(until);
  }
}

/** Stages the head of block 0, one piece of `bytes`, once it is on disk whole. */
class HeadStager implements Stager {
  private crc: number | undefined;

  constructor(
    private readonly object: StagedObject,
    private readonly bytes: number,
    private readonly progress: FetchProgress,
    private readonly reservation: Reservation,
    private readonly hooks: FetcherHooks,
  ) {}

  get pieceSize(): number {
    return this.bytes;
  }

  pieceLength(): number {
    return this.bytes;
  }

  hasWhole(): boolean {
    return this.crc !== undefined;
  }

  received(_piece: number, crc: number): void {
    this.crc = crc;
  }

  written(until: number): void {
    if (this.crc !== undefined && until >= this.bytes) {
      // Nothing to record when block 0 was staged meanwhile: its fetch wrote these bytes too.
      const staged = this.object.recordHead(this.bytes, this.crc);
      this.crc = undefined;
      if (staged) {
        this.reservation.commit(staged);
        this.hooks.staged(this.object);
      }
      this.progress.blockStaged(0);
    }
    if (until > this.progress.written) this.progress.advance(until);
  }
}

/**
 * A fetch whose bytes the store writes into the staging file itself: its reports stage blocks
 * and wake readers; a reader waiting for bytes asks the store to report them as soon as they
 * are written.
 */
async function writtenByStore(
  writeRange: NonNullable<ObjectStore['writeRange']>,
  object: StagedObject,
  file: StagingFile,
  progress: FetchProgress,
  stager: Stager,
  hooks: FetcherHooks,
  crcBefore: number | undefined,
): Promise<void> {
  let counted = progress.written;
  let write: RangeWrite | undefined;
  const wantNext = () => {
    const until = progress.nextWanted();
    if (until !== undefined) write?.want(until);
  };
  write = writeRange(object.key, progress.written, progress.end, object.etag, {
    fd: file.fd,
    blockSize: stager.pieceSize,
    crcBefore,
    progress: (written, firstBlock, crcs) => {
      if (crcs) for (let i = 0; i < crcs.length; i++) stager.received(firstBlock + i, crcs[i]);
      if (written > counted) {
        hooks.fetched(written - counted);
        counted = written;
      }
      stager.written(written);
      wantNext();
    },
  });
  progress.onWaiter = (until) => write?.want(until);
  wantNext();
  await write.done;
}

/** Writes `chunks` (`bytes` in all) at `position`, however many calls it takes. */
async function writeAll(file: StagingFile, chunks: Buffer[], bytes: number, position: number): Promise<void> {
  let done = 0;
  while (done < bytes) {
    const rest = done === 0 ? chunks : remainder(chunks, done);
    const bytesWritten = await file.writev(rest, position + done);
    if (bytesWritten <= 0) throw new Error(`writing the staging file: ${bytesWritten} bytes written`);
    done += bytesWritten;
  }
}

function remainder(chunks: Buffer[], skip: number): Buffer[] {
  const rest: Buffer[] = [];
  for (const chunk of chunks) {
    if (skip >= chunk.length) skip -= chunk.length;
    else {
      rest.push(skip ? chunk.subarray(skip) : chunk);
      skip = 0;
    }
  }
  return rest;
}
