/** What only the native engine does: passthrough, reads served in C, and its robustness. */
import { execFile, spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import t from 'tap';
import type { StatusReport } from '../../src/cli/status-command';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { sleep } from '../../src/util/deferred';
import { dropPageCache, runCli } from '../helpers/cli';
import { randomData, sha256, sha256File } from '../helpers/files';
import { mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function status(cacheDir: string): Promise<StatusReport> {
  await sleep(600); // the index records within a fraction of a second
  return JSON.parse((await runCli(['status', '--cache-dir', cacheDir, '--json'])).stdout) as StatusReport;
}

function readlinkOrEmpty(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return ''; // closed between listing and reading
  }
}

const reads = (report: StatusReport) => report.counters.hits + report.counters.misses;

t.test('a fully staged file is read by the kernel itself (passthrough)', async (t) => {
  const s3 = await startS3(t);
  const data = randomData(16 * MiB + 3);
  await s3.store.put('tmpl/base.qcow2', data);
  const mount = await mountS3(t, s3, { engine: 'native' });
  const prefetch = await runCli(['cache', 'prefetch', mount.path('tmpl/base.qcow2')]);
  t.equal(prefetch.code, 0, 'prefetched');
  const before = await status(mount.cacheDir);
  dropPageCache();
  t.equal(await sha256File(mount.path('tmpl/base.qcow2')), sha256(data), 'the bytes are right');
  const after = await status(mount.cacheDir);
  t.equal(reads(after), reads(before), 'and no read reached the daemon');
});

t.test('reads of staged ranges are served in C while the file is partly staged', async (t) => {
  const s3 = await startS3(t);
  const data = randomData(8 * MiB);
  await s3.store.put('vol/part.raw', data);
  const mount = await mountS3(t, s3, { engine: 'native', args: ['--block-size', '1MiB'] });
  const file = await open(mount.path('vol/part.raw'), 'r');
  t.teardown(() => file.close().catch(() => undefined));
  const first = Buffer.alloc(4096);
  await file.read(first, 0, 4096, 5 * MiB);
  t.same(first, data.subarray(5 * MiB, 5 * MiB + 4096), 'a cold read');
  // The read is answered once its own bytes are on disk; the block is staged when all of it is.
  const deadline = Date.now() + 30_000;
  while ((await status(mount.cacheDir)).stagedBytes < MiB && Date.now() < deadline) await sleep(100);
  const gets = s3.gets('vol/part.raw').length;
  dropPageCache();
  const again = Buffer.alloc(4096);
  await file.read(again, 0, 4096, 5 * MiB + 8192);
  t.same(again, data.subarray(5 * MiB + 8192, 5 * MiB + 12288), 'a read of the same staged block');
  // A second read in sequence may start readahead past the block, never a GET of it.
  const starts = s3.gets('vol/part.raw').slice(gets).map((get) => Number(/^bytes=(\d+)-/.exec(get.range ?? '')?.[1]));
  t.ok(starts.every((start) => start >= 6 * MiB), `needs no GET of that block (GETs since: ${starts.join(', ') || 'none'})`);
  const report = await status(mount.cacheDir);
  t.ok(report.counters.hits >= 1, 'and counts as a hit (told by the C side)');
});

t.test('cached and passthrough opens of one file, and a new version while the old one is held', async (t) => {
  const s3 = await startS3(t);
  const v1 = randomData(6 * MiB);
  await s3.store.put('iso/tools.iso', v1);
  const mount = await mountS3(t, s3, { engine: 'native', args: ['--metadata-ttl', '1s'] });
  const path = mount.path('iso/tools.iso');

  const partial = await open(path, 'r');
  await partial.read(Buffer.alloc(10), 0, 10, 0);
  t.equal((await runCli(['cache', 'prefetch', path])).code, 0, 'the rest is prefetched while a cached open holds the file');
  t.equal(await sha256File(path), sha256(v1), 'a second open while the first is cached reads right');
  await partial.close();

  const held = await open(path, 'r');
  t.same(await held.readFile(), v1, 'a passthrough open reads right');
  const v2 = randomData(5 * MiB + 11);
  await s3.store.put('iso/tools.iso', v2);
  await sleep(2200);
  t.equal(await sha256File(path), sha256(v2), 'a new version opened while the old one is held in passthrough reads right');
  const old = Buffer.alloc(v1.length);
  await held.read(old, 0, v1.length, 0);
  t.same(old, v1, 'and the held handle still reads its own version');
  await held.close();
  t.equal(await sha256File(path), sha256(v2), 'once closed, the new version reads right on its own');
});

t.test('a writer of a file the kernel reads directly waits for its readers; ETXTBSY while one stays', async (t) => {
  const s3 = await startS3(t);
  const v1 = randomData(2 * MiB);
  await s3.store.put('tmpl/meta.vhd', v1);
  const mount = await mountS3(t, s3, { engine: 'native' });
  const path = mount.path('tmpl/meta.vhd');
  t.equal((await runCli(['cache', 'prefetch', path])).code, 0, 'staged whole');
  const reader = await open(path, 'r');
  t.teardown(() => reader.close().catch(() => undefined));
  t.same(await reader.readFile(), v1, 'a passthrough reader reads right');
  await t.rejects(open(path, 'r+'), { code: 'ETXTBSY' }, 'a writer is refused while the reader stays open');
  await reader.close();
  // close(2) does not wait for the kernel's RELEASE: the open comes right behind it.
  const writer = await open(path, 'r+');
  await writer.write(Buffer.from('new'), 0, 3, 0);
  await writer.close();
  const v2 = Buffer.concat([Buffer.from('new'), v1.subarray(3)]);
  t.equal(await sha256File(path), sha256(v2), 'the writer that came right after the close wrote');
});

t.test('many open files at once, and no descriptor left behind', async (t) => {
  const s3 = await startS3(t);
  const count = 300;
  for (let i = 0; i < count; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => s3.store.put(`many/f${i + j}`, Buffer.from(`file ${i + j}`))));
  }
  const mount = await mountS3(t, s3, { engine: 'native' });
  const pid = mount.daemon.pid!;
  // Staging files only: sockets to S3 come and go with the connection pool.
  const staged = `${mount.cacheDir}/staged/`;
  const fds = () => readdirSync(`/proc/${pid}/fd`).filter((fd) => readlinkOrEmpty(`/proc/${pid}/fd/${fd}`).startsWith(staged)).length;
  await readFile(mount.path('many/f0'));
  await sleep(500);
  const baseline = fds();
  const files = await Promise.all(Array.from({ length: count }, (_, i) => open(mount.path(`many/f${i}`), 'r')));
  const contents = await Promise.all(files.map((f) => f.readFile('utf8')));
  t.ok(contents.every((text, i) => text === `file ${i}`), `${count} files open at once read right`);
  t.ok(fds() > baseline, `while open the daemon holds their staging files (${fds()})`);
  await Promise.all(files.map((f) => f.close()));
  await sleep(1000);
  t.ok(fds() <= baseline, `the daemon holds ${fds()} staging file descriptors after closing, ${baseline} before`);
});

