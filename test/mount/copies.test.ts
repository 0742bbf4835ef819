/**
 * Renames and chmod copy objects server-side with CopySourceIfMatch: an object changed in the
 * store behind the mount's back is copied as the store holds it, and the blocks staged of its
 * old version never follow the copy. (chmod and directory renames look the object up afresh
 * before they copy; the condition closes the window between that look and the copy.)
 */
import { chmod, readFile, rename, stat } from 'node:fs/promises';
import t from 'tap';
import { dropPageCache } from '../helpers/cli';
import { startFaultProxy } from '../helpers/fault-proxy';
import { wrongBytes } from '../helpers/fault-reads';
import { randomData } from '../helpers/files';
import { engineTest, mountS3, tempDir } from '../helpers/mount';
import { objectBytes } from '../helpers/s3-read';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;

engineTest(t, 'rename, chmod and directory rename of objects changed in S3 move what S3 holds, never the old staged blocks', async (t, engine) => {
  const s3 = await startS3(t);
  const old = { file: randomData(2 * MiB + 3), chmod: randomData(MiB + 1), inDir: randomData(3 * MiB), other: randomData(4097) };
  const now = { file: randomData(old.file.length), chmod: randomData(old.chmod.length), inDir: randomData(old.inDir.length) };
  await s3.store.put('vm/a.img', old.file);
  await s3.store.put('vm/c.img', old.chmod);
  await s3.store.put('dir/x.img', old.inDir);
  await s3.store.put('dir/y.img', old.other);
  const cacheDir = tempDir(t, 'cache');
  // Listings trusted for the whole test: the mount keeps believing the old versions.
  const mount = await mountS3(t, s3, { engine, cacheDir, args: ['--metadata-ttl', '10m'] });
  for (const [path, data] of [['vm/a.img', old.file], ['vm/c.img', old.chmod], ['dir/x.img', old.inDir], ['dir/y.img', old.other]] as const) {
    t.equal(wrongBytes(await readFile(mount.path(path)), data), 0, `${path} staged whole`);
  }

  // Out of band: other bytes of the same size, so only the ETag tells the versions apart.
  await s3.store.put('vm/a.img', now.file);
  await s3.store.put('vm/c.img', now.chmod);
  await s3.store.put('dir/x.img', now.inDir);

  await rename(mount.path('vm/a.img'), mount.path('vm/b.img'));
  await chmod(mount.path('vm/c.img'), 0o600);
  await rename(mount.path('dir'), mount.path('moved'));
  const refused = s3.requests().filter((r) => r.method === 'PUT' && r.status === 412).map((r) => r.url.split('?')[0]);
  t.ok(refused.includes('/test/vm/b.img'), `the copy of the old version was refused (412), then made of the current one`);

  const expected: Array<[string, string, Buffer]> = [
    ['vm/b.img', 'vm/b.img', now.file],
    ['vm/c.img', 'vm/c.img', now.chmod],
    ['moved/x.img', 'moved/x.img', now.inDir],
    ['moved/y.img', 'moved/y.img', old.other],
  ];
  for (const [key, , data] of expected) t.equal(wrongBytes((await objectBytes(s3, key))!, data), 0, `S3 holds the current bytes at ${key}`);
  // What the kernel cached of the old versions is not the question here; the mount's cache is.
  dropPageCache();
  for (const [, path, data] of expected) t.equal(wrongBytes(await readFile(mount.path(path)), data), 0, `${path} reads as S3 holds it`);
  t.equal((await stat(mount.path('vm/c.img'))).mode & 0o777, 0o600, 'the mode was set');

  await mount.unmount();
  const again = await mountS3(t, s3, { engine, cacheDir });
  for (const [, path, data] of expected) t.equal(wrongBytes(await readFile(again.path(path)), data), 0, `${path} after a remount over the same cache`);
});

engineTest(t, 'a rename of an object nobody changed still moves its staged blocks along', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(3 * MiB);
  await s3.store.put('iso/a.iso', data);
  const mount = await mountS3(t, s3, { engine });
  t.equal(wrongBytes(await readFile(mount.path('iso/a.iso')), data), 0, 'staged');
  const gets = s3.gets('iso/a.iso').length;
  await rename(mount.path('iso/a.iso'), mount.path('iso/b.iso'));
  dropPageCache();
  t.equal(wrongBytes(await readFile(mount.path('iso/b.iso')), data), 0, 'the renamed file reads right');
  t.equal(s3.gets('iso/b.iso').length, 0, `and from the blocks staged before (${gets} GETs of the old name, none of the new)`);
});

engineTest(t, 'a chmod that races a change in S3 is made on the version S3 holds', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(2 * MiB);
  await s3.store.put('vm/disk.img', data);
  const mount = await mountS3(t, s3, { engine, endpoint: proxy.endpoint });
  t.equal(wrongBytes(await readFile(mount.path('vm/disk.img')), data), 0, 'staged');
  // The object changes between the chmod's fresh look at it and its copy.
  await proxy.set([{ fault: { kind: 'replace' }, match: { method: 'PUT', keyPrefix: 'vm/disk.img' }, count: 1 }]);
  await chmod(mount.path('vm/disk.img'), 0o640);
  t.equal((await proxy.stats()).replaced.length, 1, 'the object was replaced just before the copy');
  t.ok(s3.requests().some((r) => r.method === 'PUT' && r.status === 412), 'the copy of the version looked at was refused (412)');
  const current = (await objectBytes(s3, 'vm/disk.img'))!;
  t.not(wrongBytes(current, data), 0, 'S3 holds other bytes now');
  dropPageCache();
  t.equal(wrongBytes(await readFile(mount.path('vm/disk.img')), current), 0, 'the file reads as S3 holds it, not as staged before');
  t.equal((await stat(mount.path('vm/disk.img'))).mode & 0o777, 0o640, 'with the mode set');
});
