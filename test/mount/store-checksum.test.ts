/**
 * Objects fetched whole are checked against the checksums the store gives (the MD5 of a
 * single-part ETag, x-amz-checksum-* on HEAD): bytes the store never had, sent under a valid
 * response, are dropped from the cache and fetched again.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { dropPageCache } from '../helpers/cli';
import { startFaultProxy } from '../helpers/fault-proxy';
import { cacheStatus, mountThrough, settledStatus, wrongBytes, type CacheStatus } from '../helpers/fault-reads';
import { randomData } from '../helpers/files';
import { engineTest, mountS3, type TestMount } from '../helpers/mount';
import { startS3 } from '../helpers/s3';
import { crc32c } from '../../src/util/crc32c';
import { sleep } from '../../src/util/deferred';

const MiB = 1024 * 1024;
const WAIT_MS = 30_000;

/** The status once `ready` holds for it (the index is written every 200 ms), or after 30 s. */
async function statusWhen(mount: TestMount, ready: (status: CacheStatus) => boolean): Promise<CacheStatus> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const status = await cacheStatus(mount);
    if (ready(status) || Date.now() > deadline) return status;
    await sleep(100);
  }
}

/** Whether the mount's log gets a line matching `pattern` (within 30 s). */
async function logged(mount: TestMount, pattern: RegExp): Promise<boolean> {
  const deadline = Date.now() + WAIT_MS;
  while (!pattern.test(mount.output()) && Date.now() < deadline) await sleep(100);
  return pattern.test(mount.output());
}

engineTest(t, 'an object whose fetched bytes do not match its MD5 ETag is dropped and fetched again', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(5 * MiB + 3);
  const info = await s3.store.put('iso/image.iso', data);
  t.equal(info.etag, `"${createHash('md5').update(data).digest('hex')}"`, 'the store gives the MD5 as ETag');
  const mount = await mountS3(t, s3, { engine, endpoint: proxy.endpoint, args: ['--metadata-ttl', '10m'], env: { DEBUG: 'stagefs:verify' } });
  await proxy.set([{ fault: { kind: 'flip', at: 0.5 }, count: 1 }]);
  // This first read is served before the object is whole: it may carry the flipped byte.
  await readFile(mount.path('iso/image.iso'));
  t.equal(await proxy.injected('flip'), 1, 'one byte of one response was changed');
  const found = await statusWhen(mount, (status) => status.counters.checksumMismatches >= 1);
  t.equal(found.counters.checksumMismatches, 1, 'the object is found not to match its ETag');
  t.equal(found.stagedBytes, 0, 'its staged blocks are dropped');
  await dropPageCache();
  t.equal(wrongBytes(await readFile(mount.path('iso/image.iso')), data), 0, 'read again, it is fetched again and right');
  const after = await settledStatus(mount);
  t.equal(after.stagedBytes, data.length, 'and staged whole');
  t.ok(await logged(mount, /image\.iso .*: the staged object matches the store's MD5/), 'the second fetch matches its ETag');
  t.equal((await cacheStatus(mount)).counters.checksumMismatches, 1, 'and no other mismatch is counted');
});

engineTest(t, 'a store whose ETags are not MD5s is found out after one fetch again, not fetched in a loop', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(3 * MiB);
  await s3.store.put('kms/volume.raw', data);
  const mount = await mountThrough(t, s3, proxy, engine);
  // The same byte differs in every response: as far as the mount can tell, those are the object's bytes.
  await proxy.set([{ fault: { kind: 'flip', at: 0.25 }, match: { keyPrefix: 'kms/' } }]);
  await readFile(mount.path('kms/volume.raw'));
  await statusWhen(mount, (status) => status.counters.checksumMismatches >= 1);
  await dropPageCache();
  await readFile(mount.path('kms/volume.raw'));
  const status = await settledStatus(mount);
  t.equal(status.stagedBytes, data.length, 'the second fetch stays staged');
  t.match(mount.output(), /ETags are not MD5s/, 'the log says the check stopped, and why');
  t.equal(status.counters.checksumMismatches, 1, 'one mismatch, then no more checks');
  const gets = s3.gets('kms/volume.raw').length;
  await dropPageCache();
  await readFile(mount.path('kms/volume.raw'));
  t.equal(s3.gets('kms/volume.raw').length, gets, 'a third read is served from the cache');
});

/** A full-object checksum as S3 sends it: base64 of the big-endian CRC32C. */
function crc32cHeader(data: Buffer): string {
  const value = Buffer.alloc(4);
  value.writeUInt32BE(crc32c(data));
  return value.toString('base64');
}

t.test('an object is checked against the full-object checksum the store gives on HEAD too', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(6 * MiB + 11);
  const key = 'mp/template.qcow2';
  await s3.store.put(key, data);
  const mount = await mountS3(t, s3, { engine: 'native', endpoint: proxy.endpoint, args: ['--metadata-ttl', '10m'], env: { DEBUG: 'stagefs:verify' } });
  await proxy.set([
    { fault: { kind: 'header', name: 'x-amz-checksum-crc32c', value: crc32cHeader(data) }, match: { method: 'HEAD', keyPrefix: 'mp/' } },
    { fault: { kind: 'flip', at: 0.3 }, match: { keyPrefix: 'mp/' }, count: 1 },
  ]);
  await readFile(mount.path(key));
  t.equal(await proxy.injected('flip'), 1, 'one byte of one response was changed');
  const found = await statusWhen(mount, (status) => status.counters.checksumMismatches >= 1);
  t.equal(found.counters.checksumMismatches, 1, 'the object is found not to match the store\'s CRC32C');
  await dropPageCache();
  t.equal(wrongBytes(await readFile(mount.path(key)), data), 0, 'read again, it is fetched again and right');
  t.ok(await logged(mount, /template\.qcow2 .*: the staged object matches the store's MD5 and CRC32C/), 'and then matches both checksums');
});

t.test('bytes the store sends twice against its own checksum are kept, with a warning, not fetched in a loop', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(2 * MiB + 5);
  await s3.store.put('odd/volume.raw', data);
  const mount = await mountThrough(t, s3, proxy, 'native');
  const otherSha256 = createHash('sha256').update(randomData(100)).digest('base64');
  await proxy.set([{ fault: { kind: 'header', name: 'x-amz-checksum-sha256', value: otherSha256 }, match: { method: 'HEAD', keyPrefix: 'odd/' } }]);
  await readFile(mount.path('odd/volume.raw'));
  await statusWhen(mount, (status) => status.counters.checksumMismatches >= 1);
  await dropPageCache();
  t.equal(wrongBytes(await readFile(mount.path('odd/volume.raw')), data), 0, 'the bytes read are the object\'s (its MD5 ETag matches)');
  t.ok(await logged(mount, /volume\.raw .*came twice with SHA256 .*not the store's own checksum: kept/), 'the log says the bytes are kept, and why');
  const status = await settledStatus(mount);
  t.equal(status.counters.checksumMismatches, 1, 'one mismatch, no loop');
  t.equal(status.stagedBytes, data.length, 'the second fetch stays staged');
});
