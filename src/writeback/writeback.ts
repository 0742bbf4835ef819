/**
 * The write-back: uploads working copies on close and fsync, retries with backoff, keeps
 * retrying in the background what keeps failing (it stays dirty and is reported), uploads what
 * a crash left dirty before the mount serves, and drains on unmount.
 */
import createDebug from 'debug';
import type { WorkingCopies } from '../cache/working-copies';
import type { WorkingCopy } from '../cache/working-copy';
import { errorMessage, StoreError } from '../errors';
import type { ObjectInfo, ObjectStore } from '../store/object-store';
import { sleep } from '../util/deferred';
import { uploadFile } from './uploader';

const debug = createDebug('stagefs:writeback');
const logError = createDebug('stagefs:error');
const warn = createDebug('stagefs:warn');

/** Attempts one flush makes before it reports EIO; the background keeps trying after. */
const FLUSH_ATTEMPTS = 3;
const RETRY_BASE_MS = 500;
const BACKGROUND_TICK_MS = 1000;
const BACKGROUND_MAX_DELAY_MS = 5 * 60_000;

export interface WritebackHooks {
  /** An upload of the copy's content succeeded (the copy may have changed since). */
  uploaded(copy: WorkingCopy, info: ObjectInfo): void;
}

export class Writeback {
  private readonly running = new Map<WorkingCopy, Promise<void>>();
  private readonly retries = new Map<WorkingCopy, { at: number; delay: number }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly working: WorkingCopies,
    private readonly hooks: WritebackHooks,
    private readonly now: () => number = Date.now,
  ) {}

  /** Resolves once every change made to the copy so far is uploaded; throws when that fails. */
  async flush(copy: WorkingCopy): Promise<void> {
    const target = copy.generation;
    while (!copy.removed && copy.dirty && copy.lastUploadedGeneration < target) {
      const running = this.running.get(copy);
      if (running) {
        await running.catch(() => undefined); // its own caller reports it; this flush tries anew
        continue;
      }
      await this.upload(copy);
    }
  }

  /** Retries dirty copies nothing has open, with growing delays, until they go up. */
  start(): void {
    this.timer = setInterval(() => this.retryIdle(), BACKGROUND_TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Uploads everything dirty (at start, before serving; at unmount, before leaving). */
  async uploadAll(): Promise<{ uploaded: number; failed: number }> {
    let uploaded = 0;
    let failed = 0;
    for (const copy of this.working.list().filter((c) => c.dirty)) {
      try {
        await this.flush(copy);
        uploaded++;
      } catch (err) {
        failed++;
        warn('%s stays dirty: %s', copy.key, errorMessage(err));
      }
    }
    return { uploaded, failed };
  }

  private upload(copy: WorkingCopy): Promise<void> {
    const run = this.attempt(copy).finally(() => this.running.delete(copy));
    this.running.set(copy, run);
    return run;
  }

  private async attempt(copy: WorkingCopy): Promise<void> {
    const generation = copy.generation;
    const key = copy.key;
    const metadata = { ...copy.metadata, mtime: (copy.mtime / 1000).toFixed(3) };
    copy.uploading = true;
    try {
      let info: ObjectInfo | undefined;
      for (let attempt = 1; !info; attempt++) {
        try {
          info = await uploadFile(this.store, key, await copy.openFile(), copy.size, metadata);
        } catch (err) {
          copy.lastError = errorMessage(err);
          if (attempt >= FLUSH_ATTEMPTS || !retryable(err)) {
            logError('upload of %s failed: %s', key, copy.lastError);
            this.scheduleRetry(copy);
            throw err;
          }
          debug('upload of %s failed, retrying: %s', key, copy.lastError);
          await sleep(RETRY_BASE_MS * 4 ** (attempt - 1));
        }
      }
      this.retries.delete(copy);
      if (copy.removed || copy.key !== key) {
        // Deleted or renamed while uploading: the object just written is not wanted there.
        await this.store.delete(key).catch((err: unknown) => debug('removing stale %s: %s', key, errorMessage(err)));
        return;
      }
      this.working.uploaded(copy, generation, info.etag);
      debug('uploaded %s (%d bytes, %s)', key, info.size, info.etag);
      this.hooks.uploaded(copy, info);
    } finally {
      copy.uploading = false;
    }
  }

  private scheduleRetry(copy: WorkingCopy): void {
    const previous = this.retries.get(copy);
    const delay = Math.min(BACKGROUND_MAX_DELAY_MS, previous ? previous.delay * 2 : RETRY_BASE_MS * 2);
    this.retries.set(copy, { at: this.now() + delay, delay });
  }

  private retryIdle(): void {
    for (const copy of this.working.list()) {
      if (!copy.dirty || copy.users > 0 || this.running.has(copy)) continue;
      const retry = this.retries.get(copy);
      if (retry && retry.at > this.now()) continue;
      this.flush(copy).catch(() => undefined); // logged by the attempt; retried on a later tick
    }
  }
}

function retryable(err: unknown): boolean {
  return !(err instanceof StoreError) || !['NoSuchBucket', 'AccessDenied', 'InvalidCredentials'].includes(err.kind);
}
