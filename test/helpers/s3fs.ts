/** s3fs (Debian's, installed by the pretest script) mounted on a test's S3 server, unmounted in teardown. */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { mountAt } from '../../src/daemon/mount-table';
import { EmbeddedS3 } from '../../src/s3server/embedded-s3';
import { mountpointDir, tempDir } from './mount';
import { BUCKET, type TestS3 } from './s3';

const MOUNT_TIMEOUT_MS = 30_000;

export async function mountS3fs(t: Test, s3: TestS3): Promise<{ mountpoint: string; path(relative: string): string }> {
  const dir = tempDir(t, 's3fs');
  const passwd = join(dir, 'passwd');
  writeFileSync(passwd, `${EmbeddedS3.accessKeyId}:${EmbeddedS3.secretAccessKey}\n`);
  chmodSync(passwd, 0o600);
  const mountpoint = mountpointDir(t);
  const options = ['use_path_request_style', `url=${s3.server.endpoint}`, 'endpoint=us-east-1', `passwd_file=${passwd}`, 'stat_cache_expire=1'];
  const daemon = spawn('s3fs', [BUCKET, mountpoint, '-f', ...options.flatMap((option) => ['-o', option])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  daemon.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  t.teardown(async () => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((resolve) => daemon.once('exit', resolve));
      try {
        execFileSync('fusermount', ['-u', mountpoint], { stdio: 'ignore' });
      } catch {
        daemon.kill('SIGKILL');
      }
      await exited;
    }
  });
  const deadline = Date.now() + MOUNT_TIMEOUT_MS;
  while (mountAt(mountpoint)?.fstype !== 'fuse.s3fs') {
    if (daemon.exitCode !== null) throw new Error(`s3fs exited with ${daemon.exitCode}: ${errors}`);
    if (Date.now() > deadline) throw new Error(`s3fs did not mount within ${MOUNT_TIMEOUT_MS / 1000}s: ${errors}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { mountpoint, path: (relative) => join(mountpoint, relative) };
}
