import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
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

async function setup(t: any, options: { capacity?: string; dir?: string; store?: MemoryStore; blockSize?: string } = {}) {
  const store = options.store ?? new MemoryStore();
  const dir = options.dir ?? t.testdir({});
  // Capacities below one block, which the command line refuses, are set directly: the cache must still cope.
  const config = { ...buildCacheConfig({ 'cache-dir': dir, 'block-size': options.blockSize ?? '64KiB' }), capacityBytes: parseSize(options.capacity ?? '64MiB') };
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

/** Stages `size` bytes of a new object in a cache that is then closed; returns its record. */
async function stageAndClose(t: any, size: number) {
  const first = await setup(t);
  const object = await putObject(first.store, 'disk.img', size);
  const handle = await first.cache.open(object.version);
  await readAll(first.cache, handle, size);
  first.cache.release(handle);
  await first.cache.close();
  const index = CacheIndex.open(first.dir);
  const [record] = index.entries();
  await index.close();
  return { ...first, ...object, record, path: join(first.dir, 'staged', record.file.slice(0, 2), record.file) };
}

t.test('a staging file cut short on disk loses the blocks past its end, which are fetched again', async (t) => {
  const { dir, store, data, version, record, path } = await stageAndClose(t, 300 * KiB + 5);
  t.equal(record.stagedBytes, data.length, 'every block was staged');
  truncateSync(path, 100 * KiB);

  const second = await setup(t, { dir, store });
  t.equal(second.cache.stats().stagedBytes, 64 * KiB, 'only the block wholly inside the file stays staged');
  t.equal(statSync(path).size, data.length, 'the file is sparse at the object size again');
  const gets = store.getCount;
  const handle = await second.cache.open(version);
  t.same(await readAll(second.cache, handle, data.length), data, 'the bytes are the object\'s, not zeros');
  t.ok(store.getCount > gets, 'the lost blocks were fetched again');
  second.cache.release(handle);
  await second.cache.close();
});

t.test('a staging file longer than its object is cut to the object size and keeps its blocks', async (t) => {
  const { dir, store, data, version, path } = await stageAndClose(t, 100 * KiB);
  truncateSync(path, 200 * KiB);
  const second = await setup(t, { dir, store });
  t.equal(statSync(path).size, data.length, 'cut to the object size');
  const gets = store.getCount;
  const handle = await second.cache.open(version);
  t.same(await readAll(second.cache, handle, data.length), data, 'bytes match');
  t.equal(store.getCount, gets, 'without a GET');
  second.cache.release(handle);
  await second.cache.close();
});

for (const damage of ['truncated', 'garbage', 'empty'] as const) {
  t.test(`a ${damage} index is moved aside and the cache starts empty`, async (t) => {
    const { dir, store, data, version } = await stageAndClose(t, 200 * KiB);
    const dataFile = join(dir, 'index', 'data.mdb');
    if (damage === 'truncated') truncateSync(dataFile, 8 * KiB);
    if (damage === 'garbage') writeFileSync(dataFile, randomData(statSync(dataFile).size));
    if (damage === 'empty') truncateSync(dataFile, 0);
    // A file named as older versions named written data: nothing may tell it is only cache.
    const legacy = 'ab'.repeat(20);
    mkdirSync(join(dir, 'staged', 'ab'), { recursive: true });
    writeFileSync(join(dir, 'staged', 'ab', legacy), 'written, maybe not uploaded');

    const second = await setup(t, { dir, store });
    const aside = readdirSync(dir).filter((name) => name.startsWith('index.damaged-'));
    t.equal(aside.length, 1, `the damaged index was moved aside (${aside[0]})`);
    t.ok(existsSync(join(dir, aside[0], 'data.mdb')), 'with its data file');
    t.equal(second.cache.stats().entryCount, 0, 'nothing is adopted from it');
    t.same(readdirSync(join(dir, 'staged')).flatMap((shard) => readdirSync(join(dir, 'staged', shard))), [], 'its staging files are gone');
    t.ok(existsSync(join(dir, aside[0], 'staged', legacy)), 'a file that may hold written data is kept beside the index');
    const handle = await second.cache.open(version);
    t.same(await readAll(second.cache, handle, data.length), data, 'reads fetch the object again');
    second.cache.release(handle);
    await second.cache.close();
    const reopened = CacheIndex.open(dir);
    t.equal(reopened.entries().length, 1, 'the new index records what was staged since');
    await reopened.close();
  });
}

t.test('a record that does not hold together is dropped, and its file deleted', async (t) => {
  const { dir, store, record, path } = await stageAndClose(t, 64 * KiB);
  const index = CacheIndex.open(dir);
  await index.put({ ...record, size: 'large' as unknown as number });
  await index.close();
  const second = await setup(t, { dir, store });
  t.equal(second.cache.stats().entryCount, 0, 'the record is dropped');
  t.notOk(existsSync(path), 'its staging file is deleted as an orphan');
  await second.cache.close();
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

  const shard = readdirSync(join(dir, 'staged')).find((name) => readdirSync(join(dir, 'staged', name)).length > 0)!;
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

t.test('the first open of a large object fetches the head of block 0; probes of it stay local, across restarts', async (t) => {
  const MiB = 1024 * KiB;
  const head = 128 * KiB;
  const dir = t.testdir({});
  const { store, cache } = await setup(t, { dir, blockSize: '1MiB' });
  const { data, version } = await putObject(store, 'image.qcow2', 3 * MiB + 5);
  const read = async (c: StagingCache, position: number, length: number) => {
    const handle = await c.open(version, true);
    const buffer = Buffer.alloc(length);
    t.equal(await c.read(handle, buffer, length, position), length);
    c.release(handle);
    return buffer;
  };

  t.same(await read(cache, 0, 4096), data.subarray(0, 4096), 'a header probe reads the object’s bytes');
  t.same(store.rangesGot, [[0, head]], 'with one GET, of the head alone');
  t.equal(cache.stats().counters.misses, 1, 'the read that waited for it is a miss');
  // A read of 128 KiB at 0 would start readahead (a stream's first read); the head's last 4 KiB do not.
  t.same(await read(cache, head - 4096, 4096), data.subarray(head - 4096, head), 'a second open reads the end of the head');
  t.equal(store.getCount, 1, 'with no GET of its own');
  t.equal(cache.stats().stagedBytes, head, 'the head is staged');
  await cache.close();

  const reopened = await setup(t, { dir, store, blockSize: '1MiB' });
  t.same(await read(reopened.cache, 0, 4096), data.subarray(0, 4096), 'after a restart, the head is read from disk');
  t.equal(store.getCount, 1, 'with no GET');
  t.equal(reopened.cache.stats().counters.hits, 1, 'a hit');
  t.same(await read(reopened.cache, 200 * KiB, 4096), data.subarray(200 * KiB, 204 * KiB), 'a read past the head gets the object’s bytes');
  t.same(store.rangesGot[1], [head, MiB], 'by fetching the rest of block 0, after the head');
  t.same(await read(reopened.cache, MiB - 4096, 4096), data.subarray(MiB - 4096, MiB), 'which is then staged');
  t.equal(reopened.cache.stats().stagedBytes, MiB, 'the head counted once, as part of its block');
  await reopened.cache.close();
  const index = CacheIndex.open(dir);
  const [record] = index.entries();
  await index.close();
  t.same({ stagedBytes: record.stagedBytes, head: record.head }, { stagedBytes: MiB, head: undefined }, 'in the index too, without the head');

  const again = await setup(t, { dir, store, blockSize: '1MiB' });
  t.equal(again.cache.stats().stagedBytes, MiB, 'and so after a restart');
  t.same(await again.cache.scrub(version), { entries: 1, checked: 1, recorded: 0, bad: 0 }, 'its CRC, taken on from the head’s, matches its bytes');
  t.same(await read(again.cache, 0, 4096), data.subarray(0, 4096), 'a probe reads the staged block');
  t.equal(store.getCount, 2, 'with no GET');
  await again.cache.close();
});

t.test('a staged head whose bytes changed on disk is dropped and fetched again', async (t) => {
  const MiB = 1024 * KiB;
  const dir = t.testdir({});
  const { store, cache } = await setup(t, { dir, blockSize: '1MiB' });
  const { data, version } = await putObject(store, 'damaged.qcow2', 2 * MiB);
  let handle = await cache.open(version, true);
  await cache.read(handle, Buffer.alloc(4096), 4096, 124 * KiB);
  cache.release(handle);
  await cache.close();

  const index = CacheIndex.open(dir);
  const [record] = index.entries();
  await index.close();
  t.same(record.head && record.head.bytes, 128 * KiB, 'the head is in the index');
  const path = join(dir, 'staged', record.file.slice(0, 2), record.file);
  const damaged = readFileSync(path);
  damaged[100] ^= 1;
  writeFileSync(path, damaged);

  const reopened = await setup(t, { dir, store, blockSize: '1MiB' });
  handle = await reopened.cache.open(version, true);
  const buffer = Buffer.alloc(4096);
  await reopened.cache.read(handle, buffer, 4096, 0);
  t.same(buffer, data.subarray(0, 4096), 'the read gets the object’s bytes, not the damaged ones');
  t.equal(reopened.cache.stats().counters.badBlocks, 1, 'the bad head is counted');
  t.equal(store.getCount, 2, 'and fetched again');
  reopened.cache.release(handle);
  await reopened.cache.close();
});
