/** Uploading a local file with the project's own store client: one PUT, or parts read one by one. */
import { open } from 'node:fs/promises';
import type { S3Store } from '../src/store/s3-store';

const MiB = 1024 * 1024;
/** Up to this size, one PUT; above, a multipart upload of parts this size. */
const PART_BYTES = 16 * MiB;

async function readPart(path: string, start: number, length: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await file.read(buffer, done, length - done, start + done);
      if (bytesRead === 0) throw new Error(`${path} ended at ${start + done} bytes, expected ${start + length}`);
      done += bytesRead;
    }
    return buffer;
  } finally {
    await file.close();
  }
}

/** Uploads `size` bytes of `path` to `key`, `partsInFlight` parts at a time; memory stays at that many parts. */
export async function uploadFile(store: S3Store, key: string, path: string, size: number, partsInFlight = 4): Promise<void> {
  if (size <= PART_BYTES) {
    await store.put(key, await readPart(path, 0, size));
    return;
  }
  const uploadId = await store.createMultipart(key);
  try {
    const parts = Math.ceil(size / PART_BYTES);
    const etags: string[] = new Array(parts);
    let next = 0;
    const worker = async () => {
      while (next < parts) {
        const part = next++;
        const start = part * PART_BYTES;
        const body = await readPart(path, start, Math.min(PART_BYTES, size - start));
        etags[part] = await store.uploadPart(key, uploadId, part + 1, body);
      }
    };
    await Promise.all(Array.from({ length: Math.min(partsInFlight, parts) }, worker));
    await store.completeMultipart(key, uploadId, etags);
  } catch (err) {
    await store.abortMultipart(key, uploadId).catch(() => undefined); // the upload failed already; this only frees the parts
    throw err;
  }
}
