/**
 * The cache dir as the admin sees it: private to the daemon's user, on a disk that can hold the
 * cache size asked for.
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { CacheConfig } from '../config';
import { CommandError, errorMessage } from '../errors';
import { formatBytes } from '../units';

/**
 * Creates the cache dir, or takes an existing one back, as mode 0700: staged bytes and written
 * files are readable through the mount only with the mount's permissions, never in the cache.
 */
export function preparePrivateDir(dir: string, what: string, option: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  } catch (err) {
    throw new CommandError(`cannot use ${dir} as the ${what} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}); choose another with ${option}`);
  }
}

/** Bytes the files under `dir` take on disk (sparse files count what is allocated). */
export function bytesOnDisk(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += bytesOnDisk(path);
    else total += lstatSync(path).blocks * 512;
  }
  return total;
}

/** Refuses a cache size the disk cannot hold: more than its free space plus what the cache holds already. */
export function checkCacheFits(cache: Pick<CacheConfig, 'dir' | 'capacityBytes'>): void {
  const stats = statfsSync(cache.dir);
  const free = stats.bavail * stats.bsize;
  if (cache.capacityBytes <= free) return;
  const held = bytesOnDisk(cache.dir);
  if (cache.capacityBytes <= free + held) return;
  throw new CommandError(
    `--cache-size ${formatBytes(cache.capacityBytes)} does not fit on the disk of ${cache.dir}: ` +
      `it has ${formatBytes(free)} free and the cache holds ${formatBytes(held)} (${formatBytes(free + held)} at most)`,
  );
}
