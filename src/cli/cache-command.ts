/** `stagefs cache prefetch|pin|unpin|evict PATH...` and `stagefs cache verify [PATH...]`: act on files of a running mount. */
import { resolve } from 'node:path';
import type { ControlOp } from '../daemon/control-protocol';
import { control } from '../daemon/control-client';
import { liveMounts, type MountRecord } from '../daemon/runtime-registry';
import { CommandError, UsageError } from '../errors';
import { formatBytes, formatDuration } from '../units';
import { parseCommandArgs } from './args';
import { ProgressBar } from './progress';
import { HELP } from './usage';

const OPS: ControlOp[] = ['prefetch', 'pin', 'unpin', 'evict', 'verify'];
const PAST: Record<ControlOp, string> = { prefetch: 'prefetched', pin: 'pinned', unpin: 'unpinned', evict: 'evicted', verify: 'verified' };

interface Target {
  mount: MountRecord;
  /** Paths inside the mount, as the user gave them and as the mount sees them. */
  paths: Array<{ given: string; inside: string }>;
}

/** Every running mount, whole: what `verify` without a PATH checks. */
function everyMount(): Target[] {
  const mounts = liveMounts();
  if (mounts.length === 0) throw new CommandError('no stagefs mount is running');
  return mounts.map((mount) => ({ mount, paths: [] }));
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
  if (!op) throw new UsageError('missing action: prefetch, pin, unpin, evict or verify');
  if (!OPS.includes(op as ControlOp)) throw new UsageError(`unknown action '${op}': choose prefetch, pin, unpin, evict or verify`);
  if (paths.length === 0 && op !== 'verify') throw new UsageError('missing PATH');
  const started = Date.now();
  let failures = 0;
  let files = 0;
  let bytes = 0;
  const report: string[] = [];
  const scrub = { entries: 0, checked: 0, recorded: 0, bad: 0 };
  for (const target of paths.length ? targets(paths) : everyMount()) {
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
            if (reply.scrub) {
              for (const name of ['entries', 'checked', 'recorded', 'bad'] as const) scrub[name] += reply.scrub[name];
              if (reply.scrub.bad) report.push(`${shown(reply.path)}: ${reply.scrub.bad} bad block${reply.scrub.bad === 1 ? '' : 's'} dropped`);
            }
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
  if (op === 'evict' || op === 'verify') for (const line of report) console.log(line);
  if (op === 'verify') {
    const recorded = scrub.recorded ? `; ${scrub.recorded} had no checksum yet and got one` : '';
    console.log(
      `checked ${scrub.checked} staged block${scrub.checked === 1 ? '' : 's'} of ${scrub.entries} file${scrub.entries === 1 ? '' : 's'}: ` +
        `${scrub.bad} bad${scrub.bad ? ' (dropped, to be fetched again)' : ''}${recorded}${failures ? `; ${failures} failed` : ''}`,
    );
    return failures || scrub.bad ? 1 : 0;
  }
  const size = op === 'prefetch' ? ` (${formatBytes(bytes)}) in ${formatDuration(Date.now() - started)}` : '';
  console.log(`${PAST[op as ControlOp]} ${files} file${files === 1 ? '' : 's'}${size}${failures ? `; ${failures} failed` : ''}`);
  return failures ? 1 : 0;
}

function sum(values: Map<string, number>): number {
  let total = 0;
  for (const value of values.values()) total += value;
  return total;
}
