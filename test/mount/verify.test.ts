/** Verified staging: staged blocks damaged on disk are never served; `stagefs cache verify` finds them. */
import { mkdtempSync, rmSync } from 'node:fs';
import { open, readFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { CacheIndex, type EntryRecord } from '../../src/cache/cache-index';
import { sleep } from '../../src/util/deferred';
import { dropPageCache, runCli, statusReport } from '../helpers/cli';
import { wrongBytes } from '../helpers/fault-reads';
import { randomData } from '../helpers/files';
import { engineTest, mountS3, tempDir } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
const WAIT_MS = 20_000;

// `cache verify` without a PATH checks every running mount: this file's mounts are the only ones it sees.
process.env.STAGEFS_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'stagefs-test-verify-run-'));
t.teardown(() => rmSync(process.env.STAGEFS_RUNTIME_DIR!, { recursive: true, force: true }));

const isComplete = (record: EntryRecord) => record.stagedBytes === record.size;
const hasBlock = (block: number) => (record: EntryRecord) => (record.blocks[block >> 3] & (1 << (block & 7))) !== 0;

/**
 * The staging file of `key`, once the index records it as `ready` says (the mount records
 * changes within a fraction of a second).
 */
async function stagingFile(cacheDir: string, key: string, ready: (record: EntryRecord) => boolean): Promise<string> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const index = CacheIndex.open(cacheDir, { readOnly: true });
    const record = index.entries().find((e) => e.key === key);
    await index.close();
    if (record && ready(record)) return join(cacheDir, 'staged', record.file.slice(0, 2), record.file);
    if (Date.now() > deadline) throw new Error(`${key}: the index does not record it staged as expected`);
    await sleep(100);
  }
}

/** Waits until the index counts at least `count` bad blocks, then gives the count. */
async function badBlocks(cacheDir: string, count: number): Promise<number> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const counted = (await statusReport(cacheDir)).counters.badBlocks;
    if (counted >= count || Date.now() > deadline) return counted;
    await sleep(100);
  }
}

/** Inverts one byte of a file on disk, behind the mount's back. */
async function flipByte(path: string, position: number): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, position);
    byte[0] ^= 0xff;
    await file.write(byte, 0, 1, position);
  } finally {
    await file.close();
  }
}

