/**
 * The worker thread of ObjectDigests (object-digests.ts): digests of staging files read in
 * order, so the main thread, which serves FUSE requests, never spends its time hashing.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { crc32c } from '../util/crc32c';
import type { DigestAlgorithm, DigestReply, DigestRequest } from './object-digests';

const CHUNK_BYTES = 1024 * 1024;
const buffer = Buffer.allocUnsafe(CHUNK_BYTES);

/** One digest being computed: fed bytes in order, then asked for its value in the form the store gives. */
interface Digest {
  update(bytes: Buffer): void;
  value(): string;
}

function hashDigest(name: string, encoding: 'hex' | 'base64'): Digest {
  const hash: Hash = createHash(name);
  return { update: (bytes) => hash.update(bytes), value: () => hash.digest(encoding) };
}

function crcDigest(crc: (bytes: Buffer, previous: number) => number): Digest {
  let value = 0;
  return {
    update: (bytes) => (value = crc(bytes, value)),
    value: () => {
      const bigEndian = Buffer.alloc(4);
      bigEndian.writeUInt32BE(value >>> 0);
      return bigEndian.toString('base64');
    },
  };
}

const DIGESTS: Record<DigestAlgorithm, () => Digest> = {
  MD5: () => hashDigest('md5', 'hex'),
  SHA1: () => hashDigest('sha1', 'base64'),
  SHA256: () => hashDigest('sha256', 'base64'),
  CRC32: () => crcDigest(crc32),
  CRC32C: () => crcDigest(crc32c),
};

interface Job {
  digests: Map<DigestAlgorithm, Digest>;
  failure?: string;
}

const jobs = new Map<number, Job>();

/** Feeds bytes [start, end) of the file at `path` to the job's digests. */
function feed(job: Job, path: string, start: number, end: number): void {
  const fd = openSync(path, 'r');
  try {
    for (let offset = start; offset < end; ) {
      const n = readSync(fd, buffer, 0, Math.min(CHUNK_BYTES, end - offset), offset);
      if (n === 0) throw new Error(`the staging file ends at ${offset}, before ${end}`);
      for (const digest of job.digests.values()) digest.update(buffer.subarray(0, n));
      offset += n;
    }
  } finally {
    closeSync(fd);
  }
}

function handle(request: DigestRequest): DigestReply | undefined {
  if (request.kind === 'drop') {
    jobs.delete(request.job);
    return undefined;
  }
  if (request.kind === 'update') {
    let job = jobs.get(request.job);
    if (!job) jobs.set(request.job, (job = { digests: new Map(request.algorithms.map((algorithm) => [algorithm, DIGESTS[algorithm]()])) }));
    if (job.failure) return undefined;
    try {
      feed(job, request.path, request.start, request.end);
    } catch (err) {
      job.failure = err instanceof Error ? err.message : String(err);
    }
    return undefined;
  }
  const job = jobs.get(request.job);
  jobs.delete(request.job);
  if (!job || job.failure) return { job: request.job, failure: job?.failure ?? 'nothing was hashed' };
  return { job: request.job, digests: Object.fromEntries([...job.digests].map(([algorithm, digest]) => [algorithm, digest.value()])) };
}

parentPort?.on('message', (request: DigestRequest) => {
  const reply = handle(request);
  if (reply) parentPort?.postMessage(reply);
});
