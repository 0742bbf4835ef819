/**
 * The data sets: one large object, a few image-sized objects, and a directory of many small
 * objects. They are generated once into the work dir (which the local-disk limit reads) and
 * uploaded where the bucket lacks them, under a prefix per scale.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { S3Store } from '../src/store/s3-store';
import type { Scale } from './options';
import { uploadFile } from './upload';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface DataSetShape {
  bigBytes: number;
  imageCount: number;
  imageBytes: number;
  smallCount: number;
  /** Virtual size of the VM template (a qcow2 image). */
  vmBytes: number;
  /** 4 KiB random reads per reader in the random-read job. */
  random4kReadsPerJob: number;
  /** A cap on any one job, so a slow system cannot stall the run. */
  maxJobSeconds: number;
}

export const SHAPES: Record<Scale, DataSetShape> = {
  full: { bigBytes: 1024 * MiB, imageCount: 8, imageBytes: 256 * MiB, smallCount: 10_000, vmBytes: 1024 * MiB, random4kReadsPerJob: 4000, maxJobSeconds: 180 },
  quick: { bigBytes: 256 * MiB, imageCount: 4, imageBytes: 64 * MiB, smallCount: 2_000, vmBytes: 256 * MiB, random4kReadsPerJob: 1000, maxJobSeconds: 60 },
  smoke: { bigBytes: 8 * MiB, imageCount: 2, imageBytes: 4 * MiB, smallCount: 50, vmBytes: 8 * MiB, random4kReadsPerJob: 50, maxJobSeconds: 30 },
};

export const BIG_FILE = 'big.bin';
export const IMAGES_DIR = 'images';
export const SMALL_DIR = 'small';
export const VM_TEMPLATE = 'vm/template.qcow2';
/** Where the write jobs write, below the data set's root; emptied after each job. */
export const WRITES_DIR = 'bench-writes';

export interface DataFile {
  /** Path relative to the data set's root, and the key below its prefix. */
  path: string;
  /** Its size, or undefined for the VM template, whose size qemu-img decides. */
  size: number | undefined;
}

export interface SizedFile extends DataFile {
  size: number;
}

/** Sizes of 4 to 64 KiB, spread evenly and the same on every run. */
function smallFileSize(i: number): number {
  return 4 * KiB + ((i * 7919) % 61) * KiB;
}

export function dataFiles(shape: DataSetShape): DataFile[] {
  const files: DataFile[] = [{ path: BIG_FILE, size: shape.bigBytes }, { path: VM_TEMPLATE, size: undefined }];
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
  return files.filter((f) => !under || f.path.startsWith(under + '/')).reduce((sum, f) => sum + (f.size ?? 0), 0);
}

/**
 * Random bytes, except that one 1 MiB chunk in four is zeros, as the unused parts of a disk
 * are: `zeroChunks` makes the raw disk the VM template is converted from.
 */
function writeRandomFile(path: string, size: number, zeroChunks: boolean): void {
  const chunk = Buffer.alloc(MiB);
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'w');
  try {
    for (let done = 0, i = 0; done < size; i++) {
      const length = Math.min(chunk.length, size - done);
      if (zeroChunks && i % 4 === 3) chunk.fill(0, 0, length);
      else randomFillSync(chunk, 0, length);
      done += writeSync(fd, chunk, 0, length, done);
    }
  } finally {
    closeSync(fd);
  }
}

/** The VM template: a raw disk converted to qcow2 by qemu-img, as a template is made. */
function writeVmTemplate(path: string, virtualBytes: number): void {
  const raw = `${path}.raw`;
  const partial = `${path}.partial`;
  try {
    writeRandomFile(raw, virtualBytes, true);
    const result = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, partial], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`qemu-img convert failed: ${(result.stderr || result.error?.message || '').trim()}`);
    renameSync(partial, path);
  } finally {
    rmSync(raw, { force: true });
    rmSync(partial, { force: true });
  }
}

/**
 * Writes the files of the data set that are missing (or of the wrong size) below `root`;
 * returns how many it made and every file with its size on disk.
 */
export function generateLocal(root: string, files: DataFile[], shape: DataSetShape): { made: number; files: SizedFile[] } {
  let made = 0;
  const sized = files.map((file) => {
    const path = join(root, file.path);
    const present = existsSync(path) && (file.size === undefined || statSync(path).size === file.size);
    if (!present) {
      if (file.path === VM_TEMPLATE) writeVmTemplate(path, shape.vmBytes);
      else writeRandomFile(path, file.size!, false);
      made++;
    }
    return { path: file.path, size: statSync(path).size };
  });
  return { made, files: sized };
}

async function remoteSizes(store: S3Store, prefix: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  let continuationToken: string | undefined;
  do {
    const page = await store.list(prefix, { continuationToken });
    for (const object of page.objects) sizes.set(object.key, object.size);
    continuationToken = page.continuationToken;
  } while (continuationToken);
  return sizes;
}

/** Uploads the files the bucket lacks (or holds with another size). */
export async function uploadMissing(store: S3Store, prefix: string, root: string, files: SizedFile[]): Promise<number> {
  const existing = await remoteSizes(store, prefix);
  const missing = files.filter((f) => existing.get(prefix + f.path) !== f.size);
  let next = 0;
  const uploader = async () => {
    while (next < missing.length) {
      const file = missing[next++];
      await uploadFile(store, prefix + file.path, join(root, file.path), file.size, 2);
    }
  };
  await Promise.all(Array.from({ length: 16 }, uploader));
  return missing.length;
}
