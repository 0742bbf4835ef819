/**
 * The kernel side of a FUSE connection, as engines see it: which descriptors of this process
 * are FUSE devices, noticing when one is closed, and cutting a connection off through fusectl.
 */
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import createDebug from 'debug';
import { errorMessage } from '../errors';

const debug = createDebug('stagefs:fuse');

const FUSE_DEVICE = '/dev/fuse';

function target(fd: number): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // closed meanwhile
    throw err;
  }
}

/** Descriptors of this process open on /dev/fuse. */
export function fuseDeviceFds(): Set<number> {
  const fds = new Set<number>();
  for (const name of readdirSync('/proc/self/fd')) {
    if (target(Number(name)) === FUSE_DEVICE) fds.add(Number(name));
  }
  return fds;
}

/**
 * Calls `onClosed` once descriptor `fd` no longer refers to /dev/fuse: a library serving the
 * connection closes it when the kernel ends the connection. Returns a function that stops watching.
 */
export function watchDeviceClose(fd: number, intervalMs: number, onClosed: () => void): () => void {
  const timer = setInterval(() => {
    if (target(fd) === FUSE_DEVICE) return;
    clearInterval(timer);
    onClosed();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Aborts the connection of the FUSE mount with device number `device` ("major:minor") through
 * fusectl, where that is mounted: requests in flight fail and the kernel lets go of the daemon.
 * Returns whether it could.
 */
export function abortConnection(device: string): boolean {
  const minor = device.split(':')[1];
  if (!minor) return false;
  try {
    writeFileSync(`/sys/fs/fuse/connections/${minor}/abort`, '1');
    return true;
  } catch (err) {
    debug('fusectl abort unavailable: %s', errorMessage(err));
    return false;
  }
}
