/**
 * The read path's answers to single faults of the store, one case each: where a broken body
 * resumes and what stays reserved, bypass reads, a 200 for a range.
 */
import { open, readFile } from 'node:fs/promises';
import t from 'tap';
import { dropPageCache } from '../helpers/cli';
import { startFaultProxy } from '../helpers/fault-proxy';
import { cacheStatus, mountThrough, noLedgerTrouble, readAll, seedFiles, settledStatus, wrongBytes } from '../helpers/fault-reads';
import { randomData } from '../helpers/files';
import { engineTest } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;

engineTest(t, 'a body that breaks off resumes at the first byte not yet written; reservations are given back once', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(12 * MiB + 5);
  await s3.store.put('vm/disk.img', data);
  const mount = await mountThrough(t, s3, proxy, engine);
  // Readahead GETs of several blocks, cut by a clean FIN after 60%: the first block of each is
  // written, the bytes after it always arrive, then the body ends early.
  await proxy.set([{ fault: { kind: 'truncate', at: 0.6, declared: 'full' }, match: { minLength: 2 * MiB }, count: 2 }]);
  t.equal(wrongBytes(await readFile(mount.path('vm/disk.img')), data), 0, 'the file reads back whole and right');
  t.equal(await proxy.injected('truncate'), 2, 'two bodies of several blocks were cut');
  const starts = s3.gets('vm/disk.img').map((get) => Number(/^bytes=(\d+)-/.exec(get.range ?? '')?.[1]));
  t.equal(new Set(starts).size, starts.length, `no GET starts where another started (${starts.join(', ')}): nothing is fetched twice`);
  t.ok(starts.some((start) => start % MiB !== 0), 'a resumed GET starts mid-block, at the first byte not delivered');
  const status = await settledStatus(mount);
  t.equal(status.reservedBytes, 0, 'nothing stays reserved');
  t.equal(status.stagedBytes, data.length, 'staged bytes are the file, counted once');
  noLedgerTrouble(t, mount);
});

engineTest(t, 'reads that bypass a full cache get the whole range, or fail; never a short body', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const files = await seedFiles(s3, 'bypass', [MiB + 1, 3 * MiB, 9 * MiB + 7]);
  // Smaller than one block: no fetch can reserve space, every read of a block goes straight to the store.
  const mount = await mountThrough(t, s3, proxy, engine, ['--cache-size', '64KiB']);
  await proxy.set([
    { fault: { kind: 'truncate', declared: 'sent' }, count: 2, seed: 1 },
    { fault: { kind: 'truncate', declared: 'full' }, count: 2, seed: 2 },
    { fault: { kind: 'reset' }, count: 2, seed: 3 },
  ]);
  const tally = await readAll(mount, files, 5);
  t.equal(tally.wrong, 0, 'no wrong byte');
  t.same(tally.errors, [], 'no read failed');
  t.equal(await proxy.injected(), 6, 'every fault was injected');
  t.ok((await cacheStatus(mount)).counters.bypassedReads > 0, 'the reads bypassed the cache');
});

engineTest(t, 'a 200 with the whole object for a ranged GET is never taken for the range', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(10 * MiB);
  await s3.store.put('iso/image.iso', data);
  const mount = await mountThrough(t, s3, proxy, engine);
  const range = data.subarray(8 * MiB, 9 * MiB);
  await proxy.set([{ fault: { kind: 'whole-object' }, count: 2 }]);
  const file = await open(mount.path('iso/image.iso'), 'r');
  try {
    const buffer = Buffer.alloc(MiB);
    const { bytesRead } = await file.read(buffer, 0, MiB, 8 * MiB);
    t.equal(wrongBytes(buffer.subarray(0, bytesRead), range), 0, 'MiB 8 reads as MiB 8');
  } finally {
    await file.close();
  }
  t.equal(await proxy.injected('whole-object'), 2, 'the server sent the whole object twice');
  await proxy.clear();
  dropPageCache();
  const again = await readFile(mount.path('iso/image.iso'));
  t.equal(wrongBytes(again, data), 0, 'and the whole file reads right afterwards, from what was staged and fetched');
});
