/**
 * The worker thread of ObjectDigests (object-digests.ts): MD5s of staging files read in order,
 * so the main thread, which serves FUSE requests, never spends its time hashing.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import type { DigestReply, DigestRequest } from './object-digests';

const CHUNK_BYTES = 1024 * 1024;
const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
const jobs = new Map<number, { hash: Hash; failure?: string }>();

/** Feeds bytes [start, end) of the file at `path` to `hash`. */
function hashRange(hash: Hash, path: string, start: number, end: number): void {
  const fd = openSync(path, 'r');
  try {
    for (let offset = start; offset < end; ) {
      const n = readSync(fd, buffer, 0, Math.min(CHUNK_BYTES, end - offset), offset);
      if (n === 0) throw new Error(`the staging file ends at ${offset}, before ${end}`);
      hash.update(buffer.subarray(0, n));
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
  let job = jobs.get(request.job);
  if (!job) jobs.set(request.job, (job = { hash: createHash('md5') }));
  if (request.kind === 'update') {
    if (job.failure) return undefined;
    try {
      hashRange(job.hash, request.path, request.start, request.end);
    } catch (err) {
      job.failure = err instanceof Error ? err.message : String(err);
    }
    return undefined;
  }
  jobs.delete(request.job);
  return job.failure ? { job: request.job, failure: job.failure } : { job: request.job, md5: job.hash.digest('hex') };
}

parentPort?.on('message', (request: DigestRequest) => {
  const reply = handle(request);
  if (reply) parentPort?.postMessage(reply);
});
