#!/usr/bin/env -S node --max-semi-space-size=2
/** The stagefs command line. */
import { CommandError, StoreError, UsageError, errorMessage } from '../errors';
import { VERSION } from '../version';
import { MAIN_USAGE, USAGE } from './usage';

type Command = (args: string[]) => Promise<number>;

/**
 * Each command loads only what it needs: the S3 SDK, lmdb and the FUSE engines take a second to
 * load on a busy host, which `unmount` or `status` should not wait for.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  mount: async () => (await import('./mount-command')).mountCommand,
  unmount: async () => (await import('./unmount-command')).unmountCommand,
  umount: async () => (await import('./unmount-command')).unmountCommand,
  demo: async () => (await import('./demo-command')).demoCommand,
  status: async () => (await import('./status-command')).statusCommand,
  cache: async () => (await import('./cache-command')).cacheCommand,
};

/** A mount(8) helper call starts with the source, where a command name would be. */
function isHelperCall(argv: string[]): boolean {
  return /^s3:\/\//.test(argv[0] ?? '');
}

/** mount(8)'s exit codes, which a helper follows: bad usage, and a mount that failed. */
const MOUNT_USAGE_EXIT = 1;
const MOUNT_FAILURE_EXIT = 32;

async function helper(argv: string[]): Promise<number> {
  try {
    const { mountHelper } = await import('./mount-helper');
    return await mountHelper(argv);
  } catch (err) {
    console.error(`stagefs: ${errorMessage(err)}`);
    if (!(err instanceof UsageError || err instanceof CommandError || err instanceof StoreError) && process.env.DEBUG) console.error(err);
    return err instanceof UsageError ? MOUNT_USAGE_EXIT : MOUNT_FAILURE_EXIT;
  }
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (isHelperCall(argv)) return helper(argv);
  if (name === '--version' || name === '-V' || name === 'version') {
    console.log(`stagefs ${VERSION}`);
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(MAIN_USAGE);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`stagefs: unknown command '${name}'\n${MAIN_USAGE}`);
    return 2;
  }
  try {
    return await (await load())(args);
  } catch (err) {
    if (err instanceof UsageError) {
      const usage = USAGE[name === 'umount' ? 'unmount' : name];
      console.error(`stagefs ${name}: ${err.message}${usage ? `\n${usage}` : ''}`);
      return 2;
    }
    if (err instanceof CommandError || err instanceof StoreError) {
      console.error(`stagefs ${name}: ${err.message}`);
      return 1;
    }
    console.error(`stagefs ${name}: ${errorMessage(err)}`);
    if (process.env.DEBUG) console.error(err);
    return 1;
  }
}

/**
 * Exits once what was written to stdout and stderr has reached them: on a pipe those writes are
 * asynchronous, and exiting at once cut `stagefs status --json | ...` off at 64 KiB. A reader
 * gone (EPIPE) ends the wait too.
 */
function exitWhenWritten(code: number): void {
  let waiting = 2;
  const written = () => {
    if (--waiting === 0) process.exit(code);
  };
  for (const stream of [process.stdout, process.stderr]) {
    stream.once('error', () => process.exit(code));
    stream.write('', written);
  }
}

main(process.argv.slice(2)).then(exitWhenWritten, (err: unknown) => {
  console.error(`stagefs: ${errorMessage(err)}`);
  exitWhenWritten(1);
});
