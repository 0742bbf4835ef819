/** `stagefs mount`: in the foreground it serves; otherwise it starts a daemon and waits until it serves. */
import { spawn } from 'node:child_process';
import createDebug from 'debug';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { buildMountConfig, type MountConfig, type MountOptions } from '../config';
import { CommandError, errorMessage } from '../errors';
import { startMount, sourceUrl, type RunningMount } from '../daemon/mount-service';
import { enableLogging } from '../log';
import { expectPositionals, parseCommandArgs, type OptionSpec } from './args';
import { HELP } from './usage';

export const MOUNT_OPTIONS: OptionSpec = {
  endpoint: { type: 'string' },
  region: { type: 'string' },
  'path-style': { type: 'boolean' },
  'cache-dir': { type: 'string' },
  'cache-size': { type: 'string' },
  'block-size': { type: 'string' },
  'metadata-ttl': { type: 'string' },
  'max-age': { type: 'string' },
  'sweep-interval': { type: 'string' },
  'high-watermark': { type: 'string' },
  'low-watermark': { type: 'string' },
  'read-only': { type: 'boolean' },
  foreground: { type: 'boolean', short: 'f' },
  'allow-other': { type: 'boolean' },
  uid: { type: 'string' },
  gid: { type: 'string' },
  engine: { type: 'string' },
};

/** Set by a parent `stagefs mount` for its daemon: the fd on which to say "ready" or the error. */
const READY_FD_ENV = 'STAGEFS_READY_FD';

export async function mountCommand(args: string[]): Promise<number> {
  const { values, positionals, help } = parseCommandArgs<MountOptions>(args, MOUNT_OPTIONS);
  if (help) {
    console.log(HELP.mount);
    return 0;
  }
  expectPositionals(positionals, ['s3://BUCKET[/PREFIX]', 'MOUNTPOINT']);
  const config = buildMountConfig(positionals[0], positionals[1], values);
  if (!config.foreground) return mountInBackground(args, config);
  enableLogging();
  keepServingOnStrayErrors();
  const readyFd = process.env[READY_FD_ENV] ? Number(process.env[READY_FD_ENV]) : undefined;
  let mount: RunningMount;
  try {
    mount = await startMount(config);
  } catch (err) {
    if (readyFd !== undefined) tell(readyFd, `error: ${errorMessage(err)}`);
    throw err;
  }
  if (readyFd !== undefined) tell(readyFd, 'ready');
  else console.error(`stagefs: ${sourceUrl(config)} mounted at ${config.mountpoint}; Ctrl-C unmounts`);
  await serveUntilSignalled(mount);
  return 0;
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

/** Serves until SIGINT or SIGTERM (or an outside unmount), then takes the mount down. */
export async function serveUntilSignalled(mount: RunningMount): Promise<void> {
  let signalled = 0;
  const onSignal = () => {
    signalled++;
    if (signalled > 1) process.exit(130);
    void mount.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', () => undefined);
  await mount.stopped;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

/** Starts `stagefs mount --foreground` detached, logging to the cache dir, and waits for its word. */
async function mountInBackground(args: string[], config: MountConfig): Promise<number> {
  mkdirSync(config.cache.dir, { recursive: true });
  const logPath = join(config.cache.dir, 'stagefs.log');
  const log = openSync(logPath, 'a');
  const child = spawn(process.execPath, [process.argv[1], 'mount', ...args, '--foreground'], {
    detached: true,
    stdio: ['ignore', log, log, 'pipe'],
    env: { ...process.env, [READY_FD_ENV]: '3' },
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
    throw new CommandError(word.replace(/^error: /, ''));
  }
  (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
  child.unref();
  console.error(`stagefs: ${sourceUrl(config)} mounted at ${config.mountpoint} (log: ${logPath})`);
  return 0;
}
