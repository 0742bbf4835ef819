/** umount -l: the mount leaves the tree at once, its open files keep being served until closed. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import t from 'tap';
import type { StatusReport } from '../../src/cli/status-command';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { mountRecordFor } from '../../src/daemon/runtime-registry';
import { runCli } from '../helpers/cli';
import { randomData, sha256 } from '../helpers/files';
import { engineTest, mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const run = promisify(execFile);
const MiB = 1024 * 1024;

engineTest(t, 'a lazily unmounted mount serves its open files until the last close, then the daemon exits', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(30 * MiB + 5);
  await s3.store.put('img/disk.raw', data);
  const mount = await mountS3(t, s3, { engine });
  const exited = new Promise<number | null>((resolve) => mount.daemon.once('exit', (code) => resolve(code)));
  const file = await open(mount.path('img/disk.raw'), 'r');
  t.teardown(() => file.close().catch(() => undefined));
  const copy = Buffer.alloc(data.length);
  const first = await file.read(copy, 0, 4 * MiB, 0);
  t.equal(first.bytesRead, 4 * MiB, 'a copy is under way');

  await run('umount', ['-l', mount.mountpoint]);
  t.notOk(isStagefsMount(mountAt(mount.mountpoint)), 'the mount is gone from the tree');
  const report = JSON.parse((await runCli(['status', mount.mountpoint, '--json'])).stdout) as StatusReport;
  t.equal(report.mount?.detached, true, 'status says it was unmounted lazily and still serves');

  let done = first.bytesRead;
  while (done < data.length) {
    const { bytesRead } = await file.read(copy, done, Math.min(MiB, data.length - done), done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  t.equal(done, data.length, 'the open file reads to its end');
  t.equal(sha256(copy), sha256(data), 'with the right bytes');
  t.equal(mount.daemon.exitCode, null, 'the daemon serves while the file is open');

  await file.close();
  t.equal(await exited, 0, 'the daemon exits cleanly once the kernel closes the connection');
  t.match(mount.output(), /was unmounted[\s\S]*unmounted /, 'and says so');
  t.notOk(mountRecordFor(mount.mountpoint), 'its registry record is gone');
  t.match(readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(`^(?!.*${mount.mountpoint})`), 'nothing is left mounted');
});

engineTest(t, 'umount(8) of an idle mount ends the daemon', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('a/file', Buffer.from('x'));
  const mount = await mountS3(t, s3, { engine });
  const exited = new Promise<number | null>((resolve) => mount.daemon.once('exit', (code) => resolve(code)));
  await run('umount', [mount.mountpoint]);
  t.equal(await exited, 0, 'the daemon exits cleanly');
  t.notOk(isStagefsMount(mountAt(mount.mountpoint)));
});
