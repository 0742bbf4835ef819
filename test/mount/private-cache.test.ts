/** The cache as admins need it: private, one per mount by default, sized to its disk; mount failures explained. */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, readdirSync, rmSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type { StatusReport } from '../../src/cli/status-command';
import { cacheRoot, mountDirName } from '../../src/config';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { mountRecordFor } from '../../src/daemon/runtime-registry';
import { sleep } from '../../src/util/deferred';
import { runCli } from '../helpers/cli';
import { CLI, engineTest, mountS3, mountpointDir, tempDir } from '../helpers/mount';
import { BUCKET, startS3 } from '../helpers/s3';

const run = promisify(execFile);

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

t.test('two mounts need no flags: each gets its own private cache dir; status MOUNTPOINT', async (t) => {
  const s3 = await startS3(t);
  await s3.store.put('vol/a.raw', Buffer.alloc(3 * 1024 * 1024, 7));
  const mountpoints = [mountpointDir(t), mountpointDir(t)];
  const cacheDirs = mountpoints.map((m) => join(cacheRoot(), mountDirName({ bucket: BUCKET, prefix: '' }, m)));
  for (const dir of cacheDirs) t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const mountpoint of mountpoints) {
    // The daemon runs with a lax umask and a mount anyone may use: the cache stays private anyway.
    const mounted = await runCli(['mount', `s3://${BUCKET}`, mountpoint, '--endpoint', s3.server.endpoint, '--allow-other'], s3.env);
    t.equal(mounted.code, 0, `mounted without --cache-dir (${mounted.stderr.trim()})`);
    t.teardown(() => runCli(['unmount', mountpoint]));
  }
  t.equal(mountRecordFor(mountpoints[0])?.cacheDir, cacheDirs[0], 'the first in its own cache dir');
  t.equal(mountRecordFor(mountpoints[1])?.cacheDir, cacheDirs[1], 'the second in another');

  t.equal((await readFile(join(mountpoints[0], 'vol/a.raw'))).length, 3 * 1024 * 1024, 'a read stages the file');
  await writeFile(join(mountpoints[0], 'vol/new.txt'), 'written');
  await sleep(600);
  t.equal(mode(cacheDirs[0]), '700', 'the cache dir is 0700');
  t.equal((await run('stat', ['-c', '%a', join(mountpoints[0], 'vol/a.raw')])).stdout.trim(), '644', 'though the file shows 0644 in the mount');
  const files = filesUnder(join(cacheDirs[0], 'staged'));
  t.ok(files.length >= 2, `the staged file and the written file (${files.length})`);
  for (const file of files) t.equal(mode(file), '600', `${file.slice(cacheDirs[0].length)} is 0600`);
  t.equal(mode(join(cacheDirs[0], 'stagefs.log')), '600', 'the log is 0600');

  const ambiguous = await runCli(['status']);
  t.equal(ambiguous.code, 1);
  t.match(ambiguous.stderr, /several mounts are running; name one: /);
  for (const mountpoint of mountpoints) t.ok(ambiguous.stderr.includes(`stagefs status ${mountpoint}`), `naming ${mountpoint}`);
  for (const [i, mountpoint] of mountpoints.entries()) {
    const status = await runCli(['status', mountpoint, '--json']);
    const report = JSON.parse(status.stdout) as StatusReport;
    t.equal(report.cacheDir, cacheDirs[i], `status ${mountpoint} shows its cache`);
    t.equal(report.mount?.mountpoint, mountpoint);
  }
  const notMounted = await runCli(['status', tempDir(t, 'nothing')]);
  t.match(notMounted.stderr, /no stagefs mount is running at /);
});

t.test('a cache size the disk cannot hold is refused with the numbers', async (t) => {
  const s3 = await startS3(t);
  const mountpoint = mountpointDir(t);
  const result = await runCli(['mount', `s3://${BUCKET}`, mountpoint, '--endpoint', s3.server.endpoint, '--cache-dir', tempDir(t, 'cache'), '--cache-size', '100TiB'], s3.env);
  t.equal(result.code, 1);
  t.match(result.stderr, /--cache-size 100\.0 TiB does not fit on the disk of \S+: it has [\d.]+ [KMGT]iB free and the cache holds [\d.]+ [KMGT]?i?B \([\d.]+ [KMGT]iB at most\)/);
  t.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr.trim()}`);
  t.notOk(isStagefsMount(mountAt(mountpoint)), 'nothing is mounted');
  const tiny = await runCli(['mount', `s3://${BUCKET}`, mountpoint, '--cache-size', '0']);
  t.equal(tiny.code, 2);
  t.match(tiny.stderr, /--cache-size: 0 B is less than one block \(1\.00 MiB, --block-size\)/);
});

engineTest(t, "a failed mount shows fusermount's own reason", async (t, engine) => {
  const s3 = await startS3(t);
  // An unprivileged user mounts with fusermount3, which refuses a mountpoint the user cannot write.
  const mountpoint = tempDir(t, 'mnt');
  chmodSync(mountpoint, 0o755);
  const cacheDir = tempDir(t, 'cache');
  chownSync(cacheDir, 65534, 65534);
  // tap puts its process hooks in every child's NODE_OPTIONS; they would write where nobody may not.
  const result = await run('runuser', ['-u', 'nobody', '--', 'env', '-u', 'NODE_OPTIONS', process.execPath, CLI, 'mount', `s3://${BUCKET}`, mountpoint, '--endpoint', s3.server.endpoint, '--cache-dir', cacheDir, '--state-dir', `${cacheDir}/state`, '--engine', engine], {
    env: { ...process.env, ...s3.env, HOME: cacheDir },
  }).then(
    () => ({ code: 0, stderr: '' }),
    (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
  );
  t.equal(result.code, 1, 'the mount fails');
  // fusermount3 refuses either the device (mode 0600 on some hosts) or the mountpoint nobody cannot write.
  t.match(
    result.stderr,
    new RegExp(`(failed to open /dev/fuse: Permission denied|user has no write access to mountpoint ${mountpoint})`),
    `with fusermount's words: ${result.stderr.trim()}`,
  );
  t.equal(result.stderr.trim().split('\n').length, 1, 'in one line');
  t.notOk(isStagefsMount(mountAt(mountpoint)), 'nothing is mounted');
});

engineTest(t, 'prefetching more than fits says it failed, never with a full bar', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('tmpl/a.qcow2', Buffer.alloc(3 * 1024 * 1024, 1));
  await s3.store.put('tmpl/b.qcow2', Buffer.alloc(3 * 1024 * 1024, 2));
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', '4MiB'] });
  const prefetch = await runCli(['cache', 'prefetch', mount.path('tmpl')]);
  t.equal(prefetch.code, 1);
  t.match(prefetch.stderr, /no room in the cache/);
  t.match(prefetch.stderr, /FAILED: 1 file/, 'the last progress line says so');
  t.notMatch(prefetch.stderr, /100%/);
});
