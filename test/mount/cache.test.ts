import { readFile } from 'node:fs/promises';
import t from 'tap';
import { dropPageCache } from '../helpers/cli';
import { randomData, sha256, sha256File } from '../helpers/files';
import { engineTest, mountS3, tempDir } from '../helpers/mount';
import { startS3 } from '../helpers/s3';
import { sleep } from '../../src/util/deferred';

const MiB = 1024 * 1024;

engineTest(t, 'a staged file reads again without GETs, also after a remount over the same cache', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(24 * MiB + 123);
  await s3.store.put('templates/centos.qcow2', data);
  const cacheDir = tempDir(t, 'cache');
  const first = await mountS3(t, s3, { engine, cacheDir });
  const path = first.path('templates/centos.qcow2');

  t.equal(await sha256File(path), sha256(data), 'cold read');
  const cold = s3.gets('templates/centos.qcow2').length;
  t.ok(cold > 0, `the cold read fetched with ${cold} ranged GETs`);
  t.ok(s3.gets('templates/centos.qcow2').every((r) => r.range?.startsWith('bytes=')), 'every GET is ranged');

  dropPageCache();
  t.equal(await sha256File(path), sha256(data), 'warm read');
  t.equal(s3.gets('templates/centos.qcow2').length, cold, 'the warm read issued no GET');

  await first.unmount();
  const second = await mountS3(t, s3, { engine, cacheDir });
  t.equal(await sha256File(second.path('templates/centos.qcow2')), sha256(data), 'read after remount');
  t.equal(s3.gets('templates/centos.qcow2').length, cold, 'the remounted cache served without GETs');
});

engineTest(t, 'an object overwritten in S3 is seen anew once the metadata TTL has passed', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('iso/tools.iso', Buffer.from('version one'));
  await s3.store.put('iso/same-size.iso', Buffer.from('AAAA'));
  const mount = await mountS3(t, s3, { engine, args: ['--metadata-ttl', '1s'] });
  t.equal(await readFile(mount.path('iso/tools.iso'), 'utf8'), 'version one');
  t.equal(await readFile(mount.path('iso/same-size.iso'), 'utf8'), 'AAAA');

  await s3.store.put('iso/tools.iso', Buffer.from('version two, longer'));
  await s3.store.put('iso/same-size.iso', Buffer.from('BBBB'));
  // The TTL, plus the kernel's own attribute cache (at most 1s).
  await sleep(2500);
  t.equal(await readFile(mount.path('iso/tools.iso'), 'utf8'), 'version two, longer', 'new content and size');
  t.equal(await readFile(mount.path('iso/same-size.iso'), 'utf8'), 'BBBB', 'new content of the same size');
});
