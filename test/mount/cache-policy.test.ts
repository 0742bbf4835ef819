import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { CacheIndex } from '../../src/cache/cache-index';
import { entryId } from '../../src/cache/staged-files';
import type { StatusReport } from '../../src/cli/status-command';
import { sleep } from '../../src/util/deferred';
import { dropPageCache, runCli, statusReport } from '../helpers/cli';
import { randomData, sha256, sha256File } from '../helpers/files';
import { engineTest, mountS3, tempDir } from '../helpers/mount';
import { BUCKET, startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;

function entry(report: StatusReport, key: string) {
  return report.entries.find((e) => e.key === key);
}

/** Waits for the mount's index to catch up (it records changes within a fraction of a second). */
async function settle(): Promise<void> {
  await sleep(600);
}

engineTest(t, 'stress: readers churn a small cache while one file stays open', async (t, engine) => {
  const s3 = await startS3(t);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 12; i++) files.set(`pool/vol-${i}.raw`, randomData(6 * MiB + i * 4099));
  const held = randomData(8 * MiB + 77);
  await Promise.all([...files].map(([key, data]) => s3.store.put(key, data)));
  await s3.store.put('pool/held.qcow2', held);
  const capacity = 24 * MiB;
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', '24MiB', '--block-size', '1MiB'] });

  const heldFile = await open(mount.path('pool/held.qcow2'), 'r');
  t.teardown(() => heldFile.close().catch(() => undefined));
  t.equal(sha256((await heldFile.readFile())), sha256(held), 'the held file reads whole at the start');
  const heldId = entryId(BUCKET, 'pool/held.qcow2', `"${createHash('md5').update(held).digest('hex')}"`);

  const index = CacheIndex.open(mount.cacheDir, { readOnly: true });
  t.teardown(() => index.close());
  let samples = 0;
  let overCapacity = 0;
  let heldMissing = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      const space = index.space();
      if (space) {
        samples++;
        if (space.stagedBytes + space.reservedBytes > capacity) overCapacity++;
        if (!index.get(heldId)) heldMissing++;
      }
      await sleep(25);
    }
  })();

  const keys = [...files.keys()];
  let reads = 0;
  const failures: string[] = [];
  const deadline = Date.now() + 15_000;
  const reader = async (seed: number) => {
    for (let round = 0; Date.now() < deadline; round++) {
      const key = keys[(seed * 7 + round * 5) % keys.length];
      const data = files.get(key)!;
      try {
        const file = await open(mount.path(key), 'r');
        try {
          const position = round % 2 ? 0 : Math.floor(Math.random() * data.length);
          const length = round % 2 ? data.length : Math.min(data.length - position, 1 + Math.floor(Math.random() * 3 * MiB));
          const buffer = Buffer.alloc(length);
          const { bytesRead } = await file.read(buffer, 0, length, position);
          if (bytesRead !== length || !buffer.equals(data.subarray(position, position + length))) failures.push(`${key} at ${position}`);
          reads++;
        } finally {
          await file.close();
        }
      } catch (err) {
        failures.push(`${key}: ${(err as Error).message}`);
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(reader));
  await settle();
  running = false;
  await sampler;

  t.same(failures, [], `no read failed (${reads} reads)`);
  t.ok(samples > 50, `the index was sampled ${samples} times`);
  t.equal(overCapacity, 0, 'staged + reserved bytes never exceeded the cache size');
  t.equal(heldMissing, 0, 'the open file was never evicted');
  const after = Buffer.alloc(held.length);
  await heldFile.read(after, 0, held.length, 0);
  t.equal(sha256(after), sha256(held), 'the open file still reads back its exact bytes');
  const report = await statusReport(mount.cacheDir);
  t.ok(report.counters.evictions > 0, `entries were evicted (${report.counters.evictions})`);
  t.equal(entry(report, 'pool/held.qcow2')?.openHandles, 1, 'status shows the held file open');
  t.ok(report.stagedBytes + report.reservedBytes <= capacity, 'and the cache within its size');
});

