import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { mountRecordFor } from '../../src/daemon/runtime-registry';
import { runCli } from '../helpers/cli';
import { engineTest, mountS3, mountpointDir, tempDir } from '../helpers/mount';
import { BUCKET, startS3 } from '../helpers/s3';

const run = promisify(execFile);

engineTest(t, 'mount returns once the daemon serves; unmount takes it down', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('iso/boot.iso', Buffer.from('boot image'));
  const mountpoint = mountpointDir(t);
  const cacheDir = tempDir(t, 'cache');
  const mounted = await runCli(['mount', `s3://${BUCKET}`, mountpoint, '--endpoint', s3.server.endpoint, '--cache-dir', cacheDir, '--engine', engine], s3.env);
  t.equal(mounted.code, 0, `mount exits 0 (${mounted.stderr.trim()})`);
  t.ok(isStagefsMount(mountAt(mountpoint)), 'the mount is up when the command returns');
  t.equal(await readFile(join(mountpoint, 'iso/boot.iso'), 'utf8'), 'boot image', 'and serves');
  const record = mountRecordFor(mountpoint);
  t.ok(record, 'the daemon is registered');
  t.ok(existsSync(join(cacheDir, 'stagefs.log')), 'the daemon logs to the cache dir');

  const again = await runCli(['mount', `s3://${BUCKET}`, mountpoint, '--endpoint', s3.server.endpoint, '--cache-dir', tempDir(t, 'cache'), '--engine', engine], s3.env);
  t.equal(again.code, 1, 'mounting over a live mount fails');
  t.match(again.stderr, /already mounted/);
  const shared = await runCli(['mount', `s3://${BUCKET}`, mountpointDir(t), '--endpoint', s3.server.endpoint, '--cache-dir', cacheDir, '--engine', engine], s3.env);
  t.match(shared.stderr, /cache dir .* is in use by the mount at/, 'a second mount cannot share the cache dir');

  const busy = await open(join(mountpoint, 'iso/boot.iso'), 'r');
  const refused = await runCli(['unmount', mountpoint]);
  t.equal(refused.code, 1, 'unmount refuses while a file is open');
  t.match(refused.stderr, /cannot unmount .*busy/i);
  t.ok(isStagefsMount(mountAt(mountpoint)), 'and the mount stays');
  await busy.close();

  const unmounted = await runCli(['unmount', mountpoint]);
  t.equal(unmounted.code, 0, `unmount exits 0 (${unmounted.stderr.trim()})`);
  t.notOk(isStagefsMount(mountAt(mountpoint)), 'the mount is gone');
  t.notOk(mountRecordFor(mountpoint), 'and its daemon has exited');
  t.match(readFileSync(join(cacheDir, 'stagefs.log'), 'utf8'), /unmounted/, 'after logging it');

  const notMounted = await runCli(['unmount', mountpoint]);
  t.equal(notMounted.code, 1);
  t.match(notMounted.stderr, /is not mounted/);
});

engineTest(t, 'df, stat and ls work on the mount', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('snapshots/2/15/snap.vhd', Buffer.alloc(3 * 1024 * 1024, 1));
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', '2GiB'] });
  const df = await run('df', ['-B1', mount.mountpoint]);
  const [, line] = df.stdout.trim().split('\n');
  const [source, size] = line.split(/\s+/);
  t.equal(source, `s3://${BUCKET}`, 'df names the bucket');
  t.equal(Number(size), 2 * 1024 ** 3, 'and reports the cache size');
  const ls = await run('ls', ['-lR', mount.mountpoint]);
  t.match(ls.stdout, /snap\.vhd/, 'ls -lR walks the tree');
  const stat = await run('stat', ['-c', '%s %F', mount.path('snapshots/2/15/snap.vhd')]);
  t.equal(stat.stdout.trim(), '3145728 regular file', 'stat');
  t.same(await readdir(mount.path('snapshots/2')), ['15']);
});
