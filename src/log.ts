/**
 * Logging goes through `debug` namespaces; errors, warnings and notices are always on. Lines go
 * to standard error (with syslog priorities when that is the journal) or to a log file, which
 * SIGHUP reopens so that rotation by renaming works.
 */
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { format } from 'node:util';
import createDebug from 'debug';

export const ALWAYS_ON = ['stagefs:error', 'stagefs:warn', 'stagefs:info'];

/** sd-daemon(3) priority prefixes, which journald reads from a service's standard error. */
const PRIORITY: Record<string, number> = { 'stagefs:error': 3, 'stagefs:warn': 4, 'stagefs:info': 6 };
const DEBUG_PRIORITY = 7;

export interface LogOptions {
  /** Log to this file instead of standard error. */
  file?: string;
  /**
   * Points standard error at a descriptor. When standard error is the log file (a daemon's), it
   * follows the reopened file, so what C code and Node itself write there is not left behind.
   */
  redirectStderr?: (fd: number) => void;
}

export interface Log {
  /** Opens the log file anew (after it was moved aside); nothing for standard error. */
  reopen(): void;
}

/** Whether standard error is the journal: systemd sets JOURNAL_STREAM to its device and inode. */
function stderrIsJournal(env: NodeJS.ProcessEnv): boolean {
  if (!env.JOURNAL_STREAM) return false;
  const stat = fstatSync(2);
  return env.JOURNAL_STREAM === `${stat.dev}:${stat.ino}`;
}

function openLog(path: string): number {
  return openSync(path, 'a', 0o600);
}

function sameFile(a: number, b: number): boolean {
  const [x, y] = [fstatSync(a), fstatSync(b)];
  return x.dev === y.dev && x.ino === y.ino;
}

export function enableLogging(env: NodeJS.ProcessEnv = process.env, options: LogOptions = {}): Log {
  const chosen = (env.DEBUG ?? '').split(',').filter(Boolean);
  createDebug.enable([...ALWAYS_ON, ...chosen].join(','));
  const journal = !options.file && stderrIsJournal(env);
  createDebug.formatArgs = function formatArgs(this: createDebug.Debugger, args: unknown[]) {
    const prefix = journal ? `<${PRIORITY[this.namespace] ?? DEBUG_PRIORITY}>` : `${new Date().toISOString()} `;
    args[0] = `${prefix}${this.namespace} ${String(args[0])}`;
  };
  const file = options.file;
  if (!file) {
    createDebug.log = (...args: unknown[]) => void process.stderr.write(format(...args) + '\n');
    return { reopen: () => undefined };
  }
  let fd = openLog(file);
  createDebug.log = (...args: unknown[]) => {
    const line = format(...args) + '\n';
    try {
      writeSync(fd, line);
    } catch {
      // The log file cannot take it (a full disk): the line goes to stderr rather than nowhere.
      process.stderr.write(line);
    }
  };
  return {
    reopen() {
      const next = openLog(file);
      if (options.redirectStderr && sameFile(2, fd)) options.redirectStderr(next);
      const previous = fd;
      fd = next;
      closeSync(previous);
      createDebug('stagefs:info')('log file %s reopened', file);
    },
  };
}
