/**
 * Files written through the mount behave as on a local disk: reopened after a write, rewritten
 * with the same bytes, read and written after unlink, renamed while open; and an upload that
 * breaks never leaves a torn object in the store.
 */
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import t from 'tap';
import { EmbeddedS3 } from '../../src/s3server/embedded-s3';
import { randomData, seeded, sha256 } from '../helpers/files';
import { engineTest, mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';
import { keys, objectBytes, objectSha256 } from '../helpers/s3-read';

const KiB = 1024;
const MiB = 1024 * KiB;

engineTest(t, 'written, fsynced and closed, probed read-only, reopened read-write: the bytes are there (qemu-img)', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  let wrong = 0;
  for (let i = 0; i < 30; i++) {
    const path = mount.path(`probe-${i}.qcow2`);
    const data = randomData(200 * KiB + i);
    const writer = await open(path, 'w');
    await writer.write(data, 0, data.length, 0);
    await writer.datasync();
    await writer.close();
    await (await open(path, 'r')).close();
    const again = await open(path, 'r+');
    const back = Buffer.alloc(data.length);
    const { bytesRead } = await again.read(back, 0, back.length, 0);
    await again.close();
    if (bytesRead !== data.length || !back.equals(data)) wrong++;
  }
  t.equal(wrong, 0, 'every one of 30 files read back as written');
});

engineTest(t, 'a loop of write at a random offset, close, short read, full read never reads wrong bytes', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  const path = mount.path('loop.img');
  const random = seeded(7);
  let expected = randomData(64 * KiB);
  await writeFile(path, expected);
  let wrong = 0;
  for (let cycle = 0; cycle < 60; cycle++) {
    const chunk = randomData(1 + Math.floor(random() * 20 * KiB));
    const position = Math.floor(random() * (expected.length + 8 * KiB));
    const writer = await open(path, 'r+');
    await writer.write(chunk, 0, chunk.length, position);
    await writer.close();
    const grown = Buffer.alloc(Math.max(expected.length, position + chunk.length));
    expected.copy(grown);
    chunk.copy(grown, position);
    expected = grown;
    const reader = await open(path, 'r');
    const head = Buffer.alloc(512);
    await reader.read(head, 0, head.length, 0);
    await reader.close();
    if (!head.equals(expected.subarray(0, 512))) wrong++;
    if (!(await readFile(path)).equals(expected)) wrong++;
  }
  t.equal(wrong, 0, 'no short or full read differed in 60 cycles');
  t.ok((await objectBytes(s3, 'loop.img'))?.equals(expected), 'and the store holds the last version');
});

engineTest(t, 'rewriting identical bytes in place, twice, succeeds and changes nothing', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  await writeFile(mount.path('s'), 'AAAA');
  for (let i = 0; i < 2; i++) {
    const writer = await open(mount.path('s'), 'r+');
    await writer.write(Buffer.from('AAAA'), 0, 4, 0);
    await writer.close();
    t.equal(await readFile(mount.path('s'), 'utf8'), 'AAAA', `rewrite ${i + 1} reads back`);
  }
  t.equal((await objectBytes(s3, 's'))?.toString(), 'AAAA', 'the store has it');
});

engineTest(t, 'a descriptor open before unlink keeps reading and writing the file; the object goes at unlink', async (t, engine) => {
  const s3 = await startS3(t);
  const stored = randomData(3 * MiB + 5);
  await s3.store.put('iso/install.iso', stored);
  const mount = await mountS3(t, s3, { engine });

  const reader = await open(mount.path('iso/install.iso'), 'r');
  await rm(mount.path('iso/install.iso'));
  t.notOk(await s3.store.head('iso/install.iso'), 'the object is deleted at unlink');
  await t.rejects(stat(mount.path('iso/install.iso')), { code: 'ENOENT' }, 'the name is gone');
  const back = Buffer.alloc(stored.length);
  const { bytesRead } = await reader.read(back, 0, back.length, 0);
  await reader.close();
  t.equal(bytesRead, stored.length, 'the open reader still reads all of it');
  t.ok(back.equals(stored), 'the bytes it had');

  const written = randomData(300 * KiB);
  const writer = await open(mount.path('scratch.tmp'), 'w+');
  await writer.write(written, 0, written.length, 0);
  await rm(mount.path('scratch.tmp'));
  const more = randomData(10 * KiB);
  await writer.write(more, 0, more.length, written.length);
  const all = Buffer.alloc(written.length + more.length);
  await writer.read(all, 0, all.length, 0);
  await writer.close();
  t.ok(all.equals(Buffer.concat([written, more])), 'a file being written reads and writes through its descriptor after unlink');
  t.notOk(await s3.store.head('scratch.tmp'), 'and is never uploaded');
  t.same(await keys(s3), [], 'no object stands in for the deleted files meanwhile');
});

engineTest(t, 'renaming a file while a writer has it open: the writes land under the new name only', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  const first = randomData(100 * KiB);
  const second = randomData(50 * KiB);
  const writer = await open(mount.path('export.tmp'), 'w');
  await writer.write(first, 0, first.length, 0);
  await rename(mount.path('export.tmp'), mount.path('export.raw'));
  await writer.write(second, 0, second.length, first.length);
  await writer.close();
  t.equal(await objectSha256(s3, 'export.raw'), sha256(Buffer.concat([first, second])), 'the new name holds every write');
  t.notOk(await s3.store.head('export.tmp'), 'the old name is not in the store');
  t.equal((await readFile(mount.path('export.raw'))).length, first.length + second.length, 'and the mount shows it');
});

engineTest(t, 'an upload that breaks midway leaves the previous object, never a torn one', async (t, engine) => {
  const s3 = await startS3(t);
  const before = randomData(MiB);
  await s3.store.put('tmpl/disk.qcow2', before);
  const mount = await mountS3(t, s3, { engine });
  const after = randomData(40 * MiB);
  const writer = await open(mount.path('tmpl/disk.qcow2'), 'w');
  await writer.write(after, 0, after.length, 0);
  // The store goes away while the close uploads 40 MiB in parts.
  const { directory, port } = s3.server;
  const closing = writer.close().then(
    () => undefined,
    (err: NodeJS.ErrnoException) => err.code,
  );
  await s3.server.stop();
  const failure = await closing;
  const restarted = await EmbeddedS3.start({ directory, port });
  t.teardown(() => restarted.stop());
  const seen = await objectSha256(s3, 'tmpl/disk.qcow2');
  t.ok(seen === sha256(before) || seen === sha256(after), `the store holds one whole version (close said ${failure ?? 'ok'})`);
  if (failure) t.equal(failure, 'EIO', 'a failed close says EIO');
});