engineTest(t, 'a cache held whole by a pinned file serves every other read by bypass', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(5 * MiB);
  await s3.store.put('iso/big.iso', data);
  await s3.store.put('iso/pinned.iso', randomData(MiB));
  // The smallest cache there is (one block), all of it pinned: no room can be made.
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', '1MiB', '--block-size', '1MiB'] });
  t.equal((await runCli(['cache', 'pin', mount.path('iso/pinned.iso')])).code, 0, 'the cache is full of a pinned file');
  t.equal(await sha256File(mount.path('iso/big.iso')), sha256(data), 'the bytes are right');
  await settle();
  const report = await statusReport(mount.cacheDir);
  t.ok(report.counters.bypassedReads > 0, `bypassed reads are counted (${report.counters.bypassedReads})`);
  t.equal(entry(report, 'iso/big.iso')?.stagedBytes ?? 0, 0, 'nothing of it was staged');
  t.ok(s3.gets('iso/big.iso').length < 20, `sequential bypass reads fetch in chunks (${s3.gets('iso/big.iso').length} GETs)`);
});

engineTest(t, 'age eviction removes an idle file and keeps an open one', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('snap/idle.vhd', randomData(2 * MiB));
  await s3.store.put('snap/open.vhd', randomData(2 * MiB));
  // Long enough that both are still staged when first looked at on a busy machine.
  const mount = await mountS3(t, s3, { engine, args: ['--max-age', '8s', '--sweep-interval', '200ms'] });
  await readFile(mount.path('snap/idle.vhd'));
  const openFile = await open(mount.path('snap/open.vhd'), 'r');
  t.teardown(() => openFile.close().catch(() => undefined));
  await openFile.readFile();
  await settle();
  const before = await statusReport(mount.cacheDir);
  t.ok(entry(before, 'snap/idle.vhd') && entry(before, 'snap/open.vhd'), 'both are staged');
  let after = before;
  for (let i = 0; i < 120 && entry(after, 'snap/idle.vhd'); i++) {
    await sleep(250);
    after = await statusReport(mount.cacheDir);
  }
  t.notOk(entry(after, 'snap/idle.vhd'), 'the idle file was evicted');
  t.ok(entry(after, 'snap/open.vhd'), 'the open file stayed');
  // The record goes at once; the counters reach the index with its next flush.
  for (let i = 0; i < 40 && after.counters.evictions < 1; i++) {
    await sleep(250);
    after = await statusReport(mount.cacheDir);
  }
  t.ok(after.counters.evictions >= 1, 'and the eviction is counted');
  const stagedFiles = join(mount.cacheDir, 'staged');
  t.ok(existsSync(stagedFiles), 'staging dir exists');
});

