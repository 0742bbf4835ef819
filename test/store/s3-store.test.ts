/**
 * The S3 store against the embedded S3 server (its own process): copies are conditional on the
 * source's ETag, on both paths (CopyObject, and UploadPartCopy past 5 GiB).
 */
import t from 'tap';
import { randomData } from '../helpers/files';
import { objectBytes } from '../helpers/s3-read';
import { startS3 } from '../helpers/s3';

const GiB = 1024 ** 3;

t.test('a copy is made only of the version asked for', async (t) => {
  const s3 = await startS3(t);
  const first = await s3.store.put('src', randomData(1000));
  const second = await s3.store.put('src', randomData(1000));
  const failure = await s3.store.copy(first, 'dst').catch((err: unknown) => err);
  t.match(failure, { kind: 'PreconditionFailed' }, 'a copy of a version the store no longer holds is refused');
  t.equal(await objectBytes(s3, 'dst'), undefined, 'and nothing is copied');
  const copy = await s3.store.copy(second, 'dst');
  t.same(await objectBytes(s3, 'dst'), await objectBytes(s3, 'src'), 'a copy of the current version is made');
  t.equal(copy.size, 1000);
});

t.test('every part of a multipart copy carries the condition', async (t) => {
  const s3 = await startS3(t);
  const first = await s3.store.put('big', randomData(1000));
  await s3.store.put('big', randomData(1000));
  // Past 5 GiB the copy goes in parts (UploadPartCopy); the size only chooses the path here.
  const stale = { ...first, size: 6 * GiB };
  const failure = await s3.store.copy(stale, 'dst', {}).catch((err: unknown) => err);
  t.match(failure, { kind: 'PreconditionFailed' }, 'the part copy of a stale version is refused');
  const parts = s3.requests().filter((r) => r.method === 'PUT' && r.url.includes('partNumber='));
  t.ok(parts.length > 0 && parts.every((r) => r.status === 412), 'by the server, on the UploadPartCopy itself');
  t.ok(s3.requests().some((r) => r.method === 'DELETE' && r.url.includes('uploadId=')), 'and the multipart upload is aborted');
  const headed = await s3.store.copy(stale, 'dst').catch((err: unknown) => err);
  t.match(headed, { kind: 'PreconditionFailed' }, 'without new metadata, the source is looked at first and refused as well');
});
