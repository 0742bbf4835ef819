/** A mount daemon killed with written data not uploaded yet. */
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Test } from 'tap';
import { mountS3, type MountOptions } from './mount';
import type { TestS3 } from './s3';

/** Mounts, writes `data` to `key` in a file held open (so nothing is uploaded), and kills the daemon with SIGKILL. */
export async function writeThenKill(t: Test, s3: TestS3, options: MountOptions, key: string, data: Buffer): Promise<void> {
  const mount = await mountS3(t, s3, options);
  await mkdir(dirname(mount.path(key)), { recursive: true });
  const writer = await open(mount.path(key), 'w');
  await writer.write(data, 0, data.length, 0);
  t.notOk(await s3.store.head(key), 'written but not uploaded');
  const killed = new Promise((resolve) => mount.daemon.once('exit', resolve));
  mount.daemon.kill('SIGKILL');
  await killed;
  await writer.close().catch(() => undefined); // the mount died under it
  await mount.unmount();
}
