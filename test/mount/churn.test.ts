/**
 * Random reads of open files while other files churn through a small cache: entries staged,
 * evicted, fetched again and bypassed, handles opened and released by the hundred. Every byte
 * read is right, and the daemon lives through it (a crash fails the test and leaves a core).
 */
import { open, readFile } from 'node:fs/promises';
import t from 'tap';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { seedFiles, wrongBytes } from '../helpers/fault-reads';
import { seeded } from '../helpers/files';
import { engineTest, mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
const CACHE_SIZE = 24 * MiB;
const RANDOM_READERS = 4;
const READS_PER_READER = 150;
const REOPENERS = 2;
const REOPENS = 40;
const CHURNERS = 3;
const CHURN_PASSES = 2;

engineTest(t, 'random reads of open files stay right while other files churn through a small cache', async (t, engine) => {
  const s3 = await startS3(t);
  const random = seeded(11);
  const big = await seedFiles(s3, 'images', [48 * MiB + 17, 40 * MiB - 3]);
  const churn = await seedFiles(s3, 'churn', Array.from({ length: 40 }, () => 64 * 1024 + Math.floor(random() * 4 * MiB)));
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', `${CACHE_SIZE}`, '--max-age', '2s', '--sweep-interval', '500ms'] });
  let wrong = 0;
  let reads = 0;
  const failures: string[] = [];
  const check = (got: Buffer, expected: Buffer) => {
    reads++;
    wrong += wrongBytes(got, expected);
  };
  const failed = (what: string, err: unknown) => failures.push(`${what}: ${(err as Error).message}`);
  const [[bigKey, bigData], [otherKey, otherData]] = [...big];

  // One handle held open for the whole test, read at random by several readers at once.
  const held = await open(mount.path(bigKey), 'r');
  const randomReader = async (seed: number) => {
    const next = seeded(seed);
    for (let i = 0; i < READS_PER_READER; i++) {
      const position = Math.floor(next() * bigData.length);
      const length = 1 + Math.floor(next() * 512 * 1024);
      const buffer = Buffer.alloc(length);
      try {
        const { bytesRead } = await held.read(buffer, 0, length, position);
        check(buffer.subarray(0, bytesRead), bigData.subarray(position, position + length));
      } catch (err) {
        failed(`read of ${bigKey} at ${position}`, err);
      }
    }
  };
  // Handles of another large file opened, read a little and released over and over.
  const reopener = async (seed: number) => {
    const next = seeded(seed);
    for (let i = 0; i < REOPENS; i++) {
      try {
        const file = await open(mount.path(otherKey), 'r');
        try {
          for (let j = 0; j < 3; j++) {
            const position = Math.floor(next() * otherData.length);
            const buffer = Buffer.alloc(64 * 1024);
            const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
            check(buffer.subarray(0, bytesRead), otherData.subarray(position, position + buffer.length));
          }
        } finally {
          await file.close();
        }
      } catch (err) {
        failed(`reopen of ${otherKey}`, err);
      }
    }
  };
  // Small files read whole, again and again: staged, evicted, staged again.
  const churner = async (seed: number) => {
    const next = seeded(seed);
    const keys = [...churn.keys()];
    for (let pass = 0; pass < CHURN_PASSES; pass++) {
      for (let i = keys.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [keys[i], keys[j]] = [keys[j], keys[i]];
      }
      for (const key of keys) {
        try {
          check(await readFile(mount.path(key)), churn.get(key)!);
        } catch (err) {
          failed(`read of ${key}`, err);
        }
      }
    }
  };
  try {
    await Promise.all([
      ...Array.from({ length: RANDOM_READERS }, (_, i) => randomReader(100 + i)),
      ...Array.from({ length: REOPENERS }, (_, i) => reopener(200 + i)),
      ...Array.from({ length: CHURNERS }, (_, i) => churner(300 + i)),
    ]);
  } finally {
    await held.close();
  }
  t.equal(wrong, 0, `no wrong byte in ${reads} reads`);
  t.same(failures, [], 'no read failed');
  t.ok(isStagefsMount(mountAt(mount.mountpoint)), 'the mount is still up');
  t.equal(mount.daemon.exitCode ?? mount.daemon.signalCode, null, 'the daemon is alive');
});
