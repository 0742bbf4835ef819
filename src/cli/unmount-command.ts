/** `stagefs unmount`: unmounts, refusing while busy, and waits for the daemon to finish. */
import { resolve } from 'node:path';
import { CommandError, errorMessage } from '../errors';
import { fuseUnmount, isStagefsMount, mountAt } from '../daemon/mount-table';
import { isAlive, mountRecordFor } from '../daemon/runtime-registry';
import { sleep } from '../util/deferred';
import { expectPositionals, parseCommandArgs } from './args';
import { HELP } from './usage';

const DAEMON_EXIT_WAIT_MS = 120_000;

export async function unmountCommand(args: string[]): Promise<number> {
  const { positionals, help } = parseCommandArgs<Record<string, never>>(args, {});
  if (help) {
    console.log(HELP.unmount);
    return 0;
  }
  expectPositionals(positionals, ['MOUNTPOINT']);
  const mountpoint = resolve(positionals[0]);
  const entry = mountAt(mountpoint);
  if (!entry) throw new CommandError(`${mountpoint} is not mounted`);
  if (!isStagefsMount(entry)) throw new CommandError(`${mountpoint} is not a stagefs mount (it is ${entry.fstype})`);
  const record = mountRecordFor(mountpoint);
  try {
    await fuseUnmount(mountpoint);
  } catch (err) {
    throw new CommandError(`cannot unmount ${mountpoint}: ${errorMessage(err)}`);
  }
  if (record) await waitForExit(record.pid);
  return 0;
}

async function waitForExit(pid: number): Promise<void> {
  const deadline = Date.now() + DAEMON_EXIT_WAIT_MS;
  let told = false;
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new CommandError(`unmounted, but the daemon (pid ${pid}) has not exited`);
    if (!told && Date.now() > deadline - DAEMON_EXIT_WAIT_MS + 3000) {
      console.error(`stagefs: waiting for the daemon (pid ${pid}) to finish`);
      told = true;
    }
    await sleep(20);
  }
}
