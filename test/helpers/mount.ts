/**
 * Real FUSE mounts for tests: `stagefs mount --foreground` in its own process, torn down in the
 * test's teardown, pass or fail. A mount a crashed test leaves is detached when the test process
 * exits.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { mountRecordFor } from '../../src/daemon/runtime-registry';
import { BUCKET, type TestS3 } from './s3';

export const CLI = join(__dirname, '..', '..', 'src', 'cli', 'main.js');

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

export async function mountS3(t: Test, s3: TestS3, options: MountOptions): Promise<TestMount> {
  const mountpoint = mountpointDir(t);
  const cacheDir = options.cacheDir ?? tempDir(t, 'cache');
  const source = `s3://${options.bucket ?? BUCKET}${options.prefix ? '/' + options.prefix : ''}`;
  const daemon = spawn(
    process.execPath,
    [
      CLI,
      'mount',
      source,
      mountpoint,
      '--foreground',
      '--engine',
      options.engine,
      '--endpoint',
      s3.server.endpoint,
      '--cache-dir',
      cacheDir,
      // Written files wait for upload beside the cache, so a remount of the same cache dir finds them.
      '--state-dir',
      join(cacheDir, 'state'),
      ...(options.args ?? []),
    ],
    { env: { ...process.env, ...s3.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  daemon.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  daemon.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  liveMountpoints.add(mountpoint);
  const mounted = () => isStagefsMount(mountAt(mountpoint));
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
  };
  t.teardown(unmount);
  // Serving once it is in the mount table; registered (for commands that find it) just after.
  await waitFor(() => mounted() && mountRecordFor(mountpoint) !== undefined, MOUNT_TIMEOUT_MS, `the mount at ${mountpoint}`, () =>
    daemon.exitCode !== null ? `stagefs mount exited with ${daemon.exitCode}: ${output}` : undefined,
  );
  return { mountpoint, cacheDir, daemon, path: (relative) => join(mountpoint, relative), output: () => output, unmount };
}