t.test('a reader killed mid-read leaves the mount working', async (t) => {
  const s3 = await startS3(t);
  const data = randomData(200 * MiB);
  await s3.store.put('img/big.raw', data);
  const mount = await mountS3(t, s3, { engine: 'native' });
  for (let i = 0; i < 3; i++) {
    const reader = spawn('cat', [mount.path('img/big.raw')], { stdio: ['ignore', 'ignore', 'ignore'] });
    // Listened for from the start: a reader of a file staged by the earlier ones may finish before the kill.
    const exited = new Promise((resolve) => reader.once('exit', resolve));
    await sleep(150 + i * 100);
    reader.kill('SIGKILL');
    await exited;
  }
  t.equal(await sha256File(mount.path('img/big.raw')), sha256(data), 'the file reads whole afterwards');
});

t.test('stopping the daemon while a file is open unmounts and exits', async (t) => {
  const s3 = await startS3(t);
  await s3.store.put('busy/file', Buffer.from('busy'));
  const mount = await mountS3(t, s3, { engine: 'native' });
  const busy = await open(mount.path('busy/file'), 'r');
  t.teardown(() => busy.close().catch(() => undefined));
  t.equal((await busy.readFile()).toString(), 'busy', 'a file is open');
  const started = Date.now();
  const exited = new Promise<number | null>((resolve) => mount.daemon.once('exit', (code) => resolve(code)));
  mount.daemon.kill('SIGTERM');
  t.equal(await exited, 0, 'the daemon exits cleanly');
  t.ok(Date.now() - started < 20_000, 'within the abort timeout');
  t.notOk(isStagefsMount(mountAt(mount.mountpoint)), 'the mount is gone');
  await t.rejects(busy.read(Buffer.alloc(4), 0, 4, 0), 'the orphaned handle fails instead of hanging');
  const { stdout } = await run('grep', ['-c', 'fuse', '/proc/mounts']).catch(() => ({ stdout: '0' }));
  t.ok(!stdout.includes(mount.mountpoint), 'nothing of it is left in /proc/mounts');
});
