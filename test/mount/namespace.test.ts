import { readdir, readFile, stat } from 'node:fs/promises';
import t from 'tap';
import { engineTest, ENGINES, mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';
import { putMany } from '../helpers/seed';

t.test('a directory of 10,000 objects lists completely', async (t) => {
  const s3 = await startS3(t);
  const names = Array.from({ length: 10_000 }, (_, i) => `vol-${String(i).padStart(5, '0')}.raw`);
  await putMany(s3.store, names.map((name) => [`big/${name}`, Buffer.from(name)]));
  for (const engine of ENGINES) {
    await t.test(engine, async (t) => {
      const mount = await mountS3(t, s3, { engine });
      const listed = await readdir(mount.path('big'));
      t.equal(listed.length, 10_000, 'every entry is listed');
      t.same(listed.sort(), names, 'with the right names');
      const sample = await readFile(mount.path('big/vol-09999.raw'), 'utf8');
      t.equal(sample, 'vol-09999.raw', 'the last entry reads back');
    });
  }
});

engineTest(t, 'nested directories, markers, odd keys, and a name that is both file and directory', async (t, engine) => {
  const s3 = await startS3(t);
  const objects: Array<[string, string]> = [
    ['template/tmpl/2/201/disk.qcow2', 'qcow2'],
    ['template/tmpl/2/201/template.properties', 'props'],
    ['empty-dir/', ''],
    ['odd/with space.txt', 'space'],
    ['odd/ünïcødé-文件.txt', 'unicode'],
    ['odd/100%.txt', 'percent'],
    ['odd/a+b.txt', 'plus'],
    ['odd/.hidden', 'dot'],
    ['both', 'the file'],
    ['both/child', 'the child'],
    ['top.txt', 'top'],
  ];
  await putMany(s3.store, objects.map(([key, body]) => [key, Buffer.from(body)]));
  const mount = await mountS3(t, s3, { engine });

  t.same((await readdir(mount.mountpoint)).sort(), ['both', 'empty-dir', 'odd', 'template', 'top.txt'], 'root listing');
  t.same(await readdir(mount.path('template/tmpl/2/201')), ['disk.qcow2', 'template.properties'], 'deep listing');
  t.ok((await stat(mount.path('template/tmpl'))).isDirectory(), 'intermediate prefixes are directories');
  t.same(await readdir(mount.path('empty-dir')), [], 'a dir/ marker is an empty directory');
  t.ok((await stat(mount.path('empty-dir'))).isDirectory(), 'and stats as one');
  t.same((await readdir(mount.path('odd'))).sort(), ['.hidden', '100%.txt', 'a+b.txt', 'with space.txt', 'ünïcødé-文件.txt'].sort(), 'odd names list');
  for (const [key, body] of objects.filter(([key]) => key.startsWith('odd/'))) {
    t.equal(await readFile(mount.path(key), 'utf8'), body, `${key} reads back`);
  }
  t.ok((await stat(mount.path('both'))).isDirectory(), 'a name that is both shows as the directory');
  t.equal(await readFile(mount.path('both/child'), 'utf8'), 'the child', 'whose children read');

  const file = await stat(mount.path('top.txt'));
  t.equal(file.size, 3, 'size comes from the object');
  t.equal(file.mode & 0o777, 0o644, 'files are 0644');
  t.ok(Math.abs(file.mtimeMs - Date.now()) < 120_000, 'mtime comes from the object');
  const again = await stat(mount.path('top.txt'));
  t.equal(again.ino, file.ino, 'inode numbers are stable');
  await t.rejects(stat(mount.path('no-such-file')), { code: 'ENOENT' }, 'missing names are ENOENT');
});

engineTest(t, 'a prefix mount shows only what is under the prefix', async (t, engine) => {
  const s3 = await startS3(t);
  await putMany(s3.store, [
    ['zone1/iso/a.iso', Buffer.from('a')],
    ['zone1/iso/b.iso', Buffer.from('b')],
    ['zone2/iso/c.iso', Buffer.from('c')],
  ]);
  const mount = await mountS3(t, s3, { engine, prefix: 'zone1' });
  t.same(await readdir(mount.mountpoint), ['iso'], 'root is the prefix');
  t.same(await readdir(mount.path('iso')), ['a.iso', 'b.iso'], 'children of the prefix');
  t.equal(await readFile(mount.path('iso/b.iso'), 'utf8'), 'b', 'reads under the prefix');
});
