/**
 * A private mount namespace in which mount(8) finds stagefs where an installed copy would be:
 * /usr/local/bin/stagefs (which mount.fuse3 runs for type fuse.stagefs) and, when asked,
 * /sbin/mount.fuse.stagefs (which mount(8) runs itself). The host never sees those files or the
 * mounts made inside; they end with the namespace's last process.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { isAlive, mountRecordFor } from '../../src/daemon/runtime-registry';
import { sleep } from '../../src/util/deferred';
import type { CliResult } from './cli';
import { CLI, tempDir } from './mount';

export interface MountNamespace {
  /** Runs a command inside the namespace. */
  run(command: string[], env?: Record<string, string>): Promise<CliResult>;
  /** Stops, in teardown, the daemon serving `mountpoint` inside the namespace. */
  stopDaemonInTeardown(mountpoint: string): void;
}

function inOwnNamespace(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8') === 'sleep\n' && readlinkSync(`/proc/${pid}/ns/mnt`) !== readlinkSync('/proc/self/ns/mnt');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // not started yet
    throw err;
  }
}

export async function mountNamespace(t: Test, options: { directHelper?: boolean } = {}): Promise<MountNamespace> {
  const dir = tempDir(t, 'ns');
  const bin = join(dir, 'bin');
  const sbin = join(dir, 'sbin');
  mkdirSync(bin);
  mkdirSync(sbin);
  // mount(8) clears PATH and HOME for its helpers: the installed command runs node by its full path.
  writeFileSync(join(bin, 'stagefs'), `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`);
  chmodSync(join(bin, 'stagefs'), 0o755);
  symlinkSync(join(bin, 'stagefs'), join(sbin, 'mount.fuse.stagefs'));
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sleep', 'infinity'], { stdio: 'ignore' });
  const daemons: string[] = [];
  t.teardown(async () => {
    for (const mountpoint of daemons) {
      const record = mountRecordFor(mountpoint);
      if (!record) continue;
      process.kill(record.pid, 'SIGTERM');
      for (let i = 0; i < 300 && isAlive(record.pid); i++) await sleep(100);
      if (isAlive(record.pid)) process.kill(record.pid, 'SIGKILL');
    }
    holder.kill('SIGKILL');
  });
  const run = (command: string[], env: Record<string, string> = {}) =>
    new Promise<CliResult>((resolve) => {
      execFile('nsenter', ['-t', String(holder.pid), '-m', '--', ...command], { env: { ...process.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  // Nothing may be bound before unshare has made the namespace private and become `sleep`:
  // a bind in the host's namespace would install this worktree's stagefs for everyone.
  for (let i = 0; !inOwnNamespace(holder.pid!); i++) {
    if (i > 100) throw new Error('unshare did not make a mount namespace');
    await sleep(50);
  }
  const bound = await run(['mount', '--bind', bin, '/usr/local/bin']);
  if (bound.code !== 0) throw new Error(`cannot install stagefs in a mount namespace: ${bound.stderr}`);
  if (options.directHelper) {
    const overlay = await run(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${sbin}:/usr/sbin`, '/usr/sbin']);
    if (overlay.code !== 0) throw new Error(`cannot install mount.fuse.stagefs in a mount namespace: ${overlay.stderr}`);
  }
  return { run, stopDaemonInTeardown: (mountpoint) => daemons.push(mountpoint) };
}
