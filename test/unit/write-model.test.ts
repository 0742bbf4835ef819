/**
 * The filesystem's write path against a reference model, without FUSE: the exerciser drives
 * Filesystem directly over the in-memory store and a real staging cache on disk, as
 * mountpoint-s3's reference tests do. Files grow past the single-PUT size, so multipart uploads,
 * parts copied from the base object and (in a cache too small for them) parts dropped after
 * upload all take turns.
 */
import { constants } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { StagingCache } from '../../src/cache/staging-cache';
import { buildCacheConfig } from '../../src/config';
import { FsError } from '../../src/errors';
import { Filesystem } from '../../src/fs/filesystem';
import { loadNativeAddon } from '../../src/native/addon';
import { Namespace } from '../../src/namespace/namespace';
import { exercise, type ExerciseOptions, type ExerciseTarget } from '../helpers/exerciser';
import { MemoryStore } from '../helpers/memory-store';

const MiB = 1024 * 1024;

interface Mounted {
  fs: Filesystem;
  cache: StagingCache;
}

async function build(dir: string, store: MemoryStore, cacheSize: string): Promise<Mounted> {
  const config = buildCacheConfig({ 'cache-dir': join(dir, 'cache'), 'cache-size': cacheSize, 'block-size': '1MiB' });
  const cache = await StagingCache.open({ config, store });
  const namespace = new Namespace({ store, prefix: '', ttlMs: 60_000 });
  const addon = loadNativeAddon();
  const fs = new Filesystem({
    namespace,
    cache,
    store,
    bucket: 'b',
    prefix: '',
    uid: 0,
    gid: 0,
    readOnly: false,
    writeDir: join(dir, 'pending'),
    punchHole: 'addon' in addon ? (fd, offset, length) => addon.addon.punchHole(fd, offset, length) : undefined,
  });
  await fs.recover();
  return { fs, cache };
}

function target(dir: string, store: MemoryStore, cacheSize: string, mounted: Mounted): ExerciseTarget {
  const paths = new Map<number, string>();
  return {
    async open(name, truncate) {
      const path = `/${name}`;
      let fh: number;
      try {
        fh = await mounted.fs.open(path, constants.O_RDWR | (truncate ? constants.O_TRUNC : 0));
      } catch (err) {
        if (!(err instanceof FsError && err.code === 'ENOENT')) throw err;
        fh = (await mounted.fs.create(path, 0o644, constants.O_RDWR)).fh;
      }
      paths.set(fh, path);
      return fh;
    },
    async read(fh, position, length) {
      const buffer = Buffer.alloc(length);
      return buffer.subarray(0, await mounted.fs.read(fh, buffer, length, position));
    },
    async write(fh, position, data) {
      await mounted.fs.write(fh, data, position);
    },
    async truncate(fh, size) {
      await mounted.fs.setattr(paths.get(fh)!, { size }, fh);
    },
    fsync: (fh) => mounted.fs.fsync(fh),
    async close(fh) {
      // As the kernel does: FLUSH (which reports upload failures), then RELEASE in any case.
      try {
        await mounted.fs.flush(fh);
      } finally {
        paths.delete(fh);
        await mounted.fs.release(fh);
      }
    },
    async remount() {
      await mounted.fs.drain();
      await mounted.cache.close();
      Object.assign(mounted, await build(dir, store, cacheSize));
    },
    async stored(name) {
      return store.objects.get(name)?.body;
    },
  };
}

async function run(t: Test, options: ExerciseOptions & { cacheSize: string }): Promise<void> {
  const dir = t.testdir({});
  const store = new MemoryStore();
  const mounted = await build(dir, store, options.cacheSize);
  const report = await exercise(target(dir, store, options.cacheSize, mounted), options);
  await mounted.fs.drain();
  await mounted.cache.close();
  t.same(report.failures, [], `seed ${options.seed}: ${JSON.stringify({ ...report, failures: undefined })}`);
  t.ok(report.writes > options.operations / 4 && report.storeChecks > options.operations / 10, 'the run wrote, closed and checked the store');
}

const roomy = { operations: 4000, files: 2, maxSize: 20 * MiB, maxWrite: 2 * MiB, remountEvery: 1500, cacheSize: '512MiB' };

for (const seed of [1, 2]) {
  void t.test(`random writes, reads, truncates, reopens, fsyncs and remounts match the model (seed ${seed})`, (t) => run(t, { ...roomy, seed }));
}

void t.test('the same in a cache smaller than the files: parts are dropped and copied back, or writes get ENOSPC', (t) =>
  run(t, {
    ...roomy,
    seed: 3,
    files: 3,
    cacheSize: '24MiB',
    allowNoSpace: true,
    unreadable: (err) => err instanceof FsError && err.code === 'EIO' && /uploaded and dropped/.test(err.message),
  }),
);
