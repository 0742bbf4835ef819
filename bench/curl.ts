/**
 * The object store through curl (libcurl, SigV4 signed by curl itself), the efficient client
 * the raw-S3 limit is measured with beside the SDK: one curl process runs a list of transfers,
 * `inFlight` at a time on kept-alive connections, and reports each one.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './processes';
import type { Remote } from './remote';

export interface CurlTransfer {
  key: string;
  /** Inclusive byte range to GET; the whole object when absent. */
  range?: [number, number];
  /** A local file to PUT instead of a GET. */
  upload?: string;
}

export interface CurlReport {
  seconds: number;
  bytes: number;
  /** Seconds of each transfer, in the order given. */
  times: number[];
}

function quote(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function url(remote: Remote, key: string): string {
  return `${remote.endpoint}/${remote.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** Runs the transfers with `inFlight` at once; fails unless every one got a 2xx. */
export async function curlTransfers(remote: Remote, transfers: CurlTransfer[], inFlight: number, timeoutMs: number): Promise<CurlReport> {
  const dir = mkdtempSync(join(tmpdir(), 'stagefs-bench-curl-'));
  try {
    // The config file holds the secret key: it stays out of the process list.
    const groups = transfers.map((transfer) => {
      const lines = [
        `url = ${quote(url(remote, transfer.key))}`,
        `aws-sigv4 = ${quote(`aws:amz:${remote.region}:s3`)}`,
        `user = ${quote(`${remote.accessKeyId}:${remote.secretAccessKey}`)}`,
        // curl signs this header but does not add it; RGW refuses a request without it.
        `header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"`,
        'output = "/dev/null"',
        'no-progress-meter',
        `write-out = "%{http_code} %{size_download} %{size_upload} %{time_total}\\n"`,
      ];
      if (transfer.range) lines.push(`range = "${transfer.range[0]}-${transfer.range[1]}"`);
      if (transfer.upload) lines.push(`upload-file = ${quote(transfer.upload)}`);
      return lines.join('\n');
    });
    const config = join(dir, 'transfers.conf');
    writeFileSync(config, groups.join('\nnext\n') + '\n', { mode: 0o600 });
    // With --parallel, curl 7.88 draws its progress meter even when --silent, into the output
    // read here; --no-progress-meter stops it and still reports errors.
    const args = ['--no-progress-meter', '--config', config];
    if (inFlight > 1) args.unshift('--parallel', '--parallel-immediate', '--parallel-max', String(inFlight));
    const start = performance.now();
    const output = await run('curl', args, { timeoutMs });
    const seconds = (performance.now() - start) / 1000;
    const reports = output
      .split('\n')
      .map((line) => /^(\d{3}) (\d+) (\d+) ([\d.]+)$/.exec(line.trim()))
      .filter((match): match is RegExpExecArray => match !== null);
    if (reports.length !== transfers.length) throw new Error(`curl reported ${reports.length} of ${transfers.length} transfers: ${output.slice(0, 300)}`);
    const failed = reports.find((match) => !match[1].startsWith('2'));
    if (failed) throw new Error(`curl got HTTP ${failed[1]}`);
    const bytes = reports.reduce((sum, match) => sum + Number(match[2]) + Number(match[3]), 0);
    // With --parallel the reports come in the order transfers end; times are for the median only.
    return { seconds, bytes, times: reports.map((match) => Number(match[4])) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
