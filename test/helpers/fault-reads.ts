/** Reading files through a mount over the fault proxy, counting wrong bytes, for the fault tests. */
import { open, readFile } from 'node:fs/promises';
import type { Test } from 'tap';
import { runCli } from './cli';
import type { FaultProxy } from './fault-proxy';
import { randomData, seeded } from './files';
import { mountS3, type EngineName, type TestMount } from './mount';
import type { TestS3 } from './s3';
import { putMany } from './seed';

/** Random reads through one handle before each file is read whole. */
const RANDOM_READS = 6;
const READERS = 4;

export interface Tally {
  files: number;
  /** Bytes returned that differ from the object's, plus bytes missing from or added to a read. */
  wrong: number;
  /** Reads that failed (EIO): allowed only where the store kept failing. */
  failed: number;
  errors: string[];
}

export function wrongBytes(got: Buffer, expected: Buffer): number {
  let wrong = Math.abs(got.length - expected.length);
  const common = Math.min(got.length, expected.length);
  for (let i = 0; i < common; i++) if (got[i] !== expected[i]) wrong++;
  return wrong;
}

export async function seedFiles(s3: TestS3, prefix: string, sizes: number[]): Promise<Map<string, Buffer>> {
  const files = new Map(sizes.map((size, i) => [`${prefix}/f${i}-${size}`, randomData(Math.floor(size))]));
  await putMany(s3.store, [...files]);
  return files;
}

/** Reads each file cold at random offsets through one handle, then whole; counts wrong bytes and failures. */
export async function readAll(mount: TestMount, files: Map<string, Buffer>, seed: number): Promise<Tally> {
  const tally: Tally = { files: 0, wrong: 0, failed: 0, errors: [] };
  const random = seeded(seed);
  const queue = [...files];
  const reader = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      const [key, data] = item;
      tally.files++;
      try {
        const file = await open(mount.path(key), 'r');
        try {
          for (let i = 0; i < RANDOM_READS; i++) {
            const position = Math.floor(random() * data.length);
            const length = 1 + Math.floor(random() * 300 * 1024);
            const buffer = Buffer.alloc(length);
            const { bytesRead } = await file.read(buffer, 0, length, position);
            tally.wrong += wrongBytes(buffer.subarray(0, bytesRead), data.subarray(position, position + length));
          }
        } finally {
          await file.close();
        }
        tally.wrong += wrongBytes(await readFile(mount.path(key)), data);
      } catch (err) {
        tally.failed++;
        tally.errors.push(`${key}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: READERS }, reader));
  return tally;
}

export interface CacheStatus {
  stagedBytes: number;
  reservedBytes: number;
  counters: Record<string, number>;
}

export async function cacheStatus(mount: TestMount): Promise<CacheStatus> {
  const { code, stdout, stderr } = await runCli(['status', '--cache-dir', mount.cacheDir, '--json']);
  if (code !== 0) throw new Error(`stagefs status: ${stderr}`);
  return JSON.parse(stdout) as CacheStatus;
}

/** The status the mount records (every 200 ms), once nothing is reserved any more or after 10 s. */
export async function settledStatus(mount: TestMount): Promise<CacheStatus> {
  for (let tries = 0; ; tries++) {
    const status = await cacheStatus(mount);
    if (status.reservedBytes === 0 || tries >= 100) return status;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export function noLedgerTrouble(t: Test, mount: TestMount): void {
  t.notMatch(mount.output(), /releasing \d+ reserved bytes|unhandled|Unhandled/, 'no accounting error or unhandled rejection in the log');
}

/** A mount whose store is the fault proxy; listings stay trusted for the whole test. */
export function mountThrough(t: Test, s3: TestS3, proxy: FaultProxy, engine: EngineName, args: string[] = []): Promise<TestMount> {
  return mountS3(t, s3, { engine, endpoint: proxy.endpoint, args: ['--metadata-ttl', '10m', ...args] });
}
