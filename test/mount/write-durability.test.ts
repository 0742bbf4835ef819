import { execFileSync } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import t from 'tap';
import { EmbeddedS3 } from '../../src/s3server/embedded-s3';
import { sleep } from '../../src/util/deferred';
import { statusReport } from '../helpers/cli';
import { eventually } from '../helpers/eventually';
import { writeThenKill } from '../helpers/crash';
import { randomData, sha256, sha256File } from '../helpers/files';
import { engineTest, mountS3, tempDir } from '../helpers/mount';
import { startS3 } from '../helpers/s3';
import { objectBytes, objectSha256 } from '../helpers/s3-read';

const MiB = 1024 * 1024;

/**
 * Writes 1 MiB chunks of one random chunk into a new file until a write fails or `maxChunks`
 * are written, then closes it; returns the failure and the bytes the file must hold.
 */
async function writeUntilFailure(path: string, maxChunks: number): Promise<{ failure: NodeJS.ErrnoException | undefined; expected: Buffer }> {
  const chunk = randomData(MiB);
  const writer = await open(path, 'w');
  let written = 0;
  let failure: NodeJS.ErrnoException | undefined;
  try {
    for (let i = 0; i < maxChunks; i++) {
      // A write the kernel split into pieces may land partly before ENOSPC.
      written += (await writer.write(chunk, 0, chunk.length, written)).bytesWritten;
    }
  } catch (err) {
    failure = err as NodeJS.ErrnoException;
  }
  await writer.close();
  return { failure, expected: Buffer.concat(Array.from({ length: Math.ceil(written / MiB) }, () => chunk)).subarray(0, written) };
}

engineTest(t, 'a crash before upload loses nothing: the remount uploads it first', async (t, engine) => {
  const s3 = await startS3(t);
  const cacheDir = tempDir(t, 'cache');
  const data = randomData(8 * MiB + 5);
  await writeThenKill(t, s3, { engine, cacheDir }, 'volumes/export.raw', data);

  const second = await mountS3(t, s3, { engine, cacheDir });
  t.equal(await objectSha256(s3, 'volumes/export.raw'), sha256(data), 'the remount uploaded the bytes written before the crash');
  t.equal(await sha256File(second.path('volumes/export.raw')), sha256(data), 'and serves them');
  t.equal((await statusReport(cacheDir)).pendingUploads.count, 0, 'nothing is pending');
});

engineTest(t, 'an upload that fails reports EIO at close, stays dirty, and goes up once the server is back', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  const data = randomData(3 * MiB + 1);
  const writer = await open(mount.path('template.qcow2'), 'w');
  await writer.write(data, 0, data.length, 0);
  const { directory, port } = s3.server;
  await s3.server.stop();
  await t.rejects(writer.close(), { code: 'EIO' }, 'close reports EIO');
  await sleep(600);
  const pending = (await statusReport(mount.cacheDir)).pendingUploads.files.find((e) => e.key === 'template.qcow2');
  t.equal(pending?.dirty, true, 'status shows the file pending');
  t.ok(pending?.error, `with the last error (${pending?.error})`);
  t.match(mount.output(), /upload of template\.qcow2 failed/, 'and the log says so');
  t.equal(await sha256File(mount.path('template.qcow2')), sha256(data), 'the mount still serves the written bytes');

  const restarted = await EmbeddedS3.start({ directory, port });
  t.teardown(() => restarted.stop());
  t.ok(await eventually(async () => (await objectSha256(s3, 'template.qcow2')) === sha256(data), 60_000, 250), 'uploaded once the server is back');
  t.ok(await eventually(async () => (await statusReport(mount.cacheDir)).pendingUploads.count === 0, 5_000, 250), 'and no longer pending');
});

engineTest(t, 'a sequential write several times the cache size streams through it to the store', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', '24MiB'] });
  const kept = randomData(4 * MiB);
  await writeFile(mount.path('kept.bin'), kept);
  const { failure, expected } = await writeUntilFailure(mount.path('snapshot.vhd'), 100);
  t.equal(failure, undefined, `no write failed (${expected.length / MiB} MiB written)`);
  t.equal(expected.length, 100 * MiB, 'all of it');
  t.equal(await objectSha256(s3, 'snapshot.vhd'), sha256(expected), 'the object holds every byte (sha256)');
  t.equal(await objectSha256(s3, 'kept.bin'), sha256(kept), 'an earlier file is intact');
  t.equal(await sha256File(mount.path('snapshot.vhd')), sha256(expected), 'and the mount reads it back');
  t.equal((await statusReport(mount.cacheDir)).pendingUploads.count, 0, 'nothing is left pending');
});

/** Writes 1 MiB chunks at offsets from `chunks` MiB down to 0 (a writer the cache cannot stream), then closes. */
async function writeBackwards(path: string, chunks: number): Promise<{ writeFailure?: string; closeFailure?: string }> {
  const writer = await open(path, 'r+');
  let writeFailure: string | undefined;
  for (let i = chunks - 1; i >= 0 && !writeFailure; i--) {
    await writer.write(randomData(MiB), 0, MiB, i * MiB).catch((err: NodeJS.ErrnoException) => (writeFailure = err.code));
  }
  const closeFailure = await writer.close().then(
    () => undefined,
    (err: NodeJS.ErrnoException) => err.code,
  );
  return { writeFailure, closeFailure };
}

engineTest(t, 'a random writer past the cache gets ENOSPC, and the store keeps the previous version', async (t, engine) => {
  const s3 = await startS3(t);
  const original = randomData(3 * MiB + 7);
  await s3.store.put('volumes/disk.raw', original);
  const mount = await mountS3(t, s3, { engine, args: ['--cache-size', '16MiB'] });
  const { writeFailure, closeFailure } = await writeBackwards(mount.path('volumes/disk.raw'), 64);
  t.equal(writeFailure, 'ENOSPC', 'a write fails with ENOSPC');
  t.equal(closeFailure, 'ENOSPC', 'and close reports it');
  t.equal(await objectSha256(s3, 'volumes/disk.raw'), sha256(original), 'the object is the one before: nothing half-written was published');
  t.equal(await sha256File(mount.path('volumes/disk.raw')), sha256(original), 'the mount shows the stored version again once closed');
  t.equal((await statusReport(mount.cacheDir)).pendingUploads.count, 0, 'nothing is pending');
});

engineTest(t, 'a full cache disk: a sequential writer streams on, a random writer gets ENOSPC and publishes nothing', async (t, engine) => {
  const s3 = await startS3(t);
  const cacheDir = tempDir(t, 'tmpfs');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', cacheDir]);
  t.teardown(() => execFileSync('umount', ['-l', cacheDir]));
  const mount = await mountS3(t, s3, { engine, cacheDir, args: ['--cache-size', '96MiB'] });
  const { failure, expected } = await writeUntilFailure(mount.path('disk-full.bin'), 160);
  t.equal(failure, undefined, `the sequential writer wrote ${expected.length / MiB} MiB`);
  t.equal(await objectSha256(s3, 'disk-full.bin'), sha256(expected), 'every byte reached the store');
  await writeFile(mount.path('random.bin'), 'before');
  const { writeFailure, closeFailure } = await writeBackwards(mount.path('random.bin'), 160);
  t.equal(writeFailure, 'ENOSPC', 'the random writer gets ENOSPC');
  t.equal(closeFailure, 'ENOSPC', 'close reports it');
  t.equal((await objectBytes(s3, 'random.bin'))?.toString(), 'before', 'and the store keeps the version before');
});
