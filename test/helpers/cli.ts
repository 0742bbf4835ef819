/** Running the stagefs command line as a user would. */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { CLI } from './mount';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Empties the kernel's page cache, so the next read reaches the mount's daemon. */
export function dropPageCache(): void {
  writeFileSync('/proc/sys/vm/drop_caches', '1');
}
