/** What the kernel says is mounted, read from /proc/self/mountinfo. */
import { readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface MountEntry {
  /** "major:minor" of the mounted filesystem. */
  device: string;
  mountpoint: string;
  fstype: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function mounts(): MountEntry[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean);
  return lines.map((line) => {
    const [left, right] = line.split(' - ');
    const fields = left.split(' ');
    const [fstype, source] = right.split(' ');
    return { device: fields[2], mountpoint: unescape(fields[4]), fstype, source: unescape(source) };
  });
}

export function mountAt(mountpoint: string): MountEntry | undefined {
  // The last entry wins when mounts are stacked on one directory.
  return mounts().filter((m) => m.mountpoint === mountpoint).pop();
}

export function isStagefsMount(entry: MountEntry | undefined): boolean {
  return entry?.fstype === 'fuse.stagefs';
}

/** Unmounts a FUSE mount; `lazy` detaches it even while busy. Throws with the helper's message. */
export async function fuseUnmount(mountpoint: string, lazy = false): Promise<void> {
  const flags = lazy ? '-uz' : '-u';
  try {
    await run('fusermount3', [flags, mountpoint]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code !== 'ENOENT') throw new Error((e.stderr ?? e.message).trim().replace(/^fusermount3?: /, ''));
    await run('fusermount', [flags, mountpoint]);
  }
}
