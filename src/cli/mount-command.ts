/** `stagefs mount`: in the foreground it serves; otherwise it starts a daemon and waits until it serves. */
import { spawn } from 'node:child_process';
import createDebug from 'debug';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { buildMountConfig, type MountConfig, type MountOptions } from '../config';
import { CommandError, errorMessage } from '../errors';
import { preparePrivateDir } from '../daemon/cache-dir';
import { DAEMON_NODE_OPTIONS } from '../daemon/daemon-flags';
import { startMount, sourceUrl, type RunningMount } from '../daemon/mount-service';
import { serviceManagerFromEnv } from '../daemon/service-manager';
import { loadNativeAddon } from '../native/addon';
import { enableLogging, type Log } from '../log';
import { expectPositionals, parseCommandArgs } from './args';
import { MOUNT_OPTIONS, toArgs, translateMountOptions } from './mount-options';
import { HELP } from './usage';

/** Set by a parent `stagefs mount` for its daemon: the fd on which to say "ready" or the error. */
const READY_FD_ENV = 'STAGEFS_READY_FD';

export interface MountRequest {
  source: string;
  mountpoint: string;
  options: MountOptions;
  /** Say nothing on success (mount(8) helpers do not). */
  quiet?: boolean;
  /** Check the source and options, and stop without mounting (mount -f). */
  fake?: boolean;
}

export async function mountCommand(args: string[]): Promise<number> {
  const { values, positionals, help } = parseCommandArgs<MountOptions & { o?: string[] }>(args, {
    ...MOUNT_OPTIONS,
    o: { type: 'string', short: 'o', multiple: true },
  });
  if (help) {
    console.log(HELP.mount);
    return 0;
  }
  expectPositionals(positionals, ['s3://BUCKET[/PREFIX]', 'MOUNTPOINT']);
  const { o, ...flags } = values;
  // Flags win over -o options, as later words win on a command line.
  const options = { ...translateMountOptions(o ?? []).options, ...flags };
  return mount({ source: positionals[0], mountpoint: positionals[1], options });
}

export async function mount(request: MountRequest): Promise<number> {
  const config = buildMountConfig(request.source, request.mountpoint, request.options);
  if (request.fake) return 0;
  if (!config.foreground) return mountInBackground(request, config);
  const log = enableLogging(process.env, { file: config.logFile, redirectStderr: stderrRedirector() });
  keepServingOnStrayErrors();
  const readyFd = process.env[READY_FD_ENV] ? Number(process.env[READY_FD_ENV]) : undefined;
  delete process.env[READY_FD_ENV];
  let mount: RunningMount;
  try {
    mount = await startMount(config, serviceManagerFromEnv());
  } catch (err) {
    if (readyFd !== undefined) tell(readyFd, `error: ${errorMessage(err)}`);
    throw err;
  }
  if (readyFd !== undefined) tell(readyFd, 'ready');
  else if (!request.quiet) console.error(`stagefs: ${sourceUrl(config)} mounted at ${config.mountpoint}; Ctrl-C unmounts`);
  await serveUntilSignalled(mount, log);
  return 0;
}

/** What moves standard error along with a reopened log file: the native addon's dup2, where it loads. */
function stderrRedirector(): ((fd: number) => void) | undefined {
  const native = loadNativeAddon();
  return 'addon' in native ? (fd) => native.addon.redirectStderr(fd) : undefined;
}

/**
 * A mount serves many users: an error no request awaited (a bug, or a library's stray promise)
 * is logged, not allowed to take the mount down under all of them.
 */
function keepServingOnStrayErrors(): void {
  const logError = createDebug('stagefs:error');
  process.on('unhandledRejection', (reason) => logError('unhandled rejection: %s', reason instanceof Error ? reason.stack : String(reason)));
}

function tell(fd: number, line: string): void {
  writeSync(fd, line + '\n');
  closeSync(fd);
}

/** Serves until SIGINT or SIGTERM (or an outside unmount), then takes the mount down; SIGHUP reopens the log. */
export async function serveUntilSignalled(mount: RunningMount, log?: Log): Promise<void> {
  let signalled = 0;
  const onSignal = () => {
    signalled++;
    if (signalled > 1) process.exit(130);
    void mount.stop();
  };
  const onHangup = () => log?.reopen();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onHangup);
  await mount.stopped;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onHangup);
}

/** Lines the daemon wrote to its log that its logger did not: libfuse's and fusermount's words, a crash. */
function foreignLines(logPath: string, from: number): string[] {
  const fd = openSync(logPath, 'r');
  try {
    const length = fstatSync(fd).size - from;
    if (length <= 0) return [];
    const buffer = Buffer.alloc(Math.min(length, 64 * 1024));
    const n = readSync(fd, buffer, 0, buffer.length, from);
    return buffer
      .subarray(0, n)
      .toString('utf8')
      .split('\n')
      .map((line) => line.trim())
      // Not the logger's lines, nor the daemon's own last words (its error, already in hand).
      .filter((line) => line && !/^\d{4}-\d\d-\d\dT[\d:.]+Z stagefs:/.test(line) && !line.startsWith('stagefs '))
      .slice(-5);
  } finally {
    closeSync(fd);
  }
}

/** Starts `stagefs mount --foreground` detached, logging to a file, and waits for its word. */
async function mountInBackground(request: MountRequest, config: MountConfig): Promise<number> {
  const logPath = config.logFile ?? join(config.cache.dir, 'stagefs.log');
  // The log's default home: created here, private, as the daemon will keep it.
  if (!config.logFile) preparePrivateDir(config.cache.dir, 'cache dir', '--cache-dir');
  const log = openSync(logPath, 'a', 0o600);
  const logStart = fstatSync(log).size;
  const args = [request.source, request.mountpoint, ...toArgs({ ...request.options, 'log-file': logPath }), '--foreground'];
  const env: NodeJS.ProcessEnv = { ...process.env, [READY_FD_ENV]: '3' };
  // A service manager waiting on this process is told by it, not by the daemon it leaves behind.
  delete env.NOTIFY_SOCKET;
  const child = spawn(process.execPath, [...DAEMON_NODE_OPTIONS, process.argv[1], 'mount', ...args], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
    env,
  });
  closeSync(log);
  const word = await new Promise<string>((resolve) => {
    let text = '';
    const channel = child.stdio[3] as NodeJS.ReadableStream;
    channel.setEncoding('utf8');
    channel.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) resolve(text.split('\n')[0]);
    });
    child.once('exit', (code, signal) => resolve(`error: the mount daemon exited (${signal ?? `code ${code}`}); see ${logPath}`));
  });
  if (word !== 'ready') {
    const said = foreignLines(logPath, logStart);
    throw new CommandError(word.replace(/^error: /, '') + (said.length ? ` (${said.join('; ')})` : ''));
  }
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  child.unref();
  if (!request.quiet) console.error(`stagefs: ${sourceUrl(config)} mounted at ${config.mountpoint} (log: ${logPath})`);
  return 0;
}
