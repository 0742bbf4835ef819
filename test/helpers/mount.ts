/**
 * Real FUSE mounts for tests: `stagefs mount --foreground` in its own process, torn down in the
 * test's teardown, pass or fail. A mount a crashed test leaves is detached when the test process
 * exits. A daemon that dies of a signal fails its test, and leaves its core file in CORE_DIR.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { mountRecordFor } from '../../src/daemon/runtime-registry';
import { BUCKET, type TestS3 } from './s3';

export const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

/** Where core files of crashed mount daemons are kept for a post-mortem. */
export const CORE_DIR = join(tmpdir(), 'stagefs-cores');
/**
 * A library preloaded into mount daemons only (the sanitizer runtime of an AddressSanitizer
 * build of the addon), not into the S3 server or the test runner, which it would only slow down.
 */
const DAEMON_PRELOAD = process.env.STAGEFS_TEST_DAEMON_PRELOAD;
/** The addon build mount daemons load (that sanitizer build): the test runner, which loads the addon too, keeps the plain one. */
const DAEMON_ADDON = process.env.STAGEFS_TEST_DAEMON_ADDON;
const MOUNT_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 30_000;

const liveMountpoints = new Set<string>();
process.on('exit', () => {
  for (const mountpoint of liveMountpoints) lazyUnmount(mountpoint);
});

function lazyUnmount(mountpoint: string): void {
  try {
    execFileSync('fusermount3', ['-uz', mountpoint], { stdio: 'ignore' });
  } catch {
    // Not mounted any more: nothing to detach.
  }
}

/** Every mount test runs on both engines; a native engine that fails to load fails its tests. */
export const ENGINES = ['native', 'fuse-native'] as const;
export type EngineName = (typeof ENGINES)[number];

/** Registers `body` as one subtest per engine. */
export function engineTest(t: Test, name: string, body: (t: Test, engine: EngineName) => Promise<void>): void {
  for (const engine of ENGINES) void t.test(`${name} [${engine}]`, (t) => body(t, engine));
}

export interface MountOptions {
  engine: EngineName;
  prefix?: string;
  bucket?: string;
  args?: string[];
  cacheDir?: string;
  env?: Record<string, string>;
  /** The S3 endpoint to mount; the test server's by default (a fault proxy's, say). */
  endpoint?: string;
}

export interface TestMount {
  mountpoint: string;
  cacheDir: string;
  daemon: ChildProcess;
  path(relative: string): string;
  output(): string;
  /** Stops the daemon (SIGTERM) and waits until the mount is gone. */
  unmount(): Promise<void>;
}

export function tempDir(t: Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `stagefs-test-${name}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function waitFor(condition: () => boolean, timeoutMs: number, what: string, failed?: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = () => {
      const failure = failed?.();
      if (failure) return reject(new Error(failure));
      if (condition()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 50);
    };
    check();
  });
}

/** A mountpoint for commands that may mount it; whatever gets mounted there is detached in teardown. */
export function mountpointDir(t: Test): string {
  const mountpoint = tempDir(t, 'mnt');
  t.teardown(() => lazyUnmount(mountpoint));
  return mountpoint;
}

/** Signals a process dies of by its own fault (tests send only SIGTERM and SIGKILL). */
const CRASH_SIGNALS = new Set<string>(['SIGSEGV', 'SIGBUS', 'SIGABRT', 'SIGILL', 'SIGFPE', 'SIGSYS', 'SIGTRAP']);

/**
 * Fails the test when the daemon crashed, keeping any core file it left (with the kernel's
 * default core_pattern, `core` in the daemon's working directory; the size limit is lifted).
 */
function checkDaemonDeath(t: Test, daemon: ChildProcess, workDir: string): void {
  const cores = readdirSync(workDir).filter((name) => name === 'core' || name.startsWith('core.'));
  for (const core of cores) {
    mkdirSync(CORE_DIR, { recursive: true });
    const kept = join(CORE_DIR, `${core}.${daemon.pid}.${Date.now()}`);
    renameSync(join(workDir, core), kept);
    t.fail(`the mount daemon dumped core: ${kept}`);
  }
  if (daemon.signalCode && CRASH_SIGNALS.has(daemon.signalCode)) t.fail(`the mount daemon died of ${daemon.signalCode}`);
  rmSync(workDir, { recursive: true, force: true });
}

export async function mountS3(t: Test, s3: TestS3, options: MountOptions): Promise<TestMount> {
  const mountpoint = mountpointDir(t);
  const cacheDir = options.cacheDir ?? tempDir(t, 'cache');
  const workDir = mkdtempSync(join(tmpdir(), 'stagefs-test-daemon-'));
  const source = `s3://${options.bucket ?? BUCKET}${options.prefix ? '/' + options.prefix : ''}`;
  const endpoint = options.endpoint ?? s3.server.endpoint;
  // Through a shell that lifts the core size limit, then becomes the daemon (same process).
  const daemon = spawn(
    '/bin/sh',
    [
      '-c',
      'ulimit -c unlimited 2>/dev/null; exec "$0" "$@"',
      process.execPath,
      CLI,
      'mount',
      source,
      mountpoint,
      '--foreground',
      '--engine',
      options.engine,
      '--endpoint',
      endpoint,
      '--cache-dir',
      cacheDir,
      // Written files wait for upload beside the cache, so a remount of the same cache dir finds them.
      '--state-dir',
      join(cacheDir, 'state'),
      ...(options.args ?? []),
    ],
    {
      cwd: workDir,
      env: { ...process.env, ...s3.env, ...(DAEMON_PRELOAD ? { LD_PRELOAD: DAEMON_PRELOAD } : {}), ...(DAEMON_ADDON ? { STAGEFS_NATIVE_ADDON: DAEMON_ADDON } : {}), ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  daemon.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  daemon.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  liveMountpoints.add(mountpoint);
  const mounted = () => isStagefsMount(mountAt(mountpoint));
  let checked = false;
  const unmount = async () => {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise<void>((resolve) => daemon.once('exit', () => resolve()));
      daemon.kill('SIGTERM');
      const timer = setTimeout(() => {
        lazyUnmount(mountpoint);
        daemon.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    if (mounted()) lazyUnmount(mountpoint);
    liveMountpoints.delete(mountpoint);
    if (!checked) checkDaemonDeath(t, daemon, workDir);
    checked = true;
  };
  t.teardown(unmount);
  // Serving once it is in the mount table; registered (for commands that find it) just after.
  await waitFor(() => mounted() && mountRecordFor(mountpoint) !== undefined, MOUNT_TIMEOUT_MS, `the mount at ${mountpoint}`, () =>
    daemon.exitCode !== null ? `stagefs mount exited with ${daemon.exitCode}: ${output}` : undefined,
  );
  return { mountpoint, cacheDir, daemon, path: (relative) => join(mountpoint, relative), output: () => output, unmount };
}
