/**
 * Opens the cache index only once it is known to be readable. A damaged LMDB file (truncated,
 * overwritten) can end the process that maps it with SIGBUS or SIGSEGV, with no message, so the
 * index is first read end to end by a short-lived process of its own (index-probe.ts). A damaged
 * index is moved aside, never repaired: the cache starts with an empty one, and what the staging
 * files held is fetched again. A mount that closes its index cleanly leaves a seal naming the
 * data file's size and time; the next mount skips the probe when the file is still that one.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import createDebug from 'debug';
import { CacheIndex } from './cache-index';

const warn = createDebug('stagefs:warn');

const PROBE = join(__dirname, 'index-probe.js');
const PROBE_TIMEOUT_MS = 60_000;

function indexDir(cacheDir: string): string {
  return join(cacheDir, 'index');
}

function sealPath(cacheDir: string): string {
  return join(indexDir(cacheDir), 'closed-cleanly');
}

function fingerprint(data: string): string {
  const { size, mtimeMs, ino } = statSync(data);
  return JSON.stringify({ size, mtimeMs, ino });
}

/** Records that the index of `cacheDir` was just closed whole, as its data file is now. */
export function sealIndex(cacheDir: string): void {
  writeFileSync(sealPath(cacheDir), fingerprint(join(indexDir(cacheDir), 'data.mdb')), { mode: 0o600 });
}

/** Whether the seal of a clean close is there and matches the data file; the seal is used up. */
function takeSeal(cacheDir: string, data: string): boolean {
  const seal = sealPath(cacheDir);
  if (!existsSync(seal)) return false;
  const sealed = readFileSync(seal, 'utf8');
  rmSync(seal);
  return sealed === fingerprint(data);
}

/**
 * Errors of the system rather than the file (EACCES, ENOSPC, EMFILE; lmdb reports some as
 * positive errno values): the index is not damaged, and opening it in-process reports the error.
 */
function isSystemError(code: unknown): boolean {
  return (typeof code === 'string' && /^E[A-Z]+$/.test(code)) || (typeof code === 'number' && code > 0);
}

/** Why the index of `cacheDir` must not be opened, or undefined when it may (or there is none). */
export function indexDamage(cacheDir: string, options: { readOnly?: boolean } = {}): string | undefined {
  const data = join(indexDir(cacheDir), 'data.mdb');
  if (!existsSync(data)) return undefined;
  // LMDB takes an empty data file for a new index: a truncated one would pass for empty.
  if (statSync(data).size === 0) return 'data.mdb is empty';
  // Without a core file: a crash of the probe is the answer looked for, not a fault to examine.
  const probe = spawnSync('/bin/sh', ['-c', 'ulimit -c 0; exec "$0" "$@"', process.execPath, PROBE, cacheDir, ...(options.readOnly ? ['--read-only'] : [])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    timeout: PROBE_TIMEOUT_MS,
  });
  if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') return `reading it took over ${PROBE_TIMEOUT_MS / 1000} s`;
  if (probe.error) throw probe.error;
  if (probe.signal) return `reading it ended the process with ${probe.signal}`;
  if (probe.status === 0) return undefined;
  let failure: { code?: unknown; message?: string };
  try {
    failure = JSON.parse(probe.stdout) as typeof failure;
  } catch {
    return `reading it failed (exit ${probe.status})`;
  }
  return isSystemError(failure.code) ? undefined : (failure.message ?? `reading it failed (exit ${probe.status})`);
}

export interface OpenedIndex {
  index: CacheIndex;
  /** Where a damaged index was moved, when it was: the cache starts empty. */
  setAside?: string;
}

/** Opens the index of `cacheDir` for the mount, moving a damaged one aside first. */
export function openSoundIndex(cacheDir: string, now: Date = new Date()): OpenedIndex {
  const data = join(indexDir(cacheDir), 'data.mdb');
  if (existsSync(data) && takeSeal(cacheDir, data)) return { index: CacheIndex.open(cacheDir) };
  const damage = indexDamage(cacheDir);
  if (!damage) return { index: CacheIndex.open(cacheDir) };
  const setAside = `${indexDir(cacheDir)}.damaged-${now.toISOString().replace(/[:.]/g, '-')}`;
  renameSync(indexDir(cacheDir), setAside);
  warn('the cache index is damaged (%s): moved it to %s and starting with an empty one; staged data is fetched again', damage, setAside);
  return { index: CacheIndex.open(cacheDir), setAside };
}