async function readRange(path: string, position: number, length: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await file.read(buffer, 0, length, position);
    return buffer.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

engineTest(t, 'staged blocks damaged on disk between mounts are fetched again, never served', async (t, engine) => {
  const s3 = await startS3(t);
  const partial = randomData(16 * MiB);
  const complete = randomData(6 * MiB + 123);
  const cut = randomData(4 * MiB);
  await s3.store.put('vm/partial.img', partial);
  await s3.store.put('vm/complete.img', complete);
  await s3.store.put('vm/cut.img', cut);
  const cacheDir = tempDir(t, 'cache');
  const args = ['--block-size', '1MiB'];

  const first = await mountS3(t, s3, { engine, cacheDir, args });
  const sample = (data: Buffer) => data.subarray(2 * MiB, 2 * MiB + 4096);
  t.equal(wrongBytes(await readRange(first.path('vm/partial.img'), 2 * MiB, 4096), sample(partial)), 0, 'some of one file staged');
  t.equal(wrongBytes(await readFile(first.path('vm/complete.img')), complete), 0, 'another staged whole');
  t.equal(wrongBytes(await readFile(first.path('vm/cut.img')), cut), 0, 'a third staged whole');
  const partialFile = await stagingFile(cacheDir, 'vm/partial.img', hasBlock(2));
  const completeFile = await stagingFile(cacheDir, 'vm/complete.img', isComplete);
  const cutFile = await stagingFile(cacheDir, 'vm/cut.img', isComplete);
  await first.unmount();

  await flipByte(partialFile, 2 * MiB + 100); // block 2
  await flipByte(completeFile, 1 * MiB); // block 1
  await flipByte(completeFile, 6 * MiB + 122); // the short last block
  await truncate(cutFile, 2.5 * MiB); // blocks 2 and 3 are gone: the mount drops them when it starts
  const gets = (key: string) => s3.gets(key).length;
  const before = { partial: gets('vm/partial.img'), complete: gets('vm/complete.img'), cut: gets('vm/cut.img') };

  const second = await mountS3(t, s3, { engine, cacheDir, args });
  t.equal(wrongBytes(await readRange(second.path('vm/partial.img'), 2 * MiB, 4096), sample(partial)), 0, 'the partly staged file reads right');
  t.equal(wrongBytes(await readFile(second.path('vm/complete.img')), complete), 0, 'the complete one too');
  t.equal(wrongBytes(await readFile(second.path('vm/cut.img')), cut), 0, 'and the truncated one');
  t.ok(gets('vm/partial.img') > before.partial, 'the damaged block was fetched again');
  t.ok(gets('vm/complete.img') > before.complete, 'and the damaged blocks of the complete file');
  t.ok(gets('vm/cut.img') > before.cut, 'and the blocks lost to the truncation');
  t.equal(await badBlocks(cacheDir, 3), 3, 'three bad blocks are counted (the flipped bytes)');
  t.match(second.output(), /staged block 2 does not match its checksum/, 'and logged');
  t.match(second.output(), /the staging file of vm\/cut\.img holds \d+ of its \d+ bytes/, 'the truncation is found at start');

  const verify = await runCli(['cache', 'verify', second.mountpoint]);
  t.equal(verify.code, 0, `the cache is sound again: ${verify.stdout}${verify.stderr}`);
  t.match(verify.stdout, /checked \d+ staged blocks of 3 files: 0 bad/, 'every staged block checked');
});

engineTest(t, 'stagefs cache verify finds blocks damaged while mounted and drops them', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(5 * MiB);
  await s3.store.put('db/table.bin', data);
  const mount = await mountS3(t, s3, { engine, args: ['--block-size', '1MiB'] });
  const path = mount.path('db/table.bin');
  t.equal((await runCli(['cache', 'prefetch', path])).code, 0, 'prefetched');
  const stagingPath = await stagingFile(mount.cacheDir, 'db/table.bin', isComplete);

  const clean = await runCli(['cache', 'verify', path]);
  t.equal(clean.code, 0, 'a sound cache verifies');
  t.match(clean.stdout, 'checked 5 staged blocks of 1 file: 0 bad', clean.stdout);

  await flipByte(stagingPath, 3 * MiB + 4095);
  const damaged = await runCli(['cache', 'verify']);
  t.equal(damaged.code, 1, 'damage found: exit status 1');
  t.match(damaged.stdout, `${mount.mountpoint}: 1 bad block dropped`, damaged.stdout);
  t.match(damaged.stdout, 'checked 5 staged blocks of 1 file: 1 bad (dropped, to be fetched again)');
  t.equal(await badBlocks(mount.cacheDir, 1), 1, 'the bad block is counted');

  const again = await runCli(['cache', 'verify', path]);
  t.equal(again.code, 0, 'the bad block is gone');
  t.match(again.stdout, 'checked 4 staged blocks of 1 file: 0 bad', again.stdout);

  const gets = s3.gets('db/table.bin').length;
  t.equal(wrongBytes(await readFile(path), data), 0, 'the file reads right');
  t.equal(s3.gets('db/table.bin').length, gets + 1, 'with one GET, of the dropped block');
});

t.test('a file too large to check at open is checked in the background and handed to the kernel at a later open [native]', async (t) => {
  const s3 = await startS3(t);
  const data = randomData(72 * MiB);
  await s3.store.put('vm/large.img', data);
  const cacheDir = tempDir(t, 'cache');
  const args = ['--block-size', '1MiB'];
  const first = await mountS3(t, s3, { engine: 'native', cacheDir, args });
  t.equal((await runCli(['cache', 'prefetch', first.path('vm/large.img')])).code, 0, 'staged whole');
  const stagingPath = await stagingFile(cacheDir, 'vm/large.img', isComplete);
  await first.unmount();
  await flipByte(stagingPath, 70 * MiB + 5);

  const mount = await mountS3(t, s3, { engine: 'native', cacheDir, args });
  const path = mount.path('vm/large.img');
  const reads = async () => {
    await sleep(600); // the index records within a fraction of a second
    const { counters } = await statusReport(cacheDir);
    return counters.hits + counters.misses;
  };
  const before = await reads();
  dropPageCache();
  t.equal(wrongBytes(await readFile(path), data), 0, 'the first open reads right');
  t.ok((await reads()) > before, 'through the daemon, not handed to the kernel unchecked');
  t.equal(await badBlocks(cacheDir, 1), 1, 'the damaged block was found');

  // Once every block is checked (in the background), an open is handed to the kernel.
  let passthrough = false;
  const deadline = Date.now() + WAIT_MS;
  while (!passthrough && Date.now() < deadline) {
    const count = await reads();
    dropPageCache();
    t.equal(wrongBytes(await readRange(path, 70 * MiB, 4096), data.subarray(70 * MiB, 70 * MiB + 4096)), 0, 'reads right');
    passthrough = (await reads()) === count;
  }
  t.ok(passthrough, 'a later open is read by the kernel itself');
});
