/**
 * The jobs: what each measures, in which unit, and how, through a mounted (or local) tree and
 * straight against the object store (the raw-S3 limit). The file-system side of the I/O jobs is
 * a fio job file in bench/jobs, the same for every system.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { BIG_FILE, imagePath, SMALL_DIR, type DataFile, type DataSetShape } from './datasets';
import { runFio } from './fio';
import type { Remote } from './systems';

export const JOB_NAMES = ['seq-read', 'seq-read-4jobs', 'rand-read-4k', 'rand-read-1m', 'small-files', 'first-byte', 'list-dir'] as const;
export type JobName = (typeof JOB_NAMES)[number];

export type Unit = 'MB/s' | 'IOPS' | 'ms' | 's';

export interface JobContext {
  shape: DataSetShape;
  files: DataFile[];
  jobsDir: string;
}

export interface Job {
  name: JobName;
  title: string;
  unit: Unit;
  higherIsBetter: boolean;
  measureTree(root: string, context: JobContext): Promise<number>;
  measureStore(client: S3Client, remote: Remote, context: JobContext): Promise<number>;
}

const MB = 1e6;
const RANGED_GET_BYTES = 8 * 1024 * 1024;
const RANGED_GET_DEPTHS = [1, 4, 8];

function fioEnv(root: string, shape: DataSetShape): Record<string, string> {
  return {
    MNT: root,
    MAXTIME: String(shape.maxJobSeconds),
    RANDOM_4K_IOS: String(shape.random4kReadsPerJob),
    // The four readers together read as many bytes as the file holds.
    RANDOM_1M_IOS: String(Math.max(1, shape.bigBytes / (1024 * 1024) / 4)),
  };
}

function fioJob(name: JobName, title: string, unit: 'MB/s' | 'IOPS', measureStore: Job['measureStore']): Job {
  return {
    name,
    title,
    unit,
    higherIsBetter: true,
    measureStore,
    async measureTree(root, context) {
      const result = await runFio(join(context.jobsDir, `${name}.fio`), fioEnv(root, context.shape), (context.shape.maxJobSeconds + 60) * 1000);
      return unit === 'IOPS' ? result.iops : result.bytesPerSecond / MB;
    },
  };
}

async function drain(client: S3Client, remote: Remote, key: string, range?: [number, number]): Promise<number> {
  const response = await client.send(
    new GetObjectCommand({ Bucket: remote.bucket, Key: remote.prefix + key, Range: range ? `bytes=${range[0]}-${range[1]}` : undefined }),
  );
  let bytes = 0;
  for await (const chunk of response.Body as AsyncIterable<Uint8Array>) bytes += chunk.length;
  return bytes;
}

/** Runs `workers` loops over `count` tasks; returns the bytes they read and the seconds it took. */
async function parallel(count: number, workers: number, task: (i: number) => Promise<number>, deadlineMs: number): Promise<{ bytes: number; tasks: number; seconds: number }> {
  const start = performance.now();
  let next = 0;
  let bytes = 0;
  let done = 0;
  const worker = async () => {
    while (next < count && performance.now() - start < deadlineMs) {
      bytes += await task(next++);
      done++;
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  return { bytes, tasks: done, seconds: (performance.now() - start) / 1000 };
}

/**
 * Ranged GETs of the whole large object, as a good client would make them. The best of several
 * depths counts: on a small machine more requests in flight can cost more CPU than they gain.
 */
async function storeSequential(client: S3Client, remote: Remote, context: JobContext): Promise<number> {
  const size = context.shape.bigBytes;
  const ranges = Math.ceil(size / RANGED_GET_BYTES);
  let best = 0;
  for (const inFlight of RANGED_GET_DEPTHS) {
    const result = await parallel(
      ranges,
      inFlight,
      (i) => drain(client, remote, BIG_FILE, [i * RANGED_GET_BYTES, Math.min(size, (i + 1) * RANGED_GET_BYTES) - 1]),
      context.shape.maxJobSeconds * 1000,
    );
    best = Math.max(best, result.bytes / MB / result.seconds);
  }
  return best;
}

function storeRandom(blockBytes: number, unit: 'MB/s' | 'IOPS'): Job['measureStore'] {
  return async (client, remote, context) => {
    const blocks = Math.floor(context.shape.bigBytes / blockBytes);
    const env = fioEnv('', context.shape);
    const perWorker = Number(blockBytes === 4096 ? env.RANDOM_4K_IOS : env.RANDOM_1M_IOS);
    const result = await parallel(
      perWorker * 4,
      4,
      () => {
        const block = Math.floor(Math.random() * blocks);
        return drain(client, remote, BIG_FILE, [block * blockBytes, (block + 1) * blockBytes - 1]);
      },
      context.shape.maxJobSeconds * 1000,
    );
    return unit === 'IOPS' ? result.tasks / result.seconds : result.bytes / MB / result.seconds;
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function imagePaths(context: JobContext): string[] {
  return Array.from({ length: context.shape.imageCount }, (_, i) => imagePath(i + 1));
}

export const JOBS: Record<JobName, Job> = {
  'seq-read': fioJob('seq-read', 'Sequential read of the large object, 1 job', 'MB/s', storeSequential),
  'seq-read-4jobs': fioJob('seq-read-4jobs', 'Sequential read of the large object, 4 jobs', 'MB/s', storeSequential),
  'rand-read-4k': fioJob('rand-read-4k', 'Random 4 KiB reads, 4 jobs', 'IOPS', storeRandom(4096, 'IOPS')),
  'rand-read-1m': fioJob('rand-read-1m', 'Random 1 MiB reads, 4 jobs', 'MB/s', storeRandom(1024 * 1024, 'MB/s')),
  'small-files': fioJob('small-files', 'Reading every small object (4-64 KiB), one after another', 'MB/s', async (client, remote, context) => {
    const small = context.files.filter((f) => f.path.startsWith(SMALL_DIR + '/'));
    const result = await parallel(small.length, 1, (i) => drain(client, remote, small[i].path), context.shape.maxJobSeconds * 1000);
    return result.bytes / MB / result.seconds;
  }),
  'first-byte': {
    name: 'first-byte',
    title: 'Time to first byte of a large object (open + 4 KiB read), median',
    unit: 'ms',
    higherIsBetter: false,
    async measureTree(root, context) {
      // Synchronous calls are safe here: the mount is served by another process.
      const buffer = Buffer.alloc(4096);
      const times = imagePaths(context).map((path) => {
        const start = performance.now();
        const fd = openSync(join(root, path), 'r');
        try {
          readSync(fd, buffer, 0, buffer.length, 0);
        } finally {
          closeSync(fd);
        }
        return performance.now() - start;
      });
      return median(times);
    },
    async measureStore(client, remote, context) {
      const times: number[] = [];
      for (const path of imagePaths(context)) {
        const start = performance.now();
        await drain(client, remote, path, [0, 4095]);
        times.push(performance.now() - start);
      }
      return median(times);
    },
  },
  'list-dir': {
    name: 'list-dir',
    title: '`ls -l` and `stat` of every entry of the small-object directory',
    unit: 's',
    higherIsBetter: false,
    async measureTree(root) {
      const start = performance.now();
      const result = spawnSync('sh', ['-c', 'ls -l "$1" >/dev/null && stat -- "$1"/* >/dev/null', 'sh', join(root, SMALL_DIR)], { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`ls/stat failed: ${(result.stderr || result.error?.message || '').trim().split('\n')[0]}`);
      return (performance.now() - start) / 1000;
    },
    async measureStore(client, remote) {
      const start = performance.now();
      let ContinuationToken: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: remote.bucket, Prefix: `${remote.prefix}${SMALL_DIR}/`, Delimiter: '/', ContinuationToken }),
        );
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (ContinuationToken);
      return (performance.now() - start) / 1000;
    },
  },
};
