/**
 * The systems measured: stagefs on each engine, s3fs and rclone mount (the peers), and the two
 * limits, the local disk holding the same bytes and the object store read without FUSE. A
 * mount system starts its daemon in the foreground so its process is ours to watch (peak RSS)
 * and to stop.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DAEMON_NODE_OPTIONS } from '../src/daemon/daemon-flags';
import { sleep } from '../src/util/deferred';
import { exited, isMounted, peakRss, startLogged, tail, waitFor } from './processes';
import type { Remote } from './remote';

export const MOUNT_SYSTEMS = ['stagefs', 'stagefs-fuse-native', 's3fs', 'rclone'] as const;
export const LIMITS = ['local-disk', 'raw-s3', 'raw-s3-curl'] as const;
export const SYSTEM_NAMES = [...MOUNT_SYSTEMS, ...LIMITS] as const;
export type MountSystemName = (typeof MOUNT_SYSTEMS)[number];
export type LimitName = (typeof LIMITS)[number];
export type SystemName = (typeof SYSTEM_NAMES)[number];
export const PEERS: readonly MountSystemName[] = ['s3fs', 'rclone'];

export const LABELS: Record<SystemName, string> = {
  stagefs: 'stagefs (native engine)',
  'stagefs-fuse-native': 'stagefs (fuse-native engine)',
  s3fs: 's3fs 1.90',
  rclone: 'rclone mount 1.60 (--vfs-cache-mode full)',
  'local-disk': 'limit: local disk',
  'raw-s3': 'limit: raw S3 (the AWS SDK as stagefs uses it, no FUSE)',
  'raw-s3-curl': 'limit: raw S3 (curl, no FUSE)',
};

/** The Debian packages a system needs. */
export const PACKAGES: Partial<Record<SystemName, string>> = { s3fs: 's3fs', rclone: 'rclone' };

export interface Mounted {
  root: string;
  /** Peak RSS of the mount's processes so far (a remount starts another). */
  peakRss(): number | undefined;
  /** Unmounts and mounts again on the same cache dir, as after a restart of the daemon. */
  remount(): Promise<void>;
  unmount(): Promise<void>;
}

const MOUNT_TIMEOUT_MS = 60_000;
const EXIT_TIMEOUT_MS = 15_000;

/** Every mount still up, so an interrupted run can take them down. */
export const liveMounts = new Set<Mounted>();

function launchCommand(system: MountSystemName, remote: Remote, mountpoint: string, cacheDir: string, projectDir: string): [string, string[], NodeJS.ProcessEnv] {
  const credentials = { AWS_ACCESS_KEY_ID: remote.accessKeyId, AWS_SECRET_ACCESS_KEY: remote.secretAccessKey };
  const url = `s3://${remote.bucket}/${remote.prefix.replace(/\/$/, '')}`;
  switch (system) {
    case 'stagefs':
    case 'stagefs-fuse-native': {
      const engine = system === 'stagefs' ? 'native' : 'fuse-native';
      const cli = join(projectDir, 'dist', 'src', 'cli', 'main.js');
      // Node options as stagefs gives its own daemon.
      const args = [...DAEMON_NODE_OPTIONS, cli, 'mount', url, mountpoint, '--foreground', '--endpoint', remote.endpoint, '--region', remote.region];
      args.push('--path-style', '--cache-dir', cacheDir, '--cache-size', '20GiB', '--engine', engine);
      return [process.execPath, args, { ...process.env, ...credentials }];
    }
    case 's3fs': {
      const passwd = join(cacheDir, '..', 's3fs.passwd');
      writeFileSync(passwd, `${remote.accessKeyId}:${remote.secretAccessKey}\n`);
      chmodSync(passwd, 0o600);
      const args = [`${remote.bucket}:/${remote.prefix.replace(/\/$/, '')}`, mountpoint, '-f'];
      for (const option of ['use_path_request_style', `url=${remote.endpoint}`, `endpoint=${remote.region}`, `passwd_file=${passwd}`, `use_cache=${cacheDir}`]) {
        args.push('-o', option);
      }
      return ['s3fs', args, process.env];
    }
    case 'rclone': {
      // rclone's S3 client refuses a CA bundle on a plain-HTTP transport; the endpoint needs none.
      const { AWS_CA_BUNDLE: _unused, ...inherited } = process.env;
      const config = join(cacheDir, '..', 'rclone.conf');
      writeFileSync(config, '');
      const env = {
        ...inherited,
        RCLONE_CONFIG_BENCH_TYPE: 's3',
        RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
        RCLONE_CONFIG_BENCH_ENDPOINT: remote.endpoint,
        RCLONE_CONFIG_BENCH_REGION: remote.region,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: remote.accessKeyId,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: remote.secretAccessKey,
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
      };
      // --vfs-write-back 0s: upload as soon as a file is closed (the default waits 5 s), as the others do.
      const args = ['mount', `bench:${remote.bucket}/${remote.prefix}`, mountpoint, '--vfs-cache-mode', 'full', '--vfs-write-back', '0s'];
      args.push('--cache-dir', cacheDir, '--vfs-cache-max-size', '20G', '--config', config);
      return ['rclone', args, env];
    }
  }
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  if (await waitFor(() => exited(child), EXIT_TIMEOUT_MS)) return;
  child.kill('SIGTERM');
  if (await waitFor(() => exited(child), EXIT_TIMEOUT_MS)) return;
  child.kill('SIGKILL');
  await waitFor(() => exited(child), EXIT_TIMEOUT_MS);
}

