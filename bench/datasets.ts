/**
 * The data sets: one large object, a few image-sized objects, and a directory of many small
 * objects. They are generated once into the work dir (which the local-disk limit reads) and
 * uploaded where the bucket lacks them, under a prefix per scale.
 */
import { randomFillSync } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, openSync, closeSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Scale } from './options';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface DataSetShape {
  bigBytes: number;
  imageCount: number;
  imageBytes: number;
  smallCount: number;
  /** 4 KiB random reads per reader in the random-read job. */
  random4kReadsPerJob: number;
  /** A cap on any one job, so a slow system cannot stall the run. */
  maxJobSeconds: number;
}

export const SHAPES: Record<Scale, DataSetShape> = {
  full: { bigBytes: 1024 * MiB, imageCount: 8, imageBytes: 256 * MiB, smallCount: 10_000, random4kReadsPerJob: 4000, maxJobSeconds: 180 },
  quick: { bigBytes: 256 * MiB, imageCount: 4, imageBytes: 64 * MiB, smallCount: 2_000, random4kReadsPerJob: 1000, maxJobSeconds: 60 },
  smoke: { bigBytes: 8 * MiB, imageCount: 2, imageBytes: 4 * MiB, smallCount: 50, random4kReadsPerJob: 50, maxJobSeconds: 30 },
};

export const BIG_FILE = 'big.bin';
export const IMAGES_DIR = 'images';
export const SMALL_DIR = 'small';

export interface DataFile {
  /** Path relative to the data set's root, and the key below its prefix. */
  path: string;
  size: number;
}

/** Sizes of 4 to 64 KiB, spread evenly and the same on every run. */
function smallFileSize(i: number): number {
  return 4 * KiB + ((i * 7919) % 61) * KiB;
}

export function dataFiles(shape: DataSetShape): DataFile[] {
  const files: DataFile[] = [{ path: BIG_FILE, size: shape.bigBytes }];
  for (let i = 1; i <= shape.imageCount; i++) files.push({ path: imagePath(i), size: shape.imageBytes });
  for (let i = 1; i <= shape.smallCount; i++) {
    files.push({ path: `${SMALL_DIR}/file-${String(i).padStart(5, '0')}.bin`, size: smallFileSize(i) });
  }
  return files;
}

export function imagePath(i: number): string {
  return `${IMAGES_DIR}/image-${i}.qcow2`;
}

export function totalBytes(files: DataFile[], under?: string): number {
  return files.filter((f) => !under || f.path.startsWith(under + '/')).reduce((sum, f) => sum + f.size, 0);
}

/** Writes the files of the data set that are missing (or of the wrong size) below `root`. */
export function generateLocal(root: string, files: DataFile[]): number {
  const chunk = Buffer.alloc(8 * MiB);
  let made = 0;
  for (const file of files) {
    const path = join(root, file.path);
    if (existsSync(path) && statSync(path).size === file.size) continue;
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(path, 'w');
    try {
      for (let done = 0; done < file.size; ) {
        const length = Math.min(chunk.length, file.size - done);
        randomFillSync(chunk, 0, length);
        done += writeSync(fd, chunk, 0, length, done);
      }
    } finally {
      closeSync(fd);
    }
    made++;
  }
  return made;
}

async function remoteSizes(client: S3Client, bucket: string, prefix: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  let ContinuationToken: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken }));
    for (const object of page.Contents ?? []) sizes.set(object.Key!, object.Size ?? -1);
    ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (ContinuationToken);
  return sizes;
}

/** Uploads the files the bucket lacks (or holds with another size). */
export async function uploadMissing(client: S3Client, bucket: string, prefix: string, root: string, files: DataFile[]): Promise<number> {
  const existing = await remoteSizes(client, bucket, prefix);
  const missing = files.filter((f) => existing.get(prefix + f.path) !== f.size);
  let next = 0;
  const uploader = async () => {
    while (next < missing.length) {
      const file = missing[next++];
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: prefix + file.path,
          Body: createReadStream(join(root, file.path)),
          ContentLength: file.size,
        }),
      );
    }
  };
  await Promise.all(Array.from({ length: 16 }, uploader));
  return missing.length;
}
