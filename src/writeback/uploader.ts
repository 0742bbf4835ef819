/**
 * Uploads a staged file as one object: a single PUT when small, otherwise a multipart upload
 * with a few parts in flight, each read into a buffer of its own, so memory stays bounded
 * whatever the file's size.
 */
import type { FileHandle } from 'node:fs/promises';
import createDebug from 'debug';
import { errorMessage, StoreError } from '../errors';
import type { ObjectInfo, ObjectStore } from '../store/object-store';
import { sleep } from '../util/deferred';

const debug = createDebug('stagefs:upload');

const MiB = 1024 * 1024;
export const SINGLE_PUT_MAX = 16 * MiB;
const MIN_PART_SIZE = 8 * MiB;
const MAX_PARTS = 10_000;
const PARTS_IN_FLIGHT = 4;
const PART_ATTEMPTS = 3;
const PART_RETRY_MS = 200;

/** The part size for `size` bytes: at least 8 MiB, and few enough parts for S3's limit. */
export function partSizeFor(size: number): number {
  return Math.max(MIN_PART_SIZE, Math.ceil(size / MAX_PARTS / MiB) * MiB);
}

async function readAt(file: FileHandle, buffer: Buffer, length: number, position: number): Promise<Buffer> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) {
      // The file shrank under the upload; its copy stays dirty and goes up again.
      buffer.fill(0, done, length);
      break;
    }
    done += bytesRead;
  }
  return buffer.subarray(0, length);
}

export async function uploadFile(
  store: ObjectStore,
  key: string,
  file: FileHandle,
  size: number,
  metadata: Record<string, string>,
): Promise<ObjectInfo> {
  if (size <= SINGLE_PUT_MAX) {
    return store.put(key, await readAt(file, Buffer.allocUnsafe(size), size, 0), metadata);
  }
  const partSize = partSizeFor(size);
  const partCount = Math.ceil(size / partSize);
  const uploadId = await store.createMultipart(key, metadata);
  debug('%s: multipart upload of %d parts of %d bytes', key, partCount, partSize);
  try {
    const etags: string[] = new Array(partCount);
    let next = 0;
    const worker = async () => {
      const buffer = Buffer.allocUnsafe(partSize);
      while (next < partCount) {
        const part = next++;
        const start = part * partSize;
        const body = await readAt(file, buffer, Math.min(partSize, size - start), start);
        etags[part] = await withRetries(`part ${part + 1} of ${key}`, () => store.uploadPart(key, uploadId, part + 1, body));
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARTS_IN_FLIGHT, partCount) }, worker));
    return await store.completeMultipart(key, uploadId, etags);
  } catch (err) {
    await store.abortMultipart(key, uploadId).catch((abortErr: unknown) => debug('aborting upload of %s: %s', key, errorMessage(abortErr)));
    throw err;
  }
}

async function withRetries<T>(what: string, attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (err) {
      const retryable = !(err instanceof StoreError) || err.kind === 'Server' || err.kind === 'Timeout' || err.kind === 'Unreachable';
      if (!retryable || tries >= PART_ATTEMPTS) throw err;
      debug('%s: retrying after %s', what, errorMessage(err));
      await sleep(PART_RETRY_MS * 4 ** (tries - 1));
    }
  }
}
