/**
 * Checks whole objects against the checksums the store gives for them: its full-object checksum
 * (x-amz-checksum-crc32c, -crc32, -sha256 or -sha1, when HEAD gave one), and the ETag of an object
 * stored in one part, which is the MD5 of its bytes (S3 without KMS, Ceph RGW, MinIO, s3rver).
 * Per-block CRCs prove the cache kept what it was sent; these prove it was sent the object's
 * bytes, which no per-response check can (a proxy, NIC or server that corrupts data under valid
 * headers).
 *
 * An object fetched in this mount is hashed in order as its blocks land, from its staging file,
 * on a worker thread; when its last block is hashed the digests are compared. On a mismatch the
 * entry's blocks are dropped, to be fetched again. A second fetch that yields the same digests
 * means the store keeps sending those bytes: they are kept, and when only the MD5 differed, the
 * store's ETags are not MD5s (KMS encryption, some gateways) and ETags are no longer checked.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import createDebug from 'debug';
import { errorMessage } from '../errors';
import type { ChecksumAlgorithm } from '../store/object-store';
import type { StagedFiles } from './staged-files';
import type { StagedObject } from './staged-object';

const debug = createDebug('stagefs:verify');
const warn = createDebug('stagefs:warn');

export type DigestAlgorithm = 'MD5' | ChecksumAlgorithm;
type Digests = Partial<Record<DigestAlgorithm, string>>;

export type DigestRequest =
  | { kind: 'update'; job: number; algorithms: DigestAlgorithm[]; path: string; start: number; end: number }
  | { kind: 'finish'; job: number }
  | { kind: 'drop'; job: number };

export type DigestReply = { job: number; digests: Digests } | { job: number; failure: string };

/** The MD5 an ETag stands for; undefined for a multipart ETag ("...-N") or any other form. */
export function md5OfEtag(etag: string): string | undefined {
  return /^"?([0-9a-f]{32})"?$/i.exec(etag)?.[1]?.toLowerCase();
}

export interface DigestHooks {
  /** The staged bytes of `object` are not the object's: drop them. */
  mismatch(object: StagedObject): void;
}

interface Pass {
  job: number;
  /** What the store says the digests are. */
  expected: Digests;
  /** The first block not yet sent to the worker. */
  next: number;
  finishing: boolean;
  /** The digests of the previous full pass, when they did not match. */
  previousMismatch?: string;
}

export class ObjectDigests {
  private worker: Worker | undefined;
  private readonly passes = new Map<StagedObject, Pass>();
  private readonly objectsByJob = new Map<number, StagedObject>();
  private nextJob = 1;
  private stopped = false;
  private etagsAreMd5s = true;

  constructor(
    private readonly files: StagedFiles,
    private readonly hooks: DigestHooks,
  ) {}

  /** Blocks of `object` were staged by a fetch: hashes those that now follow the hashed ones. */
  advance(object: StagedObject): void {
    if (this.stopped || object.removed) return;
    let pass = this.passes.get(object);
    if (!pass) {
      const expected = this.expectedDigests(object);
      if (Object.keys(expected).length === 0) return;
      this.passes.set(object, (pass = this.newPass(object, expected)));
    }
    if (pass.finishing) return;
    const from = pass.next;
    while (pass.next < object.blocks.blockCount && object.blocks.has(pass.next)) pass.next++;
    if (pass.next > from) {
      const [start, end] = [object.blockStart(from), object.blockEnd(pass.next - 1)];
      const algorithms = Object.keys(pass.expected) as DigestAlgorithm[];
      this.post({ kind: 'update', job: pass.job, algorithms, path: this.files.pathOf(object.fileName), start, end });
    }
    if (pass.next === object.blocks.blockCount) {
      pass.finishing = true;
      this.post({ kind: 'finish', job: pass.job });
    }
  }

  /** The entry is gone (evicted, retired): its pass, if any, ends unfinished. */
  forget(object: StagedObject): void {
    const pass = this.passes.get(object);
    if (!pass) return;
    this.passes.delete(object);
    this.objectsByJob.delete(pass.job);
    if (!pass.finishing) this.post({ kind: 'drop', job: pass.job });
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.passes.clear();
    this.objectsByJob.clear();
    await this.worker?.terminate();
    this.worker = undefined;
  }

  private expectedDigests(object: StagedObject): Digests {
    const expected: Digests = {};
    const md5 = this.etagsAreMd5s ? md5OfEtag(object.etag) : undefined;
    if (md5) expected.MD5 = md5;
    if (object.storeChecksum) expected[object.storeChecksum.algorithm] = object.storeChecksum.value;
    return expected;
  }

  private newPass(object: StagedObject, expected: Digests, previousMismatch?: string): Pass {
    const job = this.nextJob++;
    this.objectsByJob.set(job, object);
    return { job, expected, next: 0, finishing: false, previousMismatch };
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
    warn('objects are no longer checked against the store\'s checksums: %s', reason);
    this.stopped = true;
    this.worker = undefined;
    this.passes.clear();
    this.objectsByJob.clear();
  }

  private finished(reply: DigestReply): void {
    const object = this.objectsByJob.get(reply.job);
    this.objectsByJob.delete(reply.job);
    const pass = object && this.passes.get(object);
    if (!object || pass?.job !== reply.job) return;
    if ('failure' in reply || object.removed) {
      // Evicted while hashing, or its file went: nothing to say of the bytes.
      if ('failure' in reply) debug('%s: not checked against the store\'s checksums: %s', object.key, reply.failure);
      this.passes.delete(object);
      return;
    }
    const differing = (Object.keys(pass.expected) as DigestAlgorithm[])
      .filter((algorithm) => algorithm !== 'MD5' || this.etagsAreMd5s)
      .filter((algorithm) => reply.digests[algorithm] !== pass.expected[algorithm]);
    const found = differing.map((algorithm) => `${algorithm} ${reply.digests[algorithm]}`).join(', ');
    // Kept, finished: a pass that matched (or is given up) is not made again in this mount.
    if (differing.length === 0) {
      debug('%s (%s): the staged object matches the store\'s %s', object.key, object.etag, Object.keys(pass.expected).join(' and '));
      return;
    }
    if (found === pass.previousMismatch) {
      if (differing.length === 1 && differing[0] === 'MD5') {
        this.etagsAreMd5s = false;
        warn('%s came twice with MD5 %s under ETag %s: this store\'s ETags are not MD5s of the bytes, and are no longer checked', object.key, reply.digests.MD5, object.etag);
      } else {
        warn('%s (%s) came twice with %s, not the store\'s own checksum: kept, as the store holds it', object.key, object.etag, found);
      }
      return;
    }
    warn('%s (%s): the bytes fetched have %s, not what the store gives; its staged blocks are dropped, to be fetched again', object.key, object.etag, found);
    this.hooks.mismatch(object);
    this.passes.set(object, this.newPass(object, this.expectedDigests(object), found));
    this.advance(object);
  }
}
