/** `stagefs cache prefetch|pin|unpin|evict PATH...`: acts on files of a running mount. */
import { resolve } from 'node:path';
import type { ControlOp } from '../daemon/control-protocol';
import { control } from '../daemon/control-client';
import { liveMounts, type MountRecord } from '../daemon/runtime-registry';
import { CommandError, UsageError } from '../errors';
import { formatBytes, formatDuration } from '../units';
import { parseCommandArgs } from './args';
import { ProgressBar } from './progress';
import { HELP } from './usage';

const OPS: ControlOp[] = ['prefetch', 'pin', 'unpin', 'evict'];
const PAST: Record<ControlOp, string> = { prefetch: 'prefetched', pin: 'pinned', unpin: 'unpinned', evict: 'evicted' };

interface Target {
  mount: MountRecord;
  /** Paths inside the mount, as the user gave them and as the mount sees them. */
  paths: Array<{ given: string; inside: string }>;
}

/** Groups the user's paths by the mount that holds each. */
function targets(paths: string[]): Target[] {
  const mounts = liveMounts().sort((a, b) => b.mountpoint.length - a.mountpoint.length);
  const byMount = new Map<string, Target>();
  for (const given of paths) {
    const absolute = resolve(given);
    const mount = mounts.find((m) => absolute === m.mountpoint || absolute.startsWith(m.mountpoint + '/'));
    if (!mount) throw new CommandError(`${given} is not inside a running stagefs mount`);
    const target = byMount.get(mount.mountpoint) ?? { mount, paths: [] };
    target.paths.push({ given, inside: absolute === mount.mountpoint ? '/' : absolute.slice(mount.mountpoint.length) });
    byMount.set(mount.mountpoint, target);
  }
  return [...byMount.values()];
}

export async function cacheCommand(args: string[]): Promise<number> {
  const { positionals, help } = parseCommandArgs<Record<string, never>>(args, {});
  if (help) {
    console.log(HELP.cache);
    return 0;
  }
  const [op, ...paths] = positionals;
  if (!op) throw new UsageError('missing action: prefetch, pin, unpin or evict');
  if (!OPS.includes(op as ControlOp)) throw new UsageError(`unknown action '${op}': choose prefetch, pin, unpin or evict`);
  if (paths.length === 0) throw new UsageError('missing PATH');
  const started = Date.now();
  let failures = 0;
  let files = 0;
  let bytes = 0;
  const report: string[] = [];
  for (const target of targets(paths)) {
    const mountpoint = target.mount.mountpoint;
    const shown = (inside: string) => (inside === '/' ? mountpoint : mountpoint + inside);
    const bar = op === 'prefetch' ? new ProgressBar('prefetch') : undefined;
    const staged = new Map<string, number>();
    let total = 0;
    let failedHere = 0;
    for await (const reply of control(target.mount.controlSocket, { op: op as ControlOp, paths: target.paths.map((p) => p.inside) })) {
      switch (reply.type) {
        case 'plan':
          total = reply.files.reduce((sum, f) => sum + f.size, 0);
          break;
        case 'progress':
          staged.set(reply.path, reply.staged);
          bar?.update(sum(staged), total);
          break;
        case 'done':
          if (reply.ok) {
            if (op !== 'evict' || reply.detail === 'evicted') files++;
            if (reply.detail) report.push(`${shown(reply.path)}: ${reply.detail}`);
          } else {
            failures++;
            failedHere++;
            bar?.clear();
            console.error(`stagefs cache ${op}: ${shown(reply.path)}: ${reply.error}`);
          }
          break;
        case 'end':
          break;
      }
    }
    if (bar) bar.finish(sum(staged), total, failedHere);
    bytes += total;
  }
  if (op === 'evict') for (const line of report) console.log(line);
  const size = op === 'prefetch' ? ` (${formatBytes(bytes)}) in ${formatDuration(Date.now() - started)}` : '';
  console.log(`${PAST[op as ControlOp]} ${files} file${files === 1 ? '' : 's'}${size}${failures ? `; ${failures} failed` : ''}`);
  return failures ? 1 : 0;
}

function sum(values: Map<string, number>): number {
  let total = 0;
  for (const value of values.values()) total += value;
  return total;
}
