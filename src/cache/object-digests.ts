/**
 * Checks whole objects against the checksum the store gives for them: the ETag of an object
 * stored in one part is the MD5 of its bytes (S3 without KMS, Ceph RGW, MinIO, s3rver). Per-block
 * CRCs prove the cache kept what it was sent; this proves it was sent the object's bytes, which
 * no per-response check can (a proxy, NIC or server that corrupts data under valid headers).
 *
 * An object fetched in this mount is hashed in order as its blocks land, from its staging file,
 * on a worker thread; when its last block is hashed the digest is compared with the ETag. On a
 * mismatch the entry's blocks are dropped, to be fetched again. When a second fetch yields the
 * same mismatching digest, the store keeps sending those bytes and its ETags are not MD5s (KMS
 * encryption, some gateways): the check stops for the rest of the mount.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import createDebug from 'debug';
import { errorMessage } from '../errors';
import type { StagedFiles } from './staged-files';
import type { StagedObject } from './staged-object';

const debug = createDebug('stagefs:verify');
const warn = createDebug('stagefs:warn');

export type DigestRequest =
  | { kind: 'update'; job: number; path: string; start: number; end: number }
  | { kind: 'finish'; job: number }
  | { kind: 'drop'; job: number };

export type DigestReply = { job: number; md5: string } | { job: number; failure: string };

/** The MD5 an ETag stands for; undefined for a multipart ETag ("...-N") or any other form. */
export function md5OfEtag(etag: string): string | undefined {
  return /^"?([0-9a-f]{32})"?$/i.exec(etag)?.[1]?.toLowerCase();
}

export interface DigestHooks {
  /** The staged bytes of `object` are not the object's: drop them. */
  mismatch(object: StagedObject): void;
}

interface Progress {
  job: number;
  /** The first block not yet sent to the worker. */
  next: number;
  finishing: boolean;
  /** The digest of the previous full pass, when it did not match the ETag. */
  previousMismatch?: string;
}

export class ObjectDigests {
  private worker: Worker | undefined;
  private readonly progress = new Map<StagedObject, Progress>();
  private readonly objectsByJob = new Map<number, StagedObject>();
  private nextJob = 1;
  private stopped = false;

  constructor(
    private readonly files: StagedFiles,
    private readonly hooks: DigestHooks,
  ) {}

  /** Blocks of `object` were staged by a fetch: hashes those that now follow the hashed ones. */
  advance(object: StagedObject): void {
    if (this.stopped || object.removed || md5OfEtag(object.etag) === undefined) return;
    let progress = this.progress.get(object);
    if (!progress) this.progress.set(object, (progress = this.newPass(object)));
    if (progress.finishing) return;
    const from = progress.next;
    while (progress.next < object.blocks.blockCount && object.blocks.has(progress.next)) progress.next++;
    if (progress.next > from) {
      const path = this.files.pathOf(object.fileName);
      this.post({ kind: 'update', job: progress.job, path, start: object.blockStart(from), end: object.blockStart(progress.next - 1) + object.blockLength(progress.next - 1) });
    }
    if (progress.next === object.blocks.blockCount) {
      progress.finishing = true;
      this.post({ kind: 'finish', job: progress.job });
    }
  }

  /** The entry is gone (evicted, retired): its pass, if any, ends unfinished. */
  forget(object: StagedObject): void {
    const progress = this.progress.get(object);
    if (!progress) return;
    this.progress.delete(object);
    this.objectsByJob.delete(progress.job);
    if (!progress.finishing) this.post({ kind: 'drop', job: progress.job });
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.progress.clear();
    this.objectsByJob.clear();
    await this.worker?.terminate();
    this.worker = undefined;
  }

  private newPass(object: StagedObject, previousMismatch?: string): Progress {
    const job = this.nextJob++;
    this.objectsByJob.set(job, object);
    return { job, next: 0, finishing: false, previousMismatch };
  }

  private post(request: DigestRequest): void {
    this.startWorker().postMessage(request);
  }

  private startWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(join(__dirname, 'digest-worker.js'));
    worker.unref();
    worker.on('message', (reply: DigestReply) => this.finished(reply));
    worker.on('error', (err) => this.stop(`the digest worker failed: ${errorMessage(err)}`));
    worker.on('exit', (code) => {
      if (!this.stopped) this.stop(`the digest worker exited (code ${code})`);
    });
    this.worker = worker;
    return worker;
  }

  private stop(reason: string): void {
    warn('objects are no longer checked against their ETags: %s', reason);
    this.stopped = true;
    this.worker = undefined;
    this.progress.clear();
    this.objectsByJob.clear();
  }

  private finished(reply: DigestReply): void {
    const object = this.objectsByJob.get(reply.job);
    this.objectsByJob.delete(reply.job);
    if (!object || this.progress.get(object)?.job !== reply.job) return;
    const progress = this.progress.get(object)!;
    const expected = md5OfEtag(object.etag);
    if ('failure' in reply || object.removed || expected === undefined) {
      // Evicted or renamed to a multipart copy while hashing: nothing to say of the bytes.
      if ('failure' in reply) debug('%s: not checked against its ETag: %s', object.key, reply.failure);
      this.progress.delete(object);
      return;
    }
    if (reply.md5 === expected) {
      debug('%s (%s): the staged object matches its ETag', object.key, object.etag);
      // Kept, finished: the object is not hashed again in this mount.
      return;
    }
    if (reply.md5 === progress.previousMismatch) {
      this.stop(`${object.key} came twice with MD5 ${reply.md5} under ETag ${object.etag}: this store's ETags are not MD5s of the bytes`);
      return;
    }
    warn('%s (%s): the bytes fetched have MD5 %s, not the ETag; its staged blocks are dropped, to be fetched again', object.key, object.etag, reply.md5);
    this.hooks.mismatch(object);
    this.progress.set(object, this.newPass(object, reply.md5));
    this.advance(object);
  }
}