async function unmountPath(mountpoint: string): Promise<void> {
  for (let attempt = 0; attempt < 20 && isMounted(mountpoint); attempt++) {
    if (spawnSync('umount', [mountpoint]).status === 0) return;
    await sleep(250); // busy for a moment after the last reader closed
  }
  if (isMounted(mountpoint)) spawnSync('umount', ['-l', mountpoint]);
}

/** Starts the system's daemon on `cacheDir` and waits until its mount is up. */
async function launch(system: MountSystemName, remote: Remote, base: string, projectDir: string): Promise<ChildProcess> {
  const mountpoint = join(base, 'mnt');
  const logPath = join(base, 'mount.log');
  const [command, args, env] = launchCommand(system, remote, mountpoint, join(base, 'cache'), projectDir);
  const child = startLogged(command, args, env, logPath);
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));
  const up = await waitFor(() => spawnError !== undefined || exited(child) || isMounted(mountpoint), MOUNT_TIMEOUT_MS);
  if (spawnError || !up || !isMounted(mountpoint)) {
    if (!exited(child)) child.kill('SIGKILL');
    await unmountPath(mountpoint);
    const why = spawnError?.message ?? (up ? `exited with ${child.exitCode ?? child.signalCode}` : 'not mounted within 60s');
    throw new Error(`${system} did not mount: ${why}${tail(logPath) ? `: ${tail(logPath)}` : ''}`);
  }
  return child;
}

/** Mounts the remote with a fresh cache dir, so the first read of every file is cold. */
export async function mountSystem(system: MountSystemName, remote: Remote, workDir: string, projectDir: string): Promise<Mounted> {
  const base = join(workDir, 'systems', system);
  const mountpoint = join(base, 'mnt');
  const cacheDir = join(base, 'cache');
  if (isMounted(mountpoint)) spawnSync('umount', ['-l', mountpoint]);
  rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  mkdirSync(mountpoint, { recursive: true });
  let child: ChildProcess | undefined = await launch(system, remote, base, projectDir);
  let peak: number | undefined;
  const stop = async () => {
    mounted.peakRss();
    await unmountPath(mountpoint);
    if (child) await stopProcess(child);
    child = undefined;
  };
  const mounted: Mounted = {
    root: mountpoint,
    peakRss: () => {
      peak = Math.max(peak ?? 0, (child && peakRss(child.pid!)) ?? 0) || peak;
      return peak;
    },
    remount: async () => {
      await stop();
      child = await launch(system, remote, base, projectDir);
    },
    unmount: async () => {
      await stop();
      liveMounts.delete(mounted);
    },
  };
  liveMounts.add(mounted);
  return mounted;
}
