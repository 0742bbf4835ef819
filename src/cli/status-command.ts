/** `stagefs status`: the cache as its index says, readable while the mount runs. */
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CacheIndex, type EntryRecord } from '../cache/cache-index';
import { indexDamage } from '../cache/index-health';
import { cacheRoot, stateDirOf, writeDirOf } from '../config';
import { isStagefsMount, mountAt } from '../daemon/mount-table';
import { liveMounts, mountRecordFor } from '../daemon/runtime-registry';
import { readPendingWrites, type PendingWrite } from '../write/pending-records';
import { CommandError } from '../errors';
import { formatBytes } from '../units';
import { expectPositionals, parseCommandArgs } from './args';
import { HELP } from './usage';

const LARGEST_SHOWN = 20;

export interface StatusReport {
  cacheDir: string;
  mount: {
    mountpoint: string;
    source: string;
    pid: number;
    engine: string;
    /** Unmounted lazily (umount -l) and still serving the files left open. */
    detached: boolean;
    metrics: string | null;
  } | null;
  capacityBytes: number | null;
  stagedBytes: number;
  reservedBytes: number;
  entryCount: number;
  /** Files written through the mount and not uploaded yet, with the last upload error of each. */
  pendingUploads: { count: number; bytes: number; files: PendingWrite[] };
  counters: { hits: number; misses: number; bytesFetched: number; evictions: number; bypassedReads: number; badBlocks: number; checksumMismatches: number };
  entries: Array<{
    key: string;
    size: number;
    stagedBytes: number;
    openHandles: number;
    lastAccess: string;
    pinned: boolean;
    state: string;
  }>;
}

/** Cache dirs under the default root, for a hint when no mount runs. */
function cachesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(root, entry.name, 'index')))
    .map((entry) => join(root, entry.name));
}

function chooseCacheDir(mountpoint: string | undefined, flag: string | undefined): string {
  if (flag) return resolve(flag);
  if (mountpoint) {
    const record = mountRecordFor(resolve(mountpoint));
    if (!record) throw new CommandError(`no stagefs mount is running at ${resolve(mountpoint)}`);
    return record.cacheDir;
  }
  const mounts = liveMounts();
  if (mounts.length === 1) return mounts[0].cacheDir;
  if (mounts.length > 1) {
    throw new CommandError(`several mounts are running; name one: ${mounts.map((m) => `stagefs status ${m.mountpoint}`).join(', ')}`);
  }
  const caches = cachesUnder(cacheRoot());
  if (caches.length === 1) return caches[0];
  throw new CommandError(
    `no stagefs mount is running; give a MOUNTPOINT or --cache-dir DIR${caches.length ? ` (caches: ${caches.join(', ')})` : ''}`,
  );
}

export function readStatus(cacheDir: string): StatusReport {
  if (!existsSync(join(cacheDir, 'index'))) throw new CommandError(`no stagefs cache at ${cacheDir}`);
  const damage = indexDamage(cacheDir, { readOnly: true });
  if (damage) throw new CommandError(`the cache index of ${cacheDir} is damaged (${damage}); the next mount of this cache moves it aside and starts with an empty one`);
  const index = CacheIndex.open(cacheDir, { readOnly: true });
  try {
    const records: EntryRecord[] = index.entries();
    const space = index.space();
    const mount = liveMounts().find((m) => m.cacheDir === cacheDir);
    const stateDir = stateDirOf(cacheDir);
    const pending = stateDir ? readPendingWrites(writeDirOf(stateDir)).filter((w) => w.dirty) : [];
    return {
      cacheDir,
      mount: mount
        ? {
            mountpoint: mount.mountpoint,
            source: mount.source,
            pid: mount.pid,
            engine: mount.engine,
            detached: !isStagefsMount(mountAt(mount.mountpoint)),
            metrics: mount.metrics ?? null,
          }
        : null,
      capacityBytes: space?.capacityBytes ?? null,
      stagedBytes: space?.stagedBytes ?? records.reduce((sum, r) => sum + r.stagedBytes, 0),
      reservedBytes: mount ? (space?.reservedBytes ?? 0) : 0,
      entryCount: records.length,
      pendingUploads: { count: pending.length, bytes: pending.reduce((sum, w) => sum + w.size, 0), files: pending },
      counters: index.counters(),
      entries: records
        .sort((a, b) => b.stagedBytes - a.stagedBytes || b.size - a.size)
        .map((r) => ({
          key: r.key,
          size: r.size,
          stagedBytes: r.stagedBytes,
          openHandles: mount ? r.openHandles : 0,
          lastAccess: new Date(r.lastAccess).toISOString(),
          pinned: r.pinned,
          state: r.state,
        })),
    };
  } finally {
    void index.close();
  }
}

