/**
 * The model-based random exerciser (exerciser.ts) on a real mount, through the kernel: 20,000
 * operations per engine over fixed seeds, each file compared with its shadow on every read and
 * with the store after every close of a writer, fsync and remount.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { Test } from 'tap';
import { exercise, type ExerciseTarget } from './exerciser';
import { mountS3, tempDir, type EngineName, type TestMount } from './mount';
import { startS3, type TestS3 } from './s3';
import { objectBytes } from './s3-read';

const KiB = 1024;
const OPERATIONS_PER_SEED = 5000;

function mountTarget(s3: TestS3, mountAgain: () => Promise<TestMount>, first: TestMount): ExerciseTarget & { unmount(): Promise<void> } {
  let mount = first;
  const handles = new Map<number, FileHandle>();
  let next = 1;
  const handle = (id: number) => handles.get(id)!;
  return {
    async open(name, truncate) {
      const file = await open(mount.path(name), truncate ? 'w+' : 'a+').then(async (appender) => {
        // 'a+' creates without truncating; positional writes need a descriptor without O_APPEND.
        await appender.close();
        return open(mount.path(name), 'r+');
      });
      handles.set(next, file);
      return next++;
    },
    async read(id, position, length) {
      const buffer = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle(id).read(buffer, done, length - done, position + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return buffer.subarray(0, done);
    },
    async write(id, position, data) {
      await handle(id).write(data, 0, data.length, position);
    },
    truncate: (id, size) => handle(id).truncate(size),
    fsync: (id) => handle(id).sync(),
    async close(id) {
      const file = handle(id);
      handles.delete(id);
      await file.close();
    },
    async remount() {
      await mount.unmount();
      mount = await mountAgain();
    },
    stored: (name) => objectBytes(s3, name),
    unmount: () => mount.unmount(),
  };
}

/** 5,000 operations per seed on one engine; the test files split the seeds, so they run side by side. */
export async function exerciseMount(t: Test, engine: EngineName, seeds: number[]): Promise<void> {
  const s3 = await startS3(t);
  const cacheDir = tempDir(t, 'cache');
  const mountAgain = () => mountS3(t, s3, { engine, cacheDir });
  for (const seed of seeds) {
    const target = mountTarget(s3, mountAgain, await mountAgain());
    const report = await exercise(target, {
      seed,
      operations: OPERATIONS_PER_SEED,
      files: 2,
      maxSize: 512 * KiB,
      maxWrite: 96 * KiB,
      remountEvery: 2500,
    });
    await target.unmount();
    t.same(report.failures, [], `seed ${seed}: ${JSON.stringify({ ...report, failures: undefined })}`);
  }
}
