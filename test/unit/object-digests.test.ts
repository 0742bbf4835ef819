import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import t from 'tap';
import { md5OfEtag, type DigestReply } from '../../src/cache/object-digests';
import { portableCrc32c } from '../../src/util/crc32c';

t.test('the MD5 an ETag stands for', async (t) => {
  t.equal(md5OfEtag('"d41d8cd98f00b204e9800998ecf8427e"'), 'd41d8cd98f00b204e9800998ecf8427e', 'a quoted single-part ETag');
  t.equal(md5OfEtag('D41D8CD98F00B204E9800998ECF8427E'), 'd41d8cd98f00b204e9800998ecf8427e', 'unquoted, in capitals');
  t.equal(md5OfEtag('"d41d8cd98f00b204e9800998ecf8427e-3"'), undefined, 'a multipart ETag is no MD5 of the bytes');
  t.equal(md5OfEtag('"abc"'), undefined, 'nor is any other form');
  t.equal(md5OfEtag('W/"d41d8cd98f00b204e9800998ecf8427e"'), undefined, 'nor a weak ETag');
});

t.test('the digest worker gives each digest in the form S3 sends it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'stagefs-digests-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'file');
  const data = randomBytes(3 * 1024 * 1024 + 17);
  writeFileSync(path, data);
  const worker = new Worker(join(__dirname, '..', '..', 'src', 'cache', 'digest-worker.js'));
  t.teardown(() => worker.terminate());
  const algorithms = ['MD5', 'SHA1', 'SHA256', 'CRC32', 'CRC32C'] as const;
  const split = 1024 * 1024 + 3;
  worker.postMessage({ kind: 'update', job: 7, algorithms, path, start: 0, end: split });
  worker.postMessage({ kind: 'update', job: 7, algorithms, path, start: split, end: data.length });
  worker.postMessage({ kind: 'finish', job: 7 });
  const [reply] = (await once(worker, 'message')) as [DigestReply];
  const bigEndian = (value: number) => {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(value >>> 0);
    return bytes.toString('base64');
  };
  t.same(reply, {
    job: 7,
    digests: {
      MD5: createHash('md5').update(data).digest('hex'),
      SHA1: createHash('sha1').update(data).digest('base64'),
      SHA256: createHash('sha256').update(data).digest('base64'),
      CRC32: bigEndian(crc32(data)),
      CRC32C: bigEndian(portableCrc32c(data)),
    },
  });
  worker.postMessage({ kind: 'update', job: 8, algorithms: ['MD5'], path: join(dir, 'gone'), start: 0, end: 10 });
  worker.postMessage({ kind: 'finish', job: 8 });
  const [failed] = (await once(worker, 'message')) as [DigestReply];
  t.match(failed, { job: 8, failure: /ENOENT/ }, 'a file that is gone fails the job, not the worker');
});