function percent(part: number, whole: number | null): string {
  return whole ? ` (${((100 * part) / whole).toFixed(0)}%)` : '';
}

function printStatus(report: StatusReport): void {
  const { counters } = report;
  const lines = [
    `cache      ${report.cacheDir}`,
    report.mount
      ? `mount      ${report.mount.source} at ${report.mount.mountpoint} (pid ${report.mount.pid}, engine ${report.mount.engine})` +
        (report.mount.detached ? '; unmounted lazily, serving the files left open' : '')
      : 'mount      not mounted',
    ...(report.mount?.metrics ? [`metrics    ${report.mount.metrics}`] : []),
    `capacity   ${report.capacityBytes === null ? 'unknown' : formatBytes(report.capacityBytes)}`,
    `staged     ${formatBytes(report.stagedBytes)}${percent(report.stagedBytes, report.capacityBytes)}`,
    `reserved   ${formatBytes(report.reservedBytes)}`,
    `entries    ${report.entryCount}`,
    `pending    ${report.pendingUploads.count} uploads (${formatBytes(report.pendingUploads.bytes)})`,
    `hits ${counters.hits}   misses ${counters.misses}   fetched ${formatBytes(counters.bytesFetched)}   ` +
      `evictions ${counters.evictions}   bypassed reads ${counters.bypassedReads}`,
    `checks     bad blocks ${counters.badBlocks}   objects not matching their ETag ${counters.checksumMismatches}`,
  ];
  if (report.entries.length) {
    lines.push('', `largest entries:`);
    lines.push(`${'SIZE'.padStart(10)} ${'STAGED'.padStart(10)} ${'OPEN'.padStart(4)}  PIN  ${'STATE'.padEnd(8)}  ${'LAST ACCESS'.padEnd(19)}  KEY`);
    for (const e of report.entries.slice(0, LARGEST_SHOWN)) {
      lines.push(
        `${formatBytes(e.size).padStart(10)} ${formatBytes(e.stagedBytes).padStart(10)} ${String(e.openHandles).padStart(4)}  ` +
          `${e.pinned ? 'yes' : 'no '}  ${e.state.padEnd(8)}  ${e.lastAccess.slice(0, 19).replace('T', ' ')}  ${e.key}`,
      );
    }
    if (report.entries.length > LARGEST_SHOWN) lines.push(`... and ${report.entries.length - LARGEST_SHOWN} more`);
  }
  if (report.pendingUploads.files.length) {
    lines.push('', 'pending uploads:');
    for (const w of report.pendingUploads.files) lines.push(`${formatBytes(w.size).padStart(10)}  ${w.key}${w.error ? `  (last error: ${w.error})` : ''}`);
  }
  console.log(lines.join('\n'));
}

export async function statusCommand(args: string[]): Promise<number> {
  const { values, positionals, help } = parseCommandArgs<{ 'cache-dir'?: string; json?: boolean }>(args, {
    'cache-dir': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (help) {
    console.log(HELP.status);
    return 0;
  }
  expectPositionals(positionals, ['MOUNTPOINT'], 1);
  const report = readStatus(chooseCacheDir(positionals[0], values['cache-dir']));
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else printStatus(report);
  return 0;
}
