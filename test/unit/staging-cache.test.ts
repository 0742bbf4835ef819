import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CacheIndex } from '../../src/cache/cache-index';
import { StagingCache, type CacheHandle } from '../../src/cache/staging-cache';
import { buildCacheConfig } from '../../src/config';
import { StoreError } from '../../src/errors';
import { parseSize } from '../../src/units';
import { MemoryStore } from '../helpers/memory-store';
import { randomData } from '../helpers/files';

const KiB = 1024;

async function setup(t: any, options: { capacity?: string; dir?: string; store?: MemoryStore } = {}) {
  const store = options.store ?? new MemoryStore();
  const dir = options.dir ?? t.testdir({});
  // Capacities below one block, which the command line refuses, are set directly: the cache must still cope.
  const config = { ...buildCacheConfig({ 'cache-dir': dir, 'block-size': '64KiB' }), capacityBytes: parseSize(options.capacity ?? '64MiB') };
  const cache = await StagingCache.open({ config, store });
  return { store, dir, cache, config };
}

async function putObject(store: MemoryStore, key: string, size: number) {
  const data = randomData(size);
  const info = await store.put(key, data);
  return { data, version: { bucket: 'b', key, etag: info.etag, size, mtime: 0 } };
}

async function readAll(cache: StagingCache, handle: CacheHandle, size: number, chunk = 16 * KiB): Promise<Buffer> {
  const out = Buffer.alloc(size);
  for (let position = 0; position < size; position += chunk) {
    await cache.read(handle, out.subarray(position), Math.min(chunk, size - position), position);
  }
  return out;
}

t.test('reads fault blocks once, then serve from disk', async (t) => {
  const { store, cache } = await setup(t);
  const { data, version } = await putObject(store, 'img', 300 * KiB + 5);
  const handle = await cache.open(version);
  t.same(await readAll(cache, handle, data.length), data, 'bytes match');
  const gets = store.getCount;
  t.same(await readAll(cache, handle, data.length), data, 'again');
  t.equal(store.getCount, gets, 'the second read issued no GET');
  const stats = cache.stats();
  t.equal(stats.stagedBytes, data.length, 'every byte is staged');
  t.ok(stats.counters.hits > 0 && stats.counters.misses > 0);
  cache.release(handle);
  await cache.close();
});

t.test('concurrent readers of one block share one GET', async (t) => {
  const { store, cache } = await setup(t);
  const { data, version } = await putObject(store, 'shared', 64 * KiB);
  store.getDelayMs = 50;
  const handles = await Promise.all(Array.from({ length: 8 }, () => cache.open(version)));
  const buffers = await Promise.all(
    handles.map(async (handle, i) => {
      const buffer = Buffer.alloc(1000);
      await cache.read(handle, buffer, 1000, i * 4000 + 17);
      return buffer;
    }),
  );
  t.equal(store.getCount, 1, 'one GET for eight readers');
  buffers.forEach((buffer, i) => t.same(buffer, data.subarray(i * 4000 + 17, i * 4000 + 1017)));
  await cache.close();
});

t.test('a version changed in the store fails the read instead of mixing versions', async (t) => {
  const { store, cache } = await setup(t);
  const { version } = await putObject(store, 'moving', 200 * KiB);
  const handle = await cache.open(version);
  await cache.read(handle, Buffer.alloc(10), 10, 0);
  await store.put('moving', randomData(200 * KiB));
  // Block 3 was neither read nor prefetched: fetching it now meets the new version.
  const failure = await cache.read(handle, Buffer.alloc(10), 10, 195 * KiB).catch((err: unknown) => err);
  t.match(failure, { kind: 'PreconditionFailed' });
  await cache.close();
});

t.test('store errors fail the read; the cache stays usable', async (t) => {
  const { store, cache } = await setup(t);
  const { data, version } = await putObject(store, 'flaky', 64 * KiB);
  store.failGets = new StoreError('AccessDenied', 'denied');
  const handle = await cache.open(version);
  const failure = await cache.read(handle, Buffer.alloc(10), 10, 0).catch((err: unknown) => err);
  t.match(failure, { kind: 'AccessDenied' });
  store.failGets = undefined;
  const buffer = Buffer.alloc(10);
  await cache.read(handle, buffer, 10, 0);
  t.same(buffer, data.subarray(0, 10), 'the next read succeeds');
  await cache.close();
});

