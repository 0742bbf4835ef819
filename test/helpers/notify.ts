/** A listening sd_notify socket, as systemd keeps for a Type=notify service. */
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Test } from 'tap';
import { tempDir } from './mount';

const SOURCE = join(__dirname, '..', '..', '..', 'test', 'helpers', 'notify-listener.c');

export interface NotifySocket {
  /** The value for NOTIFY_SOCKET. */
  address: string;
  /** Messages received so far, each with the sender's pid. */
  messages(): Array<{ pid: number; fields: string[] }>;
  /** Waits until a message holds `field` (e.g. READY=1). */
  waitFor(field: string, timeoutMs?: number): Promise<{ pid: number; fields: string[] }>;
}

export async function notifySocket(t: Test, address?: string): Promise<NotifySocket> {
  const dir = tempDir(t, 'notify');
  const binary = join(dir, 'notify-listener');
  execFileSync('cc', ['-O1', '-Wall', '-o', binary, SOURCE]);
  const socketAddress = address ?? join(dir, 'notify.sock');
  const listener = spawn(binary, [socketAddress], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void listener.kill('SIGKILL'));
  let output = '';
  listener.stdout.setEncoding('utf8');
  listener.stdout.on('data', (chunk: string) => (output += chunk));
  const lines = () => output.split('\n').filter(Boolean);
  const deadline = Date.now() + 10_000;
  while (!lines().includes('listening')) {
    if (Date.now() > deadline || listener.exitCode !== null) throw new Error('the notify listener did not start');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const messages = () =>
    lines()
      .filter((line) => line.startsWith('pid='))
      .map((line) => {
        const space = line.indexOf(' ');
        return { pid: Number(line.slice(4, space)), fields: line.slice(space + 1).split('|') };
      });
  return {
    address: socketAddress,
    messages,
    async waitFor(field, timeoutMs = 60_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const found = messages().find((m) => m.fields.includes(field));
        if (found) return found;
        if (Date.now() > until) throw new Error(`no ${field} within ${timeoutMs} ms; got ${JSON.stringify(messages())}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}
