/**
 * Faults blocks into staging files with ranged GETs. One GET covers a run of adjacent missing
 * blocks; its body is written block by block, and each block is marked staged (and its waiters
 * woken) only once its bytes are on disk. Readers of a block already in flight wait on that fetch.
 * The store checks responses and resumes broken bodies; a fetch that fails here is over.
 */
import createDebug from 'debug';
import { StoreError, errorMessage, isDiskFull } from '../errors';
import type { ObjectStore } from '../store/object-store';
import { BufferPool } from '../util/buffer-pool';
import { crc32c } from '../util/crc32c';
import { Deferred } from '../util/deferred';
import type { Reservation } from './space-ledger';
import type { StagedFiles } from './staged-files';
import type { StagedObject } from './staged-object';

const debug = createDebug('stagefs:fetch');

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
  /** Blocks of `object` became staged. */
  staged(object: StagedObject): void;
  fetched(bytes: number): void;
}

/** Block buffers for the bytes of a GET until they are written: bytes of free ones kept. */
const POOLED_BUFFER_BYTES = 16 * 1024 * 1024;

export class Fetcher {
  private readonly buffers = new BufferPool(POOLED_BUFFER_BYTES);

  constructor(
    private readonly store: ObjectStore,
    private readonly files: StagedFiles,
    private readonly hooks: FetcherHooks,
  ) {}

  /**
   * Starts fetching blocks first..last, which the caller found neither staged nor in flight.
   * Returns when the fetch ends; waiters use the per-block promises in `object.inflight`.
   */
  fetch(object: StagedObject, first: number, last: number): Promise<void> {
    const waiters = new Map<number, Deferred>();
    for (let block = first; block <= last; block++) {
      const deferred = new Deferred();
      waiters.set(block, deferred);
      object.inflight.set(block, deferred);
    }
    object.activeFetches++;
    return this.run(object, first, last, waiters).finally(() => {
      object.activeFetches--;
      for (const [block, deferred] of waiters) {
        if (object.inflight.get(block) === deferred) object.inflight.delete(block);
      }
    });
  }

  private async run(object: StagedObject, first: number, last: number, waiters: Map<number, Deferred>): Promise<void> {
    let next = first;
    const reservation = this.hooks.reserve(object.spanLength(first, last));
    try {
      if (!reservation) throw new NoCacheSpace(`no cache space for ${object.spanLength(first, last)} bytes`);
      const file = await object.openFile(this.files);
      const start = object.blockStart(first);
      const body = await this.store.getRange(object.key, start, start + object.spanLength(first, last), object.etag);
      await this.stream(object, body, first, last, async (block, bytes) => {
        const crc = crc32c(bytes);
        await file.write(bytes, 0, bytes.length, object.blockStart(block));
        reservation.commit(object.markStaged(block, crc));
        this.hooks.staged(object);
        next = block + 1;
        waiters.get(block)?.resolve();
      });
    } catch (err) {
      const failure = isDiskFull(err) ? new NoCacheSpace(`cache disk full: ${errorMessage(err)}`) : err;
      if (!(failure instanceof NoCacheSpace)) debug('%s: fetch of blocks %d..%d failed: %s', object.key, next, last, errorMessage(err));
      for (let block = next; block <= last; block++) waiters.get(block)?.reject(failure);
    } finally {
      reservation?.release();
    }
  }

  /** Hands each complete block of `body` (blocks from..last) to `write`; a body of any other length fails. */
  private async stream(
    object: StagedObject,
    body: AsyncIterable<Uint8Array>,
    from: number,
    last: number,
    write: (block: number, bytes: Buffer) => Promise<void>,
  ): Promise<void> {
    let block = from;
    const buffer = this.buffers.take(object.blockSize);
    let length = object.blockLength(block);
    let filled = 0;
    try {
      for await (const chunk of body) {
        let offset = 0;
        while (offset < chunk.length) {
          if (block > last) throw new StoreError('BadResponse', `${object.key}: the store sent more bytes than asked`);
          const take = Math.min(chunk.length - offset, length - filled);
          buffer.set(chunk.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
          this.hooks.fetched(take);
          if (filled === length) {
            await write(block, buffer.subarray(0, length));
            block++;
            length = block <= last ? object.blockLength(block) : 0;
            filled = 0;
          }
        }
      }
    } finally {
      this.buffers.give(buffer);
    }
    if (block <= last) throw new StoreError('BadResponse', `${object.key}: the response ended early at block ${block}`);
  }
}

