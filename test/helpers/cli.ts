/** Running the stagefs command line as a user would. */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { StatusReport } from '../../src/cli/status-command';
import { eventually } from './eventually';
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

/** `stagefs status --json` of the cache at `cacheDir`. */
export async function statusReport(cacheDir: string): Promise<StatusReport> {
  const result = await runCli(['status', '--cache-dir', cacheDir, '--json']);
  if (result.code !== 0) throw new Error(`stagefs status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as StatusReport;
}

/**
 * Whether every change made through the mount is in the store within `timeoutMs`: a change to a
 * file still local (its release in transit, say) is uploaded in the background after the call
 * that made it returned.
 */
export function uploadsSettled(cacheDir: string, timeoutMs = 60_000): Promise<boolean> {
  return eventually(async () => (await statusReport(cacheDir)).pendingUploads.count === 0, timeoutMs);
}
