import { copyFile, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, truncate, utimes, chmod, chown, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { dropPageCache } from '../helpers/cli';
import { randomData, sha256, sha256File } from '../helpers/files';
import { engineTest, mountS3, tempDir } from '../helpers/mount';
import { startS3 } from '../helpers/s3';
import { keys, objectBytes, objectSha256 } from '../helpers/s3-read';

const MiB = 1024 * 1024;

engineTest(t, 'a snapshot written under a temporary name, fsynced and renamed arrives whole', async (t, engine) => {
  const s3 = await startS3(t);
  const local = join(tempDir(t, 'src'), 'snap.vhd');
  const data = randomData(300 * MiB);
  await writeFile(local, data);
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', '2GiB'] });
  await mkdir(mount.path('snapshots'));
  await copyFile(local, mount.path('snapshots/snap.vhd.tmp'));
  const file = await open(mount.path('snapshots/snap.vhd.tmp'), 'r+');
  await file.sync();
  await file.close();
  await rename(mount.path('snapshots/snap.vhd.tmp'), mount.path('snapshots/snap.vhd'));
  t.same(await keys(s3, 'snapshots/'), ['snapshots/', 'snapshots/snap.vhd'], 'only the final name is in the bucket');
  t.equal(await objectSha256(s3, 'snapshots/snap.vhd'), sha256(data), 'with the same sha256');
  const gets = s3.gets('snapshots/snap.vhd').length;
  dropPageCache();
  t.equal(await sha256File(mount.path('snapshots/snap.vhd')), sha256(data), 'it reads back through the mount');
  t.equal(s3.gets('snapshots/snap.vhd').length, gets, 'from the cache: the written bytes stayed staged');
});

engineTest(t, 'random writes, truncation and overwrite of existing objects', async (t, engine) => {
  const s3 = await startS3(t);
  const original = randomData(3 * MiB + 17);
  await s3.store.put('vol/disk.raw', original);
  await s3.store.put('vol/short.txt', Buffer.from('0123456789'));
  await s3.store.put('vol/replace.iso', randomData(MiB));
  const mount = await mountS3(t, s3, { engine });

  let expected = Buffer.from(original);
  const file = await open(mount.path('vol/disk.raw'), 'r+');
  for (let i = 0; i < 40; i++) {
    const position = Math.floor(Math.random() * (expected.length + MiB));
    const chunk = randomData(1 + Math.floor(Math.random() * 70_000));
    await file.write(chunk, 0, chunk.length, position);
    if (position + chunk.length > expected.length) {
      const grown = Buffer.alloc(position + chunk.length);
      expected.copy(grown);
      expected = grown;
    }
    chunk.copy(expected, position);
  }
  const whileOpen = await readFile(mount.path('vol/disk.raw'));
  t.ok(whileOpen.equals(expected), 'another handle reads the writes while the file is open');
  await file.close();
  t.ok((await objectBytes(s3, 'vol/disk.raw'))?.equals(expected), 'the object holds the random writes after close');

  await truncate(mount.path('vol/short.txt'), 4);
  t.equal(await readFile(mount.path('vol/short.txt'), 'utf8'), '0123', 'truncate shrinks');
  const handle = await open(mount.path('vol/short.txt'), 'r+');
  await handle.truncate(8);
  await handle.close();
  t.same(await objectBytes(s3, 'vol/short.txt'), Buffer.from('0123\0\0\0\0'), 'ftruncate grows with zeros, uploaded on close');

  const replacement = randomData(2 * MiB + 3);
  await writeFile(mount.path('vol/replace.iso'), replacement);
  t.equal(await objectSha256(s3, 'vol/replace.iso'), sha256(replacement), 'an overwritten object has the new bytes');
  t.equal(await sha256File(mount.path('vol/replace.iso')), sha256(replacement), 'and reads them back');
});

engineTest(t, 'directories: mkdir, rename with contents, rmdir only when empty, unlink', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('tmpl/201/disk.qcow2', Buffer.from('disk'));
  await s3.store.put('tmpl/201/template.properties', Buffer.from('props'));
  const mount = await mountS3(t, s3, { engine });

  await mkdir(mount.path('tmpl/202'));
  t.ok((await stat(mount.path('tmpl/202'))).isDirectory(), 'mkdir');
  t.same(await keys(s3, 'tmpl/202'), ['tmpl/202/'], 'is a marker object');
  await t.rejects(rmdir(mount.path('tmpl/201')), { code: 'ENOTEMPTY' }, 'rmdir of a non-empty directory fails');
  await writeFile(mount.path('tmpl/201/extra.txt'), 'extra');

  await rename(mount.path('tmpl/201'), mount.path('tmpl/301'));
  t.same(await readdir(mount.path('tmpl')), ['202', '301'], 'the directory moved');
  t.same(await readdir(mount.path('tmpl/301')), ['disk.qcow2', 'extra.txt', 'template.properties'], 'with its contents');
  t.same(await keys(s3, 'tmpl/'), ['tmpl/202/', 'tmpl/301/disk.qcow2', 'tmpl/301/extra.txt', 'tmpl/301/template.properties'], 'in the bucket too');
  t.equal(await readFile(mount.path('tmpl/301/template.properties'), 'utf8'), 'props');
  await t.rejects(stat(mount.path('tmpl/201')), { code: 'ENOENT' }, 'the old name is gone');

  await rm(mount.path('tmpl/301/extra.txt'));
  t.notOk((await keys(s3, 'tmpl/301/')).includes('tmpl/301/extra.txt'), 'unlink deletes the object');
  await rmdir(mount.path('tmpl/202'));
  t.same(await keys(s3, 'tmpl/202'), [], 'rmdir of an empty directory removes its marker');
  await t.rejects(rmdir(mount.path('tmpl/301/disk.qcow2')), { code: 'ENOTDIR' });
  await t.rejects(rm(mount.path('tmpl/301'), { recursive: false }), 'unlink of a directory fails');
});

