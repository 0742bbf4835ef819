/**
 * Running mounts, so commands given a mountpoint or a cache dir find the daemon serving it:
 * one JSON record per mount in the runtime directory, and a lock in the cache dir that keeps two
 * daemons from sharing one cache.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, openSync, closeSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError } from '../errors';

export interface MountRecord {
  pid: number;
  mountpoint: string;
  source: string;
  cacheDir: string;
  controlSocket: string;
  engine: string;
  startedAt: string;
  /** The metrics endpoint, when the mount serves one. */
  metrics?: string;
  logFile?: string;
}

export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STAGEFS_RUNTIME_DIR) return env.STAGEFS_RUNTIME_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'stagefs');
  if (process.getuid?.() === 0) return '/run/stagefs';
  return join(tmpdir(), `stagefs-${process.getuid?.() ?? 'user'}`);
}

function recordName(mountpoint: string): string {
  return createHash('sha256').update(mountpoint).digest('hex').slice(0, 16);
}

export function controlSocketPath(mountpoint: string): string {
  return join(runtimeDir(), `${recordName(mountpoint)}.sock`);
}

/** Whether a process runs: an exited one that its parent has not reaped yet (a zombie) does not. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // reaped meanwhile
    throw err;
  }
  // "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

export function register(record: MountRecord): void {
  const dir = runtimeDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${recordName(record.mountpoint)}.json`);
  writeFileSync(path + '.tmp', JSON.stringify(record, null, 2));
  renameSync(path + '.tmp', path);
}

export function unregister(mountpoint: string): void {
  try {
    unlinkSync(join(runtimeDir(), `${recordName(mountpoint)}.json`));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Records of mounts whose daemon is still alive. */
export function liveMounts(): MountRecord[] {
  let names: string[];
  try {
    names = readdirSync(runtimeDir()).filter((n) => n.endsWith('.json'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const records: MountRecord[] = [];
  for (const name of names) {
    try {
      const record = JSON.parse(readFileSync(join(runtimeDir(), name), 'utf8')) as MountRecord;
      if (isAlive(record.pid)) records.push(record);
    } catch (err) {
      // A record being replaced, or left half-written by a crash: not a live mount.
      if (!(err instanceof SyntaxError) && (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return records;
}

export function mountRecordFor(mountpoint: string): MountRecord | undefined {
  return liveMounts().find((r) => r.mountpoint === mountpoint);
}

/**
 * Takes the cache dir for this process. Throws CommandError naming the other mount when a live
 * daemon holds it; a lock left by a dead one is taken over.
 */
export function lockCacheDir(cacheDir: string, mountpoint: string): () => void {
  const path = join(cacheDir, 'daemon.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, JSON.stringify({ pid: process.pid, mountpoint }));
      closeSync(fd);
      return () => {
        try {
          unlinkSync(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: { pid: number; mountpoint: string } | undefined;
    try {
      holder = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      if (!(err instanceof SyntaxError) && (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (holder && isAlive(holder.pid) && holder.pid !== process.pid) {
      const detached = holder.mountpoint === mountpoint ? ', which was unmounted lazily and still serves files left open' : '';
      throw new CommandError(
        `cache dir ${cacheDir} is in use by the mount at ${holder.mountpoint} (pid ${holder.pid}${detached}); give this mount its own --cache-dir`,
      );
    }
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new CommandError(`could not lock cache dir ${cacheDir}`);
}
