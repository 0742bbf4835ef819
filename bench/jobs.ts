/**
 * The jobs: what each measures, in which unit, and how, through a mounted (or local) tree and
 * straight against the object store (the raw-S3 limits, with the project's SDK client and with
 * curl). The file-system side of the read jobs is a fio job file in bench/jobs, the same for
 * every system. A write job counts until the object is in the store, not until close returns:
 * a mount that uploads after close (rclone) is timed to the end of its upload.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../src/util/deferred';
import type { S3Store } from '../src/store/s3-store';
import { curlTransfers, type CurlTransfer } from './curl';
import { BIG_FILE, imagePath, SMALL_DIR, VM_TEMPLATE, WRITES_DIR, type DataSetShape, type SizedFile } from './datasets';
import { runFio } from './fio';
import { run } from './processes';
import type { Remote } from './remote';
import { PHASES, type Phase } from './results';
import { uploadFile } from './upload';

export const JOB_NAMES = [
  'seq-read',
  'seq-read-4jobs',
  'rand-read-4k',
  'rand-read-1m',
  'small-files',
  'first-byte',
  'list-dir',
  'qemu-convert',
  'seq-write',
  'seq-write-4jobs',
  'copy-in-mount',
] as const;
export type JobName = (typeof JOB_NAMES)[number];

export type Unit = 'MB/s' | 'IOPS' | 'ms' | 's';

export interface JobContext {
  shape: DataSetShape;
  files: SizedFile[];
  jobsDir: string;
  /** The data set on local disk. */
  localRoot: string;
  /** Scratch space on local disk, for what a job writes there. */
  scratchDir: string;
  remote: Remote;
  store: S3Store;
  /** ETag of every object of the data set, by key, for If-Match on the SDK's ranged GETs. */
  etags: Map<string, string>;
}

export interface Job {
  name: JobName;
  title: string;
  unit: Unit;
  higherIsBetter: boolean;
  /**
   * Cold is the first run on a fresh mount; warm, when listed, the same job again on it;
   * remounted, when listed, again after a remount on the same cache dir. The read jobs run all
   * three; the copy's source is staged warm, but its time is the upload's, so it stops there.
   */
  phases: readonly Phase[];
  /** Whether the local-disk limit means anything for it (not for writes that must reach the store). */
  local: boolean;
  /** Runs in a tree: a mount of the data set's prefix, or (for the local-disk limit) its local copy. */
  measureTree(root: string, context: JobContext): Promise<number>;
  /** The object store through the project's S3 client (S3Store, the AWS SDK), without FUSE. */
  measureSdk?(context: JobContext): Promise<number>;
  /** The object store through curl, without FUSE. */
  measureCurl?(context: JobContext): Promise<number>;
}

const MB = 1e6;
const MiB = 1024 * 1024;
const RANGED_GET_BYTES = 8 * MiB;
/** The raw limits are the best of these depths: on a small machine more in flight can cost more CPU than it gains. */
const IN_FLIGHT = [1, 4, 8];
const STORE_POLL_MS = 20;

function fioEnv(root: string, shape: DataSetShape): Record<string, string> {
  return {
    MNT: root,
    MAXTIME: String(shape.maxJobSeconds),
    RANDOM_4K_IOS: String(shape.random4kReadsPerJob),
    // The four readers together read as many bytes as the file holds.
    RANDOM_1M_IOS: String(Math.max(1, shape.bigBytes / MiB / 4)),
  };
}

function timeoutMs(context: JobContext): number {
  return (context.shape.maxJobSeconds + 60) * 1000;
}

function key(context: JobContext, path: string): string {
  return context.remote.prefix + path;
}

async function drain(body: AsyncIterable<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of body) bytes += chunk.length;
  return bytes;
}

/** GETs bytes [start, end) of a data-set object with the SDK; returns how many arrived. */
async function sdkGet(context: JobContext, path: string, start: number, end: number): Promise<number> {
  const objectKey = key(context, path);
  const etag = context.etags.get(objectKey);
  if (!etag) throw new Error(`${objectKey} is not in the data set's listing`);
  return drain(await context.store.getRange(objectKey, start, end, etag));
}