t.test('a cache too small for a block serves reads by bypass', async (t) => {
  const { store, cache } = await setup(t, { capacity: '32KiB' });
  const { data, version } = await putObject(store, 'huge', 256 * KiB);
  const handle = await cache.open(version);
  t.same(await readAll(cache, handle, data.length), data, 'bytes match');
  const stats = cache.stats();
  t.equal(stats.stagedBytes + stats.reservedBytes, 0, 'nothing staged');
  t.ok(stats.counters.bypassedReads > 0, 'bypassed reads are counted');
  await cache.close();
});

t.test('the index survives a restart and is reconciled with the disk', async (t) => {
  const first = await setup(t);
  const { data, version } = await putObject(first.store, 'warm', 128 * KiB);
  const handle = await first.cache.open(version);
  await readAll(first.cache, handle, data.length);
  const lost = await putObject(first.store, 'lost', 64 * KiB);
  await readAll(first.cache, await first.cache.open(lost.version), lost.data.length);
  await first.cache.close();

  const index = CacheIndex.open(first.dir);
  const records = index.entries();
  await index.close();
  t.equal(records.length, 2, 'both entries recorded');
  const lostRecord = records.find((r) => r.key === 'lost')!;
  const staged = join(first.dir, 'staged');
  rmSync(join(staged, lostRecord.file.slice(0, 2), lostRecord.file));
  mkdirSync(join(staged, 'zz'), { recursive: true });
  writeFileSync(join(staged, 'zz', 'zz-orphan'), 'junk');

  const second = await setup(t, { dir: first.dir, store: first.store });
  t.notOk(existsSync(join(staged, 'zz', 'zz-orphan')), 'an orphan file is deleted');
  t.equal(second.cache.stats().entryCount, 1, 'a record without its file is dropped');
  const gets = first.store.getCount;
  const again = await second.cache.open(version);
  t.same(await readAll(second.cache, again, data.length), data, 'warm bytes match');
  t.equal(first.store.getCount, gets, 'and need no GET');
  await second.cache.close();
  const reopened = CacheIndex.open(first.dir);
  t.equal(reopened.entries()[0].openHandles, 0, 'open counts do not survive');
  await reopened.close();
});

t.test('a file handed over whole gets its CRCs when first read; a block damaged later is dropped and fetched again', async (t) => {
  const dir = t.testdir({});
  const { store, cache } = await setup(t, { dir });
  const { data, version } = await putObject(store, 'uploaded', 200 * KiB + 3);
  const written = join(dir, 'written');
  writeFileSync(written, data);
  t.ok(cache.adoptFile(version, written, () => true), 'adopted');
  t.same(await cache.scrub(version), { entries: 1, checked: 0, recorded: 4, bad: 0 }, 'a scrub records the CRCs the blocks lacked');
  t.same(await cache.scrub(version), { entries: 1, checked: 4, recorded: 0, bad: 0 }, 'and checks them next time');
  await cache.close();

  const shard = readdirSync(join(dir, 'staged'))[0];
  const staged = join(dir, 'staged', shard, readdirSync(join(dir, 'staged', shard))[0]);
  const damaged = readFileSync(staged);
  damaged[130 * KiB] ^= 1;
  writeFileSync(staged, damaged);

  const reopened = await setup(t, { dir, store });
  const gets = store.getCount;
  const handle = await reopened.cache.open(version);
  t.same(await readAll(reopened.cache, handle, data.length), data, 'the bytes are the object’s: the CRCs were kept in the index');
  t.equal(store.getCount, gets + 1, 'with one GET, of the damaged block');
  t.equal(reopened.cache.stats().counters.badBlocks, 1, 'which is counted');
  t.same(await reopened.cache.scrub(), { entries: 1, checked: 4, recorded: 0, bad: 0 }, 'the cache is sound again');
  reopened.cache.release(handle);
  await reopened.cache.close();
});
