/**
 * A repair of s3rver's file store: its writes are not atomic. It answers a PUT before the
 * object's bytes are written (and an UploadPart before the part's are), truncates an object in
 * place while readers may read it, and reports the size from the file: a HEAD or GET just after
 * a PUT can see an empty or short object with the new ETag. Real S3 is atomic, and tests must
 * not fail (or pass) on this server's races, so here every object, part and metadata file is
 * written whole to a temporary file and renamed into place, and answered only after that.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import FilesystemStore from 's3rver/lib/stores/filesystem';
import S3Object from 's3rver/lib/models/object';

interface StoredObject {
  bucket: string;
  key: string;
  content: Buffer | Readable;
  metadata: Record<string, string>;
}

function temporaryFor(path: string): string {
  return `${path}.${randomBytes(6).toString('hex')}.tmp`;
}

/** Runs `write` on a temporary file, then renames it to `path`; the temporary goes on failure. */
async function replace<T>(path: string, write: (temporary: string) => Promise<T>): Promise<T> {
  await mkdir(dirname(path), { recursive: true });
  const temporary = temporaryFor(path);
  try {
    const result = await write(temporary);
    await rename(temporary, path);
    return result;
  } catch (err) {
    await unlink(temporary).catch(() => undefined);
    throw err;
  }
}

/** Writes a body whole to `path`; returns its size and MD5. */
function writeBody(path: string, content: Buffer | Readable): Promise<{ size: number; md5: string }> {
  return replace(path, async (temporary) => {
    const md5 = createHash('md5');
    let size = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        md5.update(chunk);
        size += chunk.length;
        callback(null, chunk);
      },
    });
    await pipeline(Buffer.isBuffer(content) ? Readable.from([content]) : content, counter, createWriteStream(temporary));
    return { size, md5: md5.digest('hex') };
  });
}

function writeSmall(path: string, text: string): Promise<void> {
  return replace(path, (temporary) => writeFile(temporary, text));
}

type Store = FilesystemStore & {
  getResourcePath(bucket: string, key: string | undefined, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5?: string): Promise<void>;
};

export function makeWritesAtomic(): void {
  const store = FilesystemStore.prototype as Store;

  store.putMetadata = async function putMetadata(this: Store, bucket, key, metadata, md5) {
    const kept = Object.fromEntries(
      Object.entries(metadata).filter(([name]) => S3Object.ALLOWED_METADATA.includes(name) || name.startsWith('x-amz-meta-')),
    );
    if (md5) await writeSmall(this.getResourcePath(bucket, key, 'object.md5'), md5);
    await writeSmall(this.getResourcePath(bucket, key, 'metadata.json'), JSON.stringify(kept, null, 2));
  };

  // The body goes to a temporary file first; metadata, then the body, are renamed into place.
  (store as unknown as { putObject(object: StoredObject): Promise<unknown> }).putObject = async function putObject(this: Store, object: StoredObject) {
    const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
    await mkdir(dirname(objectPath), { recursive: true });
    const temporary = temporaryFor(objectPath);
    try {
      const { size, md5 } = await writeBody(temporary, object.content);
      await this.putMetadata(object.bucket, object.key, object.metadata, md5);
      await rename(temporary, objectPath);
      return { size, md5 };
    } catch (err) {
      await unlink(temporary).catch(() => undefined);
      throw err;
    }
  };

  (store as unknown as { putPart(bucket: string, uploadId: string, partNumber: number, content: Readable): Promise<unknown> }).putPart =
    async function putPart(this: Store, bucket: string, uploadId: string, partNumber: number, content: Readable) {
      const partPath = join(this.getResourcePath(bucket, undefined, 'uploads'), uploadId, String(partNumber));
      const { size, md5 } = await writeBody(partPath, content);
      await writeSmall(`${partPath}.md5`, md5);
      return { size, md5 };
    };

  (
    store as unknown as {
      copyObject(srcBucket: string, srcKey: string, destBucket: string, destKey: string, metadata?: Record<string, string>): Promise<unknown>;
    }
  ).copyObject = async function copyObject(this: Store, srcBucket, srcKey, destBucket, destKey, replacementMetadata) {
    const source = (resource: string) => this.getResourcePath(srcBucket, srcKey, resource);
    const destination = (resource: string) => this.getResourcePath(destBucket, destKey, resource);
    const sameObject = source('object') === destination('object');
    const body = sameObject ? undefined : temporaryFor(destination('object'));
    try {
      if (body) {
        await mkdir(dirname(body), { recursive: true });
        await copyFile(source('object'), body);
      }
      if (replacementMetadata) {
        await this.putMetadata(destBucket, destKey, replacementMetadata);
      } else if (!sameObject) {
        for (const resource of ['metadata.json', 'object.md5']) await replace(destination(resource), (temporary) => copyFile(source(resource), temporary));
      }
      if (body) await rename(body, destination('object'));
    } catch (err) {
      if (body) await unlink(body).catch(() => undefined);
      throw err;
    }
    return this.getMetadata(destBucket, destKey);
  };
}
