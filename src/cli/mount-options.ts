/**
 * The mount command's flags, and the same settings as mount(8) options (`-o cache_size=20G,ro`),
 * so a mount can be written in fstab or given to `mount -t fuse.stagefs`.
 */
import { UsageError } from '../errors';
import type { MountOptions } from '../config';
import type { OptionSpec } from './args';

export const MOUNT_OPTIONS: OptionSpec = {
  endpoint: { type: 'string' },
  region: { type: 'string' },
  profile: { type: 'string' },
  'ca-bundle': { type: 'string' },
  'path-style': { type: 'boolean' },
  'cache-dir': { type: 'string' },
  'cache-size': { type: 'string' },
  'block-size': { type: 'string' },
  'metadata-ttl': { type: 'string' },
  'max-age': { type: 'string' },
  'sweep-interval': { type: 'string' },
  'high-watermark': { type: 'string' },
  'low-watermark': { type: 'string' },
  'read-memory': { type: 'string' },
  'read-only': { type: 'boolean' },
  foreground: { type: 'boolean', short: 'f' },
  'allow-other': { type: 'boolean' },
  uid: { type: 'string' },
  gid: { type: 'string' },
  engine: { type: 'string' },
  fetcher: { type: 'string' },
  'log-file': { type: 'string' },
  metrics: { type: 'string' },
  'state-dir': { type: 'string' },
};

/** Options mount(8), fstab and mount.fuse3 pass that mean nothing to stagefs; accepted and ignored. */
const GENERIC = new Set([
  'rw',
  'defaults',
  'auto',
  'noauto',
  'user',
  'nouser',
  'users',
  'owner',
  'group',
  'nofail',
  '_netdev',
  // stagefs mounts are always nosuid and nodev; mount.fuse3 adds "dev,suid" unless told otherwise.
  'suid',
  'nosuid',
  'dev',
  'nodev',
  'exec',
  'noexec',
  'async',
  'sync',
  'atime',
  'noatime',
  'diratime',
  'nodiratime',
  'relatime',
  'norelatime',
  'strictatime',
  'lazytime',
  'nolazytime',
  'silent',
  'loud',
  // Turned on with allow_other, which needs the kernel to check permissions.
  'default_permissions',
]);

/** x-systemd.automount, x-mount.mkdir, comment=...: for systemd and mount(8), not for the filesystem. */
const GENERIC_PREFIXES = ['x-', 'comment='];

/** mount(8) spellings that differ from the flag's name. */
const ALIASES: Record<string, string> = { ro: 'read-only' };

/** Flags that make no sense as mount options. */
const NOT_AN_OPTION = new Set(['foreground']);

export interface TranslatedOptions {
  options: MountOptions;
  /** Options not understood, left out in sloppy mode (mount -s). */
  ignored: string[];
}

/** Translates comma-separated mount options into flag values; unknown options are refused unless `sloppy`. */
export function translateMountOptions(lists: string[], sloppy = false): TranslatedOptions {
  const options: Record<string, string | boolean> = {};
  const ignored: string[] = [];
  for (const option of lists.flatMap((list) => list.split(',')).filter(Boolean)) {
    const equals = option.indexOf('=');
    const name = equals < 0 ? option : option.slice(0, equals);
    const value = equals < 0 ? undefined : option.slice(equals + 1);
    if (GENERIC.has(option) || GENERIC_PREFIXES.some((prefix) => option.startsWith(prefix))) continue;
    const flag = ALIASES[name] ?? name.replace(/_/g, '-');
    const spec = NOT_AN_OPTION.has(flag) ? undefined : MOUNT_OPTIONS[flag];
    if (!spec) {
      if (sloppy) {
        ignored.push(option);
        continue;
      }
      throw new UsageError(`unknown mount option '${option}'`);
    }
    if (spec.type === 'boolean') {
      if (value !== undefined) throw new UsageError(`mount option '${name}' takes no value`);
      options[flag] = true;
    } else {
      if (!value) throw new UsageError(`mount option '${name}' needs a value (${name}=...)`);
      options[flag] = value;
    }
  }
  return { options: options as MountOptions, ignored };
}

/** Flag values back as command-line arguments, for the daemon a background mount starts. */
export function toArgs(options: MountOptions): string[] {
  const args: string[] = [];
  for (const [flag, value] of Object.entries(options) as Array<[string, string | boolean | undefined]>) {
    if (value === undefined || value === false || !(flag in MOUNT_OPTIONS)) continue;
    args.push(`--${flag}`);
    if (value !== true) args.push(value);
  }
  return args;
}
