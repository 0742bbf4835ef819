/**
 * What lookups cost in requests to the store: one HEAD for an existing file, and once the
 * metadata TTL has run out, a pass over a listed directory costs its listing, not a request per
 * file, while an object replaced in the store is still read as its new version.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import t from 'tap';
import type { RequestLogLine } from '../../src/s3server/server-process';
import { engineTest, mountS3 } from '../helpers/mount';
import { BUCKET, startS3 } from '../helpers/s3';
import { putMany } from '../helpers/seed';

const TTL_MS = 2000;
const FILES = 200;
const names = Array.from({ length: FILES }, (_, i) => `file-${String(i).padStart(4, '0')}.bin`);
const body = (name: string, version = 1) => Buffer.from(`${name} version ${version} `.repeat(100));

const keyOf = (request: RequestLogLine) => decodeURIComponent(request.url.split('?')[0]).slice(`/${BUCKET}/`.length);
const isListing = (request: RequestLogLine) => request.method === 'GET' && /[?&]list-type=2/.test(request.url);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

engineTest(t, 'a lookup costs one HEAD; expired entries of a listed directory cost one listing', async (t, engine) => {
  const s3 = await startS3(t);
  await putMany(s3.store, [['single/file', body('single')], ...names.map((name): [string, Buffer] => [`small/${name}`, body(name)])]);
  const mount = await mountS3(t, s3, { engine, args: ['--metadata-ttl', `${TTL_MS}ms`] });
  const since = (mark: number) => s3.requests().slice(mark);

  await stat(mount.path('single'));
  let mark = s3.requests().length;
  t.equal((await stat(mount.path('single/file'))).size, body('single').length);
  t.same(since(mark).map((r) => `${r.method} ${keyOf(r)}`), ['HEAD single/file'], 'the lookup of an existing file is one HEAD');

  t.equal((await readdir(mount.path('small'))).length, FILES);
  const inodes = new Map<string, number>();
  for (const name of names) {
    inodes.set(name, (await stat(mount.path(`small/${name}`))).ino);
    t.same(await readFile(mount.path(`small/${name}`)), body(name));
  }
  await s3.store.put(`small/${names[7]}`, body(names[7], 2));
  await sleep(TTL_MS + 200);

  mark = s3.requests().length;
  const started = Date.now();
  let wrong = 0;
  for (const name of names) {
    const replaced = name === names[7];
    const info = await stat(mount.path(`small/${name}`));
    const bytes = await readFile(mount.path(`small/${name}`));
    if (replaced) {
      t.same(bytes, body(name, 2), 'an object replaced in the store reads as its new version');
      t.equal(info.size, body(name, 2).length, 'with its new size');
      t.not(info.ino, inodes.get(name), 'as a new inode');
    } else if (info.ino !== inodes.get(name) || !bytes.equals(body(name))) wrong++;
  }
  const periods = Math.floor((Date.now() - started) / TTL_MS) + 1;
  t.equal(wrong, 0, 'the other files keep their inodes and bytes');
  const requests = since(mark);
  const heads = requests.filter((r) => r.method === 'HEAD' && keyOf(r).startsWith('small/'));
  t.same(heads.map(keyOf), [`small/${names[7]}`], 'only the replaced object is HEADed');
  t.same(s3.gets(`small/${names[0]}`).length, 1, 'an unchanged object is read from the cache');
  const listings = requests.filter(isListing);
  t.ok(listings.length >= 1, 'the directory is listed again');
  // The replaced object's HEAD and GET; per TTL period at most the directory's listing, and
  // HEAD + LIST of the directory itself.
  t.ok(requests.length <= 2 + 3 * periods, `${requests.length} requests for ${FILES} files in ${periods} TTL period(s), not one per file`);
});
