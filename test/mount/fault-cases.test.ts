/**
 * The read path's answers to single faults of the store, one case each: where a broken body
 * resumes and what stays reserved, bypass reads, a 200 for a range, an object replaced mid-read.
 */
import { open, readFile } from 'node:fs/promises';
import t from 'tap';
import { dropPageCache } from '../helpers/cli';
import { startFaultProxy, type Fault } from '../helpers/fault-proxy';
import { cacheStatus, mountThrough, noLedgerTrouble, readAll, seedFiles, settledStatus, wrongBytes } from '../helpers/fault-reads';
import { randomData } from '../helpers/files';
import { engineTest } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
/** Each read of a block not staged fails only after the store's attempts (about 2 s). */
const READS_AFTER_REPLACE = 4;

engineTest(t, 'a body that breaks off resumes at the first byte not yet written; reservations are given back once', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(6 * MiB + 5);
  await s3.store.put('vm/disk.img', data);
  const mount = await mountThrough(t, s3, proxy, engine);
  // A clean FIN after 30% of the first body: those bytes always arrive, then the body ends early.
  await proxy.set([{ fault: { kind: 'truncate', at: 0.3, declared: 'full' }, count: 2 }]);
  t.equal(wrongBytes(await readFile(mount.path('vm/disk.img')), data), 0, 'the file reads back whole and right');
  t.equal(await proxy.injected('truncate'), 2, 'two bodies were cut');
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

engineTest(t, 'an object replaced in the store mid-read: the open file returns its old bytes or EIO, never new ones', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(24 * MiB);
  await s3.store.put('replaced/honours-if-match', data);
  await s3.store.put('replaced/ignores-if-match', data);
  const mount = await mountThrough(t, s3, proxy, engine);
  const cases: Array<[string, Fault[]]> = [
    ['a server that honours If-Match (412)', [{ kind: 'replace' }]],
    ['a server that ignores If-Match (new ETag)', [{ kind: 'replace' }, { kind: 'unconditional' }]],
  ];
  for (const [what, faults] of cases) {
    const key = what.includes('honours') ? 'replaced/honours-if-match' : 'replaced/ignores-if-match';
    const file = await open(mount.path(key), 'r');
    let wrong = 0;
    let failed = 0;
    try {
      // Away from the start, so no sequential readahead stages the whole file before the change.
      const first = Buffer.alloc(64 * 1024);
      await file.read(first, 0, first.length, 5 * MiB);
      wrong += wrongBytes(first, data.subarray(5 * MiB, 5 * MiB + first.length));
      await proxy.set(faults.map((fault, i) => ({ fault, count: i === 0 ? 1 : undefined, match: { keyPrefix: key } })));
      // Blocks far from the one read: neither staged nor in flight when the object changed.
      for (let i = 0; i < READS_AFTER_REPLACE; i++) {
        const position = 12 * MiB + i * 2 * MiB + 4097 * i;
        const buffer = Buffer.alloc(64 * 1024);
        try {
          const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
          wrong += wrongBytes(buffer.subarray(0, bytesRead), data.subarray(position, position + buffer.length));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EIO') throw err;
          failed++;
        }
      }
    } finally {
      await file.close();
    }
    t.equal(wrong, 0, `${what}: no byte of the new version`);
    t.equal(failed, READS_AFTER_REPLACE, `${what}: reads of blocks not staged fail with EIO`);
    t.equal((await proxy.stats()).replaced.length, 1, `${what}: the object was replaced`);
  }
});
