/**
 * The mount re-exported over NFS by nfs-ganesha (FSAL_VFS), as a hypervisor reaches secondary
 * storage: a userspace client (libnfs) lists, reads and writes through it, also after the
 * kernel dropped its inodes, when ganesha must open its saved file handles again by node id.
 */
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { randomData, sha256 } from '../helpers/files';
import { exportOverNfs } from '../helpers/ganesha';
import { engineTest, mountS3, tempDir } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;

function dropInodeCache(): void {
  execFileSync('sh', ['-c', 'sync; echo 2 > /proc/sys/vm/drop_caches']);
}

engineTest(t, 'nfs-ganesha serves the mount: list, read and write, also after the kernel forgot its inodes', async (t, engine) => {
  const s3 = await startS3(t);
  const seeded = randomData(2 * MiB + 123);
  await s3.store.put('template/tmpl/1/disk.qcow2', seeded);
  const mount = await mountS3(t, s3, { engine });
  const nfs = await exportOverNfs(t, mount.mountpoint);
  const local = tempDir(t, 'nfs-client');
  const got = async (relative: string) => {
    const file = join(local, `got-${Math.random().toString(36).slice(2)}`);
    nfs.get(relative, file);
    return sha256(await readFile(file));
  };

  t.same(nfs.list('template/tmpl/1'), ['disk.qcow2'], 'nfs-ls lists the seeded object');
  t.equal(await got('template/tmpl/1/disk.qcow2'), sha256(seeded), 'nfs-cp reads it whole');

  const written = randomData(3 * MiB + 7);
  await writeFile(join(local, 'snapshot.vhd'), written);
  nfs.put('template/tmpl/1/snapshot.vhd', join(local, 'snapshot.vhd'));
  t.equal(sha256(await readFile(mount.path('template/tmpl/1/snapshot.vhd'))), sha256(written), 'a file written over NFS reads back through the mount');
  t.equal(await got('template/tmpl/1/snapshot.vhd'), sha256(written), 'and over NFS');

  dropInodeCache();
  t.equal(await got('template/tmpl/1/disk.qcow2'), sha256(seeded), 'after the kernel dropped its inodes: the seeded object');
  t.equal(await got('template/tmpl/1/snapshot.vhd'), sha256(written), 'and the written file');
  t.same(nfs.list('template/tmpl/1').sort(), ['disk.qcow2', 'snapshot.vhd'], 'and the listing');
  const second = randomData(MiB + 1);
  await writeFile(join(local, 'second.raw'), second);
  dropInodeCache();
  nfs.put('template/tmpl/1/second.raw', join(local, 'second.raw'));
  dropInodeCache();
  t.equal(await got('template/tmpl/1/second.raw'), sha256(second), 'a write after the drop reads back over NFS');

  await nfs.stop();
  await mount.unmount();
  const object = await s3.store.head('template/tmpl/1/snapshot.vhd');
  t.equal(object?.size, written.length, 'the written file is in the store');
});
