/** Runs a fio job file and reads its JSON report. */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { run } from './processes';

export interface FioResult {
  bytesPerSecond: number;
  iops: number;
  bytes: number;
}

/** fio prints notices (e.g. "opendir added N files") ahead of the JSON, even into --output. */
export function parseFioReport(text: string): FioResult {
  const start = text.search(/^\{/m);
  if (start < 0) throw new Error(`fio printed no report: ${text.slice(0, 200)}`);
  const report = JSON.parse(text.slice(start)) as { jobs: Array<{ error: number; read: { bw_bytes: number; iops: number; io_bytes: number } }> };
  const job = report.jobs[0];
  if (!job) throw new Error('fio reported no job');
  if (job.error) throw new Error(`fio job failed with error ${job.error}`);
  if (job.read.io_bytes === 0) throw new Error('fio read nothing');
  return { bytesPerSecond: job.read.bw_bytes, iops: job.read.iops, bytes: job.read.io_bytes };
}

export async function runFio(jobFile: string, env: Record<string, string>, timeoutMs: number): Promise<FioResult> {
  const output = join(tmpdir(), `stagefs-bench-fio-${process.pid}.json`);
  try {
    await run('fio', ['--output-format=json', `--output=${output}`, jobFile], { env: { ...process.env, ...env }, timeoutMs });
    return parseFioReport(readFileSync(output, 'utf8'));
  } finally {
    rmSync(output, { force: true });
  }
}
