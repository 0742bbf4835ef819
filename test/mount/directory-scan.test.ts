/**
 * Readahead across a directory's files: opens that walk a listing in order get the next small
 * files fetched before they are opened, each exactly once and with the right bytes; opens in any
 * other order fetch nothing they did not ask for.
 */
import { readdir, readFile } from 'node:fs/promises';
import t from 'tap';
import { statusReport } from '../helpers/cli';
import { eventually } from '../helpers/eventually';
import { randomData, sha256 } from '../helpers/files';
import { engineTest, mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';
import { putMany } from '../helpers/seed';

const SCANNED = 400;
const AHEAD = 8;
const MiB = 1024 * 1024;
const name = (i: number) => `f${String(i).padStart(4, '0')}`;

engineTest(t, 'opens in listing order fetch the next small files ahead, each once; other orders fetch nothing extra', async (t, engine) => {
  const s3 = await startS3(t);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < SCANNED; i++) files.set(`scan/${name(i)}`, randomData(1000 + ((i * 7919) % 60_000)));
  files.set(`scan/${name(SCANNED)}`, randomData(3 * MiB)); // too large to fetch ahead
  files.set(`scan/${name(SCANNED + 1)}`, Buffer.alloc(0));
  for (let i = 0; i < 40; i++) files.set(`picked/${name(i)}`, randomData(4096 + i));
  await putMany(s3.store, [...files]);
  const mount = await mountS3(t, s3, { engine });

  t.equal((await readdir(mount.path('scan'))).length, SCANNED + 2, 'listed');
  const firstRead = 10;
  for (let i = 0; i < firstRead; i++) t.equal(sha256(await readFile(mount.path(`scan/${name(i)}`))), sha256(files.get(`scan/${name(i)}`)!), `${name(i)} reads right`);
  const fetchedAhead = Array.from({ length: AHEAD }, (_, k) => `scan/${name(firstRead + k)}`);
  t.ok(await eventually(() => fetchedAhead.every((key) => s3.gets(key).length === 1), 30_000), `the ${AHEAD} files after the last one opened are fetched before they are opened`);

  let wrong = 0;
  for (let i = firstRead; i < SCANNED + 2; i++) {
    const key = `scan/${name(i)}`;
    if (sha256(await readFile(mount.path(key))) !== sha256(files.get(key)!)) wrong++;
  }
  t.equal(wrong, 0, 'every file of the scan reads its own bytes');
  const twice = [...files.keys()].filter((key) => key.startsWith('scan/') && s3.gets(key).length > 1 && files.get(key)!.length <= MiB);
  t.same(twice, [], 'no small file was fetched twice');

  t.equal((await readdir(mount.path('picked'))).length, 40, 'another directory listed');
  // Every other entry, last first: no open is the next entry after the one before it.
  const picked = Array.from({ length: 20 }, (_, k) => `picked/${name(38 - 2 * k)}`);
  for (const key of picked) t.equal(sha256(await readFile(mount.path(key))), sha256(files.get(key)!), `${key} reads right`);
  const fetched = [...files.keys()].filter((key) => key.startsWith('picked/') && s3.gets(key).length > 0);
  t.same(fetched.sort(), [...picked].sort(), 'opens out of listing order fetch only the files opened');

  // The index records entries within a fraction of a second; status parses only if its JSON (over 64 KiB here) reaches the pipe whole.
  let entries = 0;
  const recorded = await eventually(async () => (entries = (await statusReport(mount.cacheDir)).entries.length) >= SCANNED, 30_000, 200);
  t.ok(recorded, `stagefs status --json of ${entries} entries reads whole through a pipe`);
});
