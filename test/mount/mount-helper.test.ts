/**
 * The mount(8) path: `mount -t fuse.stagefs` (mount.fuse3 running stagefs from the default PATH),
 * fstab lines, /sbin/mount.fuse.stagefs run by mount(8) itself, and plain umount(8). Each test
 * installs stagefs in a private mount namespace, as an admin installs it on a host.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { isAlive, mountRecordFor } from '../../src/daemon/runtime-registry';
import { sleep } from '../../src/util/deferred';
import { runCli } from '../helpers/cli';
import { engineTest, tempDir } from '../helpers/mount';
import { mountNamespace, type MountNamespace } from '../helpers/namespace';
import { BUCKET, startS3 } from '../helpers/s3';

async function waitForExit(pid: number): Promise<boolean> {
  for (let i = 0; i < 600 && isAlive(pid); i++) await sleep(50);
  return !isAlive(pid);
}

async function mounted(ns: MountNamespace, mountpoint: string): Promise<string | undefined> {
  const { stdout } = await ns.run(['cat', '/proc/self/mountinfo']);
  return stdout.split('\n').find((line) => line.split(' ')[4] === mountpoint);
}

engineTest(t, 'mount -t fuse.stagefs with -o options, then plain umount', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('iso/boot.iso', Buffer.from('boot image'));
  const ns = await mountNamespace(t);
  const mountpoint = tempDir(t, 'mnt');
  const cacheDir = tempDir(t, 'cache');
  ns.stopDaemonInTeardown(mountpoint);
  const options = [
    `endpoint=${s3.server.endpoint}`,
    `cache_dir=${cacheDir}`,
    `engine=${engine}`,
    'cache_size=64MiB,uid=1234,gid=4321,ro,allow_other',
    'defaults,_netdev,nofail,noatime,x-systemd.automount,x-systemd.mount-timeout=30',
  ].join(',');
  const result = await ns.run(['mount', '-t', 'fuse.stagefs', `s3://${BUCKET}/iso`, mountpoint, '-o', options], s3.env);
  t.equal(result.code, 0, `mount exits 0 (${result.stderr.trim()})`);
  t.equal(result.stderr, '', 'and says nothing, as mount helpers do');
  const entry = await mounted(ns, mountpoint);
  t.match(entry, / - fuse\.stagefs s3:\/\/test\/iso /, 'mounted as fuse.stagefs with the bucket as its source');
  t.match(entry, /\bro\b.*allow_other/, 'read-only, for other users too');
  t.equal((await ns.run(['stat', '-c', '%u %g', join(mountpoint, 'boot.iso')])).stdout.trim(), '1234 4321', 'uid= and gid=');
  t.equal((await ns.run(['cat', join(mountpoint, 'boot.iso')])).stdout, 'boot image', 'it serves');
  t.not((await ns.run(['touch', join(mountpoint, 'new')])).code, 0, 'ro refuses writes');

  const record = mountRecordFor(mountpoint);
  t.ok(record, 'the daemon runs');
  const unmounted = await ns.run(['umount', mountpoint]);
  t.equal(unmounted.code, 0, `umount exits 0 (${unmounted.stderr.trim()})`);
  t.ok(await waitForExit(record!.pid), 'the daemon exits');
  t.notOk(await mounted(ns, mountpoint), 'nothing is left mounted');
  t.match(readFileSync(join(cacheDir, 'stagefs.log'), 'utf8'), /unmounted/, 'the daemon logged to its cache dir');
});

t.test('an fstab line mounts with mount MOUNTPOINT', async (t) => {
  const s3 = await startS3(t);
  await s3.store.put('tmpl/base.qcow2', Buffer.from('template'));
  const ns = await mountNamespace(t);
  const mountpoint = tempDir(t, 'mnt');
  const cacheDir = tempDir(t, 'cache');
  ns.stopDaemonInTeardown(mountpoint);
  const fstab = join(tempDir(t, 'etc'), 'fstab');
  writeFileSync(
    fstab,
    `# secondary storage\ns3://${BUCKET}/tmpl ${mountpoint} fuse.stagefs ` +
      `_netdev,noauto,nofail,x-systemd.automount,x-systemd.idle-timeout=10min,endpoint=${s3.server.endpoint},cache_dir=${cacheDir},cache_size=1GiB 0 0\n`,
  );
  const result = await ns.run(['mount', '-T', fstab, mountpoint], s3.env);
  t.equal(result.code, 0, `mount exits 0 (${result.stderr.trim()})`);
  t.equal((await ns.run(['cat', join(mountpoint, 'base.qcow2')])).stdout, 'template', 'it serves');
  const pid = mountRecordFor(mountpoint)!.pid;
  t.equal((await ns.run(['umount', mountpoint])).code, 0, 'umount');
  t.ok(await waitForExit(pid), 'the daemon exits');
});

t.test('a bad option fails the mount with its name, and nothing is mounted', async (t) => {
  const s3 = await startS3(t);
  const ns = await mountNamespace(t);
  const mountpoint = tempDir(t, 'mnt');
  ns.stopDaemonInTeardown(mountpoint);
  const base = `endpoint=${s3.server.endpoint},cache_dir=${tempDir(t, 'cache')}`;
  const bogus = await ns.run(['mount', '-t', 'fuse.stagefs', `s3://${BUCKET}`, mountpoint, '-o', `${base},bogus=1`], s3.env);
  t.not(bogus.code, 0, 'mount fails');
  t.match(bogus.stderr, /unknown mount option 'bogus=1'/, 'naming the option');
  const noBucket = await ns.run(['mount', '-t', 'fuse.stagefs', 's3://no-such-bucket', mountpoint, '-o', base], s3.env);
  t.not(noBucket.code, 0);
  t.match(noBucket.stderr, /bucket does not exist/, 'a failed mount says why');
  t.notOk(await mounted(ns, mountpoint), 'nothing is mounted');
});

t.test('/sbin/mount.fuse.stagefs: mount(8) runs stagefs itself, with -s and -f', async (t) => {
  const s3 = await startS3(t);
  await s3.store.put('f', Buffer.from('direct'));
  const ns = await mountNamespace(t, { directHelper: true });
  const mountpoint = tempDir(t, 'mnt');
  ns.stopDaemonInTeardown(mountpoint);
  const options = `endpoint=${s3.server.endpoint},cache_dir=${tempDir(t, 'cache')},_netdev,some_future_option`;
  const fake = await ns.run(['mount', '-f', '-s', '-t', 'fuse.stagefs', `s3://${BUCKET}`, mountpoint, '-o', options], s3.env);
  t.equal(fake.code, 0, `mount -f checks and stops (${fake.stderr.trim()})`);
  t.notOk(await mounted(ns, mountpoint), 'without mounting');
  // mount.fuse3 would drop -s and refuse the unknown option; only our helper sees -s.
  const sloppy = await ns.run(['mount', '-s', '-t', 'fuse.stagefs', `s3://${BUCKET}`, mountpoint, '-o', options], s3.env);
  t.equal(sloppy.code, 0, `mount -s tolerates unknown options (${sloppy.stderr.trim()})`);
  t.match(sloppy.stderr, /ignoring unknown mount options \(sloppy\): some_future_option/);
  t.equal((await ns.run(['cat', join(mountpoint, 'f')])).stdout, 'direct', 'it serves');
  const pid = mountRecordFor(mountpoint)!.pid;
  t.equal((await ns.run(['umount', mountpoint])).code, 0, 'umount');
  t.ok(await waitForExit(pid), 'the daemon exits');
});

t.test('helper calls exit as mount(8) helpers do: 1 for usage, 32 for a failed mount', async (t) => {
  const s3 = await startS3(t);
  const mountpoint = tempDir(t, 'mnt');
  const usage = await runCli([`s3://${BUCKET}`, mountpoint, '-o', 'cache_size'], s3.env);
  t.equal(usage.code, 1);
  t.match(usage.stderr, /needs a value/);
  const failed = await runCli([`s3://no-such-bucket`, mountpoint, '-o', `endpoint=${s3.server.endpoint},cache_dir=${tempDir(t, 'cache')}`], s3.env);
  t.equal(failed.code, 32);
  t.equal(failed.stderr.trim().split('\n').length, 1, `one line: ${failed.stderr.trim()}`);
});
