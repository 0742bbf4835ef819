import { existsSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CacheIndex } from '../../src/cache/cache-index';
import { runCli } from '../helpers/cli';
import { writeThenKill } from '../helpers/crash';
import { randomData, sha256, sha256File } from '../helpers/files';
import { engineTest, mountS3, tempDir } from '../helpers/mount';
import { startS3 } from '../helpers/s3';
import { objectSha256 } from '../helpers/s3-read';

const MiB = 1024 * 1024;

/** The staging file of `key` in a cache no mount uses. */
async function stagingFileOf(cacheDir: string, key: string): Promise<string> {
  const index = CacheIndex.open(cacheDir, { readOnly: true });
  const record = index.entries().find((r) => r.key === key);
  await index.close();
  if (!record) throw new Error(`${key} is not staged`);
  return join(cacheDir, 'staged', record.file.slice(0, 2), record.file);
}

type Damage = 'truncated' | 'garbage';

function damageIndex(cacheDir: string, damage: Damage): void {
  const dataFile = join(cacheDir, 'index', 'data.mdb');
  if (damage === 'truncated') truncateSync(dataFile, 8192);
  else writeFileSync(dataFile, randomData(statSync(dataFile).size));
}

function indexesSetAside(cacheDir: string): string[] {
  return readdirSync(cacheDir).filter((name) => name.startsWith('index.damaged-'));
}

engineTest(t, 'a staging file cut short between mounts is fetched again, never served as zeros', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(12 * MiB + 321);
  await s3.store.put('images/disk.raw', data);
  const cacheDir = tempDir(t, 'cache');
  const first = await mountS3(t, s3, { engine, cacheDir });
  t.equal(await sha256File(first.path('images/disk.raw')), sha256(data), 'cold read');
  await first.unmount();
  const staged = await stagingFileOf(cacheDir, 'images/disk.raw');
  t.equal(statSync(staged).size, data.length, 'the whole object was staged');
  truncateSync(staged, 3 * MiB + 17);
  const gets = s3.gets('images/disk.raw').length;

  const second = await mountS3(t, s3, { engine, cacheDir });
  t.match(second.output(), /the staging file of images\/disk\.raw holds 3145745 of its 12583233 bytes/, 'the mount says what it found');
  t.equal(await sha256File(second.path('images/disk.raw')), sha256(data), 'the remount reads the object\'s bytes');
  t.ok(s3.gets('images/disk.raw').length > gets, 'the bytes past the cut were fetched again');
});

for (const damage of ['truncated', 'garbage'] as const) {
  engineTest(t, `a ${damage} index is moved aside with a warning, and the mount comes up and reads right`, async (t, engine) => {
    const s3 = await startS3(t);
    const data = randomData(6 * MiB + 5);
    await s3.store.put('iso/tools.iso', data);
    const cacheDir = tempDir(t, 'cache');
    const first = await mountS3(t, s3, { engine, cacheDir });
    t.equal(await sha256File(first.path('iso/tools.iso')), sha256(data), 'cold read');
    await first.unmount();
    damageIndex(cacheDir, damage);

    const status = await runCli(['status', '--cache-dir', cacheDir]);
    t.not(status.code, 0, 'stagefs status fails');
    t.match(status.stderr.trim(), /^[^\n]*the cache index of .* is damaged \([^\n]*\)[^\n]*$/, `with one line (${status.stderr.trim()})`);

    const second = await mountS3(t, s3, { engine, cacheDir });
    const warnings = second.output().match(/the cache index is damaged[^\n]*/g) ?? [];
    t.equal(warnings.length, 1, `one warning: ${warnings[0]}`);
    const aside = indexesSetAside(cacheDir);
    t.equal(aside.length, 1, 'the damaged index was moved aside');
    t.ok(existsSync(join(cacheDir, aside[0], 'data.mdb')), 'with its data file');
    t.equal(await sha256File(second.path('iso/tools.iso')), sha256(data), 'the file reads right');
    const after = await runCli(['status', '--cache-dir', cacheDir, '--json']);
    t.equal(after.code, 0, 'stagefs status reads the new index');
  });
}

engineTest(t, 'a write the daemon died before uploading survives a damaged index and is uploaded', async (t, engine) => {
  const s3 = await startS3(t);
  const cacheDir = tempDir(t, 'cache');
  const data = randomData(5 * MiB + 9);
  await writeThenKill(t, s3, { engine, cacheDir }, 'volumes/export.raw', data);
  damageIndex(cacheDir, 'garbage');

  const second = await mountS3(t, s3, { engine, cacheDir });
  t.match(second.output(), /the cache index is damaged/, 'the damaged index was seen');
  t.equal(await objectSha256(s3, 'volumes/export.raw'), sha256(data), 'the remount uploaded the bytes written before the crash');
  t.equal(await sha256File(second.path('volumes/export.raw')), sha256(data), 'and serves them');
});