engineTest(t, 'pin, unpin, evict and prefetch from the command line', async (t, engine) => {
  const s3 = await startS3(t);
  const pinned = randomData(3 * MiB);
  const image = randomData(7 * MiB + 5);
  await s3.store.put('tmpl/pinned.qcow2', pinned);
  await s3.store.put('tmpl/image.qcow2', image);
  for (let i = 0; i < 4; i++) await s3.store.put(`tmpl/filler-${i}.raw`, randomData(3 * MiB));
  const cacheDir = tempDir(t, 'cache');
  const args = ['--cache-size', '8MiB', '--max-age', '1s', '--sweep-interval', '200ms'];
  const first = await mountS3(t, s3, { engine, cacheDir, args });

  await readFile(first.path('tmpl/pinned.qcow2'));
  const pin = await runCli(['cache', 'pin', first.path('tmpl/pinned.qcow2')]);
  t.equal(pin.code, 0, `pin (${pin.stderr.trim()})`);
  t.match(pin.stdout, /pinned 1 file/);
  await sleep(2000);
  t.ok(entry(await statusReport(cacheDir), 'tmpl/pinned.qcow2')?.pinned, 'a pinned file outlives --max-age');

  await first.unmount();
  const second = await mountS3(t, s3, { engine, cacheDir, args: ['--cache-size', '8MiB'] });
  const remounted = await statusReport(cacheDir);
  t.equal(entry(remounted, 'tmpl/pinned.qcow2')?.pinned, true, 'the pin survives a remount');
  t.equal(entry(remounted, 'tmpl/pinned.qcow2')?.stagedBytes, pinned.length, 'with its bytes');
  for (let i = 0; i < 4; i++) await readFile(second.path(`tmpl/filler-${i}.raw`));
  await settle();
  const churned = await statusReport(cacheDir);
  t.ok(churned.counters.evictions > 0, 'reading more than the cache holds evicted entries');
  t.ok(entry(churned, 'tmpl/pinned.qcow2'), 'but not the pinned file');

  const busy = await open(second.path('tmpl/pinned.qcow2'), 'r');
  const unpin = await runCli(['cache', 'unpin', second.path('tmpl/pinned.qcow2')]);
  t.equal(unpin.code, 0, 'unpin');
  const refused = await runCli(['cache', 'evict', second.path('tmpl/pinned.qcow2')]);
  t.equal(refused.code, 1, 'evict refuses a file in use');
  t.match(refused.stderr, /refused: in use \(1 open handle\)/);
  await busy.close();
  await settle();
  const evicted = await runCli(['cache', 'evict', second.path('tmpl/pinned.qcow2')]);
  t.equal(evicted.code, 0, `evict once closed (${evicted.stderr.trim()})`);
  await settle();
  t.notOk(entry(await statusReport(cacheDir), 'tmpl/pinned.qcow2'), 'the entry is gone');

  const prefetch = await runCli(['cache', 'prefetch', second.path('tmpl/image.qcow2')]);
  t.equal(prefetch.code, 0, `prefetch (${prefetch.stderr.trim()})`);
  t.match(prefetch.stderr, /prefetch \[#+\] 100% 7\.00 MiB \/ 7\.00 MiB .* MiB\/s/, 'with a progress bar');
  await settle();
  const prefetched = await statusReport(cacheDir);
  t.equal(entry(prefetched, 'tmpl/image.qcow2')?.stagedBytes, image.length, 'prefetch staged the whole file');
  t.equal(entry(prefetched, 'tmpl/image.qcow2')?.state, 'complete');
  const gets = s3.gets('tmpl/image.qcow2').length;
  dropPageCache();
  t.equal(await sha256File(second.path('tmpl/image.qcow2')), sha256(image), 'the prefetched file reads back');
  t.equal(s3.gets('tmpl/image.qcow2').length, gets, 'without a GET');

  const tooBig = await runCli(['cache', 'prefetch', second.path('tmpl')]);
  t.equal(tooBig.code, 1, 'prefetching more than the cache holds fails');
  t.match(tooBig.stderr, /no room in the cache/);
  t.match(tooBig.stderr, /FAILED: \d+ files?/, 'the progress line says it failed');
  const missing = await runCli(['cache', 'pin', second.path('tmpl/nope')]);
  t.match(missing.stderr, /no such file or directory/);
  const outside = await runCli(['cache', 'pin', '/etc/hostname']);
  t.match(outside.stderr, /not inside a running stagefs mount/);
});

engineTest(t, 'status --json reports what happened', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(3 * MiB + 1);
  await s3.store.put('vol/a.raw', data);
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', '64MiB', '--block-size', '1MiB'] });
  const file = await open(mount.path('vol/a.raw'), 'r');
  await file.read(Buffer.alloc(10), 0, 10, 0);
  await settle();
  const report = await statusReport(mount.cacheDir);
  t.equal(report.capacityBytes, 64 * MiB, 'capacity');
  t.equal(report.entryCount, 1, 'one entry');
  const a = entry(report, 'vol/a.raw')!;
  t.equal(a.size, data.length, 'size');
  t.equal(a.openHandles, 1, 'open handles');
  t.equal(a.pinned, false, 'not pinned');
  // A probe of a large object stages the head of its first block (128 KiB) at least.
  t.ok(a.stagedBytes >= 128 * 1024 && a.stagedBytes <= data.length, `staged bytes (${a.stagedBytes})`);
  t.ok(Math.abs(Date.parse(a.lastAccess) - Date.now()) < 60_000, 'lastAccess is an ISO time');
  t.ok(['partial', 'complete', 'fetching'].includes(a.state), `state ${a.state}`);
  // The read is a miss, or a hit when the head the open fetched landed before it: either way, counted.
  t.ok(report.counters.misses + report.counters.hits >= 1 && report.counters.bytesFetched >= 128 * 1024, 'the read and the bytes fetched are counted');
  t.equal(report.stagedBytes, a.stagedBytes, 'staged bytes add up');
  await file.close();
  const human = await runCli(['status', '--cache-dir', mount.cacheDir]);
  t.match(human.stdout, /capacity\s+64\.0 MiB/);
  t.match(human.stdout, /vol\/a\.raw/);
});
