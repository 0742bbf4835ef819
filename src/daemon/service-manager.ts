/**
 * Telling the service manager how the mount is doing: systemd's sd_notify protocol (READY=1 once
 * the mount serves, STOPPING=1 when it goes down, STATUS= lines between), for Type=notify units.
 */
import createDebug from 'debug';
import { loadNativeAddon, type NativeAddon } from '../native/addon';

const debug = createDebug('stagefs:notify');
const warn = createDebug('stagefs:warn');

export interface ServiceManager {
  status(text: string): void;
  ready(text: string): void;
  stopping(text: string): void;
}

/** For mounts no service manager waits on (the demo, tests of the daemon's parts). */
export const NO_SERVICE_MANAGER: ServiceManager = { status: () => undefined, ready: () => undefined, stopping: () => undefined };

/**
 * The service manager named by NOTIFY_SOCKET, or none. The variable is taken out of the
 * environment, as sd_notify(3) does, so that programs this process runs do not speak for it.
 * The datagram is sent by the native addon: Node has no datagram unix sockets.
 */
export function serviceManagerFromEnv(env: NodeJS.ProcessEnv = process.env, load: () => ReturnType<typeof loadNativeAddon> = loadNativeAddon): ServiceManager {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return NO_SERVICE_MANAGER;
  delete env.NOTIFY_SOCKET;
  const loaded = load();
  if (!('addon' in loaded)) {
    warn('cannot notify the service manager (NOTIFY_SOCKET is set): the native addon did not load (%s); use Type=simple', loaded.error);
    return NO_SERVICE_MANAGER;
  }
  return new SystemdNotifier(socket, loaded.addon);
}

/** A field ends at a newline. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ');
}

class SystemdNotifier implements ServiceManager {
  private failed = false;

  constructor(
    private readonly socket: string,
    private readonly addon: NativeAddon,
  ) {}

  status(text: string): void {
    this.send(`STATUS=${oneLine(text)}`);
  }

  ready(text: string): void {
    this.send(`READY=1\nSTATUS=${oneLine(text)}`);
  }

  stopping(text: string): void {
    this.send(`STOPPING=1\nSTATUS=${oneLine(text)}`);
  }

  private send(message: string): void {
    debug('%s', message.replace(/\n/g, ' '));
    const errno = this.addon.notify(this.socket, message);
    if (errno && !this.failed) {
      this.failed = true;
      warn('cannot notify the service manager at %s: errno %d', this.socket, errno);
    }
  }
}
