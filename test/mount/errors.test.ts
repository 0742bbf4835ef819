import { mkdir, readdir, readFile, rm, rename, writeFile } from 'node:fs/promises';
import t from 'tap';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { EmbeddedS3 } from '../../src/s3server/embedded-s3';
import { runCli } from '../helpers/cli';
import { randomData } from '../helpers/files';
import { engineTest, mountS3, mountpointDir, tempDir } from '../helpers/mount';
import { BUCKET, startS3 } from '../helpers/s3';

t.test('mount refuses, with one clear line and nothing mounted', async (t) => {
  const s3 = await startS3(t);
  const mountpoint = mountpointDir(t);
  const cacheDir = tempDir(t, 'cache');
  const mount = (source: string, extra: string[] = [], env: Record<string, string> = {}) =>
    runCli(['mount', source, mountpoint, '--endpoint', s3.server.endpoint, '--cache-dir', cacheDir, ...extra], { ...s3.env, ...env });

  const cases: Array<[string, () => ReturnType<typeof mount>, RegExp]> = [
    ['a missing bucket', () => mount('s3://no-such-bucket'), /bucket does not exist/],
    ['wrong credentials', () => mount(`s3://${BUCKET}`, [], { AWS_SECRET_ACCESS_KEY: 'wrong' }), /credentials were refused/],
    ['an unknown access key', () => mount(`s3://${BUCKET}`, [], { AWS_ACCESS_KEY_ID: 'NOBODY' }), /credentials were refused/],
    ['an unreachable endpoint', () => mount(`s3://${BUCKET}`, ['--endpoint', 'http://127.0.0.1:9']), /cannot reach/],
    ['a missing mountpoint', () => runCli(['mount', `s3://${BUCKET}`, mountpoint + '/nope', '--endpoint', s3.server.endpoint], s3.env), /does not exist/],
  ];
  for (const [what, attempt, message] of cases) {
    const { code, stderr } = await attempt();
    t.not(code, 0, `${what}: exits non-zero`);
    t.match(stderr, message, `${what}: says why`);
    t.equal(stderr.trim().split('\n').length, 1, `${what}: in one line (${stderr.trim()})`);
    t.notOk(isStagefsMount(mountAt(mountpoint)), `${what}: nothing is mounted`);
  }
});

t.test('bad flags get a clear message and the usage line', async (t) => {
  const bad: Array<[string[], RegExp]> = [
    [['mount', 's3://b', '/tmp', '--cache-size', 'huge'], /--cache-size: 'huge' is not a size/],
    [['mount', 's3://b', '/tmp', '--no-such-flag'], /Unknown option '--no-such-flag'/],
    [['mount', 's3://b'], /missing MOUNTPOINT/],
    [['mount', 'bucket', '/tmp'], /not an S3 location/],
    [['mount', 's3://b', '/tmp', '--metadata-ttl', 'forever'], /--metadata-ttl/],
  ];
  for (const [args, message] of bad) {
    const { code, stderr } = await runCli(args);
    t.equal(code, 2, `${args.join(' ')}: exit 2`);
    t.match(stderr, message, 'the message');
    t.match(stderr, /usage: stagefs mount/, 'and the usage line');
  }
  const unknown = await runCli(['frobnicate']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command 'frobnicate'/);
  for (const command of ['mount', 'unmount', 'demo']) {
    const help = await runCli([command, '--help']);
    t.equal(help.code, 0, `${command} --help`);
    t.match(help.stdout, new RegExp(`usage: stagefs ${command}`));
  }
});

engineTest(t, 'writes on the read-only mount fail with EROFS', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('dir/file', Buffer.from('data'));
  const mount = await mountS3(t, s3, { engine, args: ['--read-only'] });
  await t.rejects(writeFile(mount.path('new-file'), 'x'), { code: 'EROFS' }, 'create');
  await t.rejects(writeFile(mount.path('dir/file'), 'x'), { code: 'EROFS' }, 'overwrite');
  await t.rejects(mkdir(mount.path('newdir')), { code: 'EROFS' }, 'mkdir');
  await t.rejects(rm(mount.path('dir/file')), { code: 'EROFS' }, 'unlink');
  await t.rejects(rename(mount.path('dir/file'), mount.path('dir/moved')), { code: 'EROFS' }, 'rename');
  t.equal(await readFile(mount.path('dir/file'), 'utf8'), 'data', 'nothing changed');
});

engineTest(t, 'an S3 failure during a read fails that read with EIO; the mount stays up', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(4 * 1024 * 1024);
  await s3.store.put('vol/disk.raw', data);
  await s3.store.put('vol/small.txt', Buffer.from('small'));
  const mount = await mountS3(t, s3, { engine, args: ['--metadata-ttl', '10m'] });
  t.same(await readdir(mount.path('vol')), ['disk.raw', 'small.txt'], 'listed while the server is up');

  const { directory, port } = s3.server;
  await s3.server.stop();
  await t.rejects(readFile(mount.path('vol/disk.raw')), { code: 'EIO' }, 'the read fails with EIO');
  t.match(mount.output(), /read \/vol\/disk\.raw failed \(EIO\)/, 'and is logged');
  t.ok(isStagefsMount(mountAt(mount.mountpoint)), 'the mount is still up');
  t.same(await readdir(mount.path('vol')), ['disk.raw', 'small.txt'], 'and answers from its metadata cache');

  const restarted = await EmbeddedS3.start({ directory, port });
  t.teardown(() => restarted.stop());
  t.same(await readFile(mount.path('vol/disk.raw')), data, 'reads work again once the server is back');
});
