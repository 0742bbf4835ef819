#!/usr/bin/env node
/** The stagefs command line. */
import { CommandError, StoreError, UsageError, errorMessage } from '../errors';
import { cacheCommand } from './cache-command';
import { demoCommand } from './demo-command';
import { mountCommand } from './mount-command';
import { statusCommand } from './status-command';
import { unmountCommand } from './unmount-command';
import { MAIN_USAGE, USAGE } from './usage';

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  mount: mountCommand,
  unmount: unmountCommand,
  umount: unmountCommand,
  demo: demoCommand,
  status: statusCommand,
  cache: cacheCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(MAIN_USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`stagefs: unknown command '${name}'\n${MAIN_USAGE}`);
    return 2;
  }
  try {
    return await command(args);
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`stagefs: ${errorMessage(err)}`);
    process.exit(1);
  },
);