/** Runs `workers` loops over `count` tasks; returns the bytes they read and the seconds it took. */
async function parallel(count: number, workers: number, task: (i: number) => Promise<number>, deadlineMs: number): Promise<{ bytes: number; tasks: number; seconds: number }> {
  const start = performance.now();
  let next = 0;
  let bytes = 0;
  let done = 0;
  const worker = async () => {
    while (next < count && performance.now() - start < deadlineMs) {
      // Awaited first, then added: adding to `bytes` in the same statement as the await would add to a total read before it.
      const read = await task(next++);
      bytes += read;
      done++;
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  return { bytes, tasks: done, seconds: (performance.now() - start) / 1000 };
}

function ranges(size: number): Array<[number, number]> {
  return Array.from({ length: Math.ceil(size / RANGED_GET_BYTES) }, (_, i) => [i * RANGED_GET_BYTES, Math.min(size, (i + 1) * RANGED_GET_BYTES)]);
}

function sizeOf(context: JobContext, path: string): number {
  const file = context.files.find((f) => f.path === path);
  if (!file) throw new Error(`${path} is not in the data set`);
  return file.size;
}

/** MB/s of ranged GETs of a whole object with the SDK, the best of 1, 4 and 8 in flight. */
async function sdkSequential(context: JobContext, path: string): Promise<number> {
  const parts = ranges(sizeOf(context, path));
  let best = 0;
  for (const inFlight of IN_FLIGHT) {
    const result = await parallel(parts.length, inFlight, (i) => sdkGet(context, path, ...parts[i]), context.shape.maxJobSeconds * 1000);
    best = Math.max(best, result.bytes / MB / result.seconds);
  }
  return best;
}

/** The same with curl. */
async function curlSequential(context: JobContext, path: string): Promise<number> {
  const transfers = ranges(sizeOf(context, path)).map(([start, end]): CurlTransfer => ({ key: key(context, path), range: [start, end - 1] }));
  let best = 0;
  for (const inFlight of IN_FLIGHT) {
    const result = await curlTransfers(context.remote, transfers, inFlight, timeoutMs(context));
    best = Math.max(best, result.bytes / MB / result.seconds);
  }
  return best;
}

/** Random block offsets of the large object, one list per reader. */
function randomBlocks(context: JobContext, blockBytes: number): number[] {
  const env = fioEnv('', context.shape);
  const perReader = Number(blockBytes === 4096 ? env.RANDOM_4K_IOS : env.RANDOM_1M_IOS);
  const blocks = Math.floor(context.shape.bigBytes / blockBytes);
  return Array.from({ length: perReader * 4 }, () => Math.floor(Math.random() * blocks));
}

function fioJob(name: JobName, title: string, unit: 'MB/s' | 'IOPS', limits: Pick<Job, 'measureSdk' | 'measureCurl'>): Job {
  return {
    name,
    title,
    unit,
    higherIsBetter: true,
    phases: PHASES,
    local: true,
    ...limits,
    async measureTree(root, context) {
      const result = await runFio(join(context.jobsDir, `${name}.fio`), fioEnv(root, context.shape), timeoutMs(context));
      return unit === 'IOPS' ? result.iops : result.bytesPerSecond / MB;
    },
  };
}

function randomReadJob(name: JobName, title: string, blockBytes: number, unit: 'MB/s' | 'IOPS'): Job {
  const rate = (bytes: number, requests: number, seconds: number) => (unit === 'IOPS' ? requests / seconds : bytes / MB / seconds);
  return fioJob(name, title, unit, {
    async measureSdk(context) {
      const blocks = randomBlocks(context, blockBytes);
      const result = await parallel(blocks.length, 4, (i) => sdkGet(context, BIG_FILE, blocks[i] * blockBytes, (blocks[i] + 1) * blockBytes), context.shape.maxJobSeconds * 1000);
      return rate(result.bytes, result.tasks, result.seconds);
    },
    async measureCurl(context) {
      const transfers = randomBlocks(context, blockBytes).map((block): CurlTransfer => ({ key: key(context, BIG_FILE), range: [block * blockBytes, (block + 1) * blockBytes - 1] }));
      const result = await curlTransfers(context.remote, transfers, 4, timeoutMs(context));
      return rate(result.bytes, transfers.length, result.seconds);
    },
  });
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function imagePaths(context: JobContext): string[] {
  return Array.from({ length: context.shape.imageCount }, (_, i) => imagePath(i + 1));
}

function smallFiles(context: JobContext): SizedFile[] {
  return context.files.filter((f) => f.path.startsWith(SMALL_DIR + '/'));
}

let writeCount = 0;

/** A fresh name below the writes directory, so a poll of the store can only see this write. */
function writeTarget(root: string, name: string): string {
  mkdirSync(join(root, WRITES_DIR), { recursive: true });
  return `${WRITES_DIR}/${name}-${process.pid}-${++writeCount}.bin`;
}

/** Reads a local file once, untimed, so a write job reads its source from RAM. */
function intoPageCache(path: string): void {
  spawnSync('sh', ['-c', 'cat -- "$1" >/dev/null', 'sh', path]);
}

/** Waits until `path` (below the tree's root) is in the store with `size` bytes. */
async function untilInStore(context: JobContext, path: string, size: number): Promise<void> {
  const deadline = performance.now() + context.shape.maxJobSeconds * 1000;
  for (;;) {
    const info = await context.store.head(key(context, path));
    if (info?.size === size) return;
    if (performance.now() > deadline) throw new Error(`${path} was not in the store with ${size} bytes ${context.shape.maxJobSeconds}s after it was written (${info ? `${info.size} bytes` : 'absent'})`);
    await sleep(STORE_POLL_MS);
  }
}

/**
 * Runs `commands` at once, each writing one file into the mount; MB/s of all their bytes, from
 * the start until every file is in the store.
 */
async function timedWrites(context: JobContext, writes: Array<{ command: string[]; path: string; size: number }>): Promise<number> {
  const start = performance.now();
  await Promise.all(writes.map(({ command: [command, ...args] }) => run(command, args, { timeoutMs: timeoutMs(context) })));
  await Promise.all(writes.map(({ path, size }) => untilInStore(context, path, size)));
  const seconds = (performance.now() - start) / 1000;
  return writes.reduce((sum, write) => sum + write.size, 0) / MB / seconds;
}

/** Local files the write jobs copy into the mount: the large object, or four image-sized ones. */
function writeSources(context: JobContext, writers: number): Array<{ path: string; size: number }> {
  if (writers === 1) return [{ path: BIG_FILE, size: context.shape.bigBytes }];
  return Array.from({ length: writers }, (_, i) => ({ path: imagePath((i % context.shape.imageCount) + 1), size: context.shape.imageBytes }));
}

function writeJob(name: JobName, title: string, writers: number): Job {
  return {
    name,
    title,
    unit: 'MB/s',
    higherIsBetter: true,
    phases: ['cold'],
    local: false,
    async measureTree(root, context) {
      const writes = writeSources(context, writers).map((source) => {
        const from = join(context.localRoot, source.path);
        intoPageCache(from);
        const path = writeTarget(root, name);
        return { command: ['dd', `if=${from}`, `of=${join(root, path)}`, 'bs=1M', 'status=none'], path, size: source.size };
      });
      return timedWrites(context, writes);
    },
    async measureSdk(context) {
      const sources = writeSources(context, writers);
      for (const source of sources) intoPageCache(join(context.localRoot, source.path));
      const start = performance.now();
      await Promise.all(sources.map((source, i) => uploadFile(context.store, key(context, `${WRITES_DIR}/${name}-sdk-${i}.bin`), join(context.localRoot, source.path), source.size)));
      return sources.reduce((sum, s) => sum + s.size, 0) / MB / ((performance.now() - start) / 1000);
    },
    async measureCurl(context) {
      const sources = writeSources(context, writers);
      for (const source of sources) intoPageCache(join(context.localRoot, source.path));
      const transfers = sources.map((source, i): CurlTransfer => ({ key: key(context, `${WRITES_DIR}/${name}-curl-${i}.bin`), upload: join(context.localRoot, source.path) }));
      const result = await curlTransfers(context.remote, transfers, writers, timeoutMs(context));
      return result.bytes / MB / result.seconds;
    },
  };
}

/** Seconds to GET a whole object at the best rate a client reached. */
function secondsAt(context: JobContext, path: string, megabytesPerSecond: number): number {
  return sizeOf(context, path) / MB / megabytesPerSecond;
}

export const JOBS: Record<JobName, Job> = {
  'seq-read': fioJob('seq-read', 'Sequential read of the large object, 1 job', 'MB/s', {
    measureSdk: (context) => sdkSequential(context, BIG_FILE),
    measureCurl: (context) => curlSequential(context, BIG_FILE),
  }),
  'seq-read-4jobs': fioJob('seq-read-4jobs', 'Sequential read of the large object, 4 jobs', 'MB/s', {
    measureSdk: (context) => sdkSequential(context, BIG_FILE),
    measureCurl: (context) => curlSequential(context, BIG_FILE),
  }),
  'rand-read-4k': randomReadJob('rand-read-4k', 'Random 4 KiB reads, 4 jobs', 4096, 'IOPS'),
  'rand-read-1m': randomReadJob('rand-read-1m', 'Random 1 MiB reads, 4 jobs', MiB, 'MB/s'),
  'small-files': fioJob('small-files', 'Reading every small object (4-64 KiB), one after another', 'MB/s', {
    async measureSdk(context) {
      const small = smallFiles(context);
      const result = await parallel(small.length, 1, (i) => sdkGet(context, small[i].path, 0, small[i].size), context.shape.maxJobSeconds * 1000);
      return result.bytes / MB / result.seconds;
    },
    async measureCurl(context) {
      const result = await curlTransfers(context.remote, smallFiles(context).map((f) => ({ key: key(context, f.path) })), 1, timeoutMs(context));
      return result.bytes / MB / result.seconds;
    },
  }),
  'first-byte': {
    name: 'first-byte',
    title: 'Time to first byte of a large object (open + 4 KiB read), median',
    unit: 'ms',
    higherIsBetter: false,
    phases: PHASES,
    local: true,
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
    async measureSdk(context) {
      const times: number[] = [];
      for (const path of imagePaths(context)) {
        const start = performance.now();
        await sdkGet(context, path, 0, 4096);
        times.push(performance.now() - start);
      }
      return median(times);
    },
    async measureCurl(context) {
      const transfers = imagePaths(context).map((path): CurlTransfer => ({ key: key(context, path), range: [0, 4095] }));
      const result = await curlTransfers(context.remote, transfers, 1, timeoutMs(context));
      return median(result.times) * 1000;
    },
  },
  'list-dir': {
    name: 'list-dir',
    title: '`ls -l` and `stat` of every entry of the small-object directory',
    unit: 's',
    higherIsBetter: false,
    phases: PHASES,
    local: true,
    async measureTree(root) {
      const start = performance.now();
      const result = spawnSync('sh', ['-c', 'ls -l "$1" >/dev/null && stat -- "$1"/* >/dev/null', 'sh', join(root, SMALL_DIR)], { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`ls/stat failed: ${(result.stderr || result.error?.message || '').trim().split('\n')[0]}`);
      return (performance.now() - start) / 1000;
    },
    async measureSdk(context) {
      const start = performance.now();
      let continuationToken: string | undefined;
      do {
        const page = await context.store.list(key(context, `${SMALL_DIR}/`), { delimiter: '/', continuationToken });
        continuationToken = page.continuationToken;
      } while (continuationToken);
      return (performance.now() - start) / 1000;
    },
  },
  'qemu-convert': {
    name: 'qemu-convert',
    title: '`qemu-img convert -O qcow2` of the VM template to local disk (deploying a VM)',
    unit: 's',
    higherIsBetter: false,
    phases: PHASES,
    local: true,
    async measureTree(root, context) {
      mkdirSync(context.scratchDir, { recursive: true });
      const out = join(context.scratchDir, 'deployed.qcow2');
      try {
        const start = performance.now();
        await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'qcow2', join(root, VM_TEMPLATE), out], { timeoutMs: timeoutMs(context) });
        return (performance.now() - start) / 1000;
      } finally {
        rmSync(out, { force: true });
      }
    },
    // The store's part of a deployment: reading the template's bytes, at the best rate of each client.
    measureSdk: async (context) => secondsAt(context, VM_TEMPLATE, await sdkSequential(context, VM_TEMPLATE)),
    measureCurl: async (context) => secondsAt(context, VM_TEMPLATE, await curlSequential(context, VM_TEMPLATE)),
  },
  'seq-write': writeJob('seq-write', 'Sequential write of a large file into the mount (dd), until it is in the store', 1),
  'seq-write-4jobs': writeJob('seq-write-4jobs', 'Four image-sized files written at once (dd), until all are in the store', 4),
  'copy-in-mount': {
    name: 'copy-in-mount',
    title: '`cp` of the large object to a new name in the mount, until the copy is in the store (warm: the source staged)',
    unit: 'MB/s',
    higherIsBetter: true,
    phases: ['cold', 'warm'],
    local: false,
    async measureTree(root, context) {
      const path = writeTarget(root, 'copy');
      const command = ['cp', join(root, BIG_FILE), join(root, path)];
      return timedWrites(context, [{ command, path, size: context.shape.bigBytes }]);
    },
    // The best a copy can do: the store copies the object itself.
    async measureSdk(context) {
      const source = await context.store.head(key(context, BIG_FILE));
      if (!source) throw new Error(`${key(context, BIG_FILE)} is missing from the store`);
      const start = performance.now();
      await context.store.copy(source, key(context, `${WRITES_DIR}/copy-sdk.bin`));
      return context.shape.bigBytes / MB / ((performance.now() - start) / 1000);
    },
  },
};

/** Deletes everything the write jobs left in the store. */
export async function clearWrites(context: Pick<JobContext, 'store' | 'remote'>): Promise<void> {
  const keys: string[] = [];
  let continuationToken: string | undefined;
  do {
    const page = await context.store.list(`${context.remote.prefix}${WRITES_DIR}/`, { continuationToken });
    keys.push(...page.objects.map((o) => o.key));
    continuationToken = page.continuationToken;
  } while (continuationToken);
  if (keys.length) await context.store.deleteMany(keys);
}