engineTest(t, 'chmod, chown and utimens are kept as object metadata', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('iso/boot.iso', Buffer.from('boot'));
  const cacheDir = tempDir(t, 'cache');
  const first = await mountS3(t, s3, { engine, cacheDir });
  const when = new Date('2024-05-06T07:08:09Z');
  await chmod(first.path('iso/boot.iso'), 0o600);
  await chown(first.path('iso/boot.iso'), 1234, 5678);
  await utimes(first.path('iso/boot.iso'), when, when);
  await writeFile(first.path('iso/new.img'), 'new');
  await chmod(first.path('iso/new.img'), 0o640);
  const shown = await stat(first.path('iso/boot.iso'));
  t.equal(shown.mode & 0o7777, 0o600, 'stat shows the mode');
  t.equal(shown.uid, 1234, 'the owner');
  t.equal(shown.gid, 5678, 'the group');
  t.equal(shown.mtime.getTime(), when.getTime(), 'the mtime');
  const metadata = (await s3.store.head('iso/boot.iso'))?.metadata;
  t.match(metadata, { mode: String(0o100600), uid: '1234', gid: '5678' }, 'kept as x-amz-meta-* (s3fs names)');
  t.equal(await readFile(first.path('iso/boot.iso'), 'utf8'), 'boot', 'the content is untouched');

  await first.unmount();
  const second = await mountS3(t, s3, { engine, cacheDir });
  const again = await stat(second.path('iso/boot.iso'));
  t.equal(again.mode & 0o7777, 0o600, 'after a remount: the mode');
  t.equal(again.uid, 1234, 'the owner');
  t.equal(again.mtime.getTime(), when.getTime(), 'the mtime');
  t.equal((await stat(second.path('iso/new.img'))).mode & 0o7777, 0o640, 'and the mode of a file created here');
});
