/**
 * An S3 server per test, with a log of every request it served: the embedded server (s3rver,
 * its own process), or, when STAGEFS_TEST_RGW names the directory of a running Ceph RGW (see
 * test/helpers/rgw.ts), a fresh bucket of that RGW.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { EmbeddedS3 } from '../../src/s3server/embedded-s3';
import { Rgw } from '../../src/s3server/rgw';
import type { RequestLogLine } from '../../src/s3server/server-process';
import { S3Store } from '../../src/store/s3-store';

export const BUCKET = 'test';
export const RGW_ENV = 'STAGEFS_TEST_RGW';

export interface TestS3 {
  server: EmbeddedS3 | Rgw;
  /** A client of the test bucket, to seed and change objects behind the mount's back. */
  store: S3Store;
  env: Record<string, string>;
  /** Every request since the server started (on RGW, `range` is not logged and stays undefined). */
  requests(): RequestLogLine[];
  /** GETs of one key's bytes (not listings or HEADs) since the server started. */
  gets(key: string): RequestLogLine[];
}

function readLines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];
}

function testS3(server: EmbeddedS3 | Rgw, buckets: string[], env: Record<string, string>, requests: () => RequestLogLine[]): TestS3 {
  Object.assign(process.env, env);
  const store = new S3Store({ bucket: buckets[0], prefix: '', endpoint: server.endpoint, region: 'us-east-1', pathStyle: true, profile: undefined, caBundle: undefined });
  return {
    server,
    store,
    env,
    requests,
    gets: (key) =>
      requests().filter((r) => r.method === 'GET' && decodeURIComponent(r.url.split('?')[0]) === `/${buckets[0]}/${key}`),
  };
}

export async function startS3(t: Test, buckets: string[] = [BUCKET]): Promise<TestS3> {
  const rgwDirectory = process.env[RGW_ENV];
  if (rgwDirectory) return useRgw(rgwDirectory, buckets);
  const dir = mkdtempSync(join(tmpdir(), 'stagefs-test-s3-'));
  const requestLog = join(dir, 'requests.jsonl');
  const server = await EmbeddedS3.start({ buckets, requestLog, directory: join(dir, 'data') });
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return testS3(server, buckets, server.clientEnv(), () => readLines(requestLog).map((line) => JSON.parse(line) as RequestLogLine));
}

/** A line of the beast frontend's access log: `... [date] "GET /bucket/key HTTP/1.1" 200 ...`. */
const ACCESS_LINE = / beast: \S+ \S+ - \S+ \[[^\]]+\] "(\S+) (\S+) HTTP\/[\d.]+" (\d{3}) /;
const LOG_SYNC_MS = 5_000;
let syncCount = 0;

/**
 * The RGW's requests so far. Ceph writes its log from a thread of its own, so a marker request
 * is sent first and the log read once the marker is in it: every request answered before the
 * call is then counted.
 */
function rgwRequests(rgw: Rgw): RequestLogLine[] {
  const marker = `/stagefs-log-sync-${process.pid}-${++syncCount}`;
  execFileSync('curl', ['-s', '-o', '/dev/null', '-I', `${rgw.endpoint}${marker}`]);
  const deadline = Date.now() + LOG_SYNC_MS;
  for (;;) {
    const lines = readLines(rgw.accessLog);
    if (lines.some((line) => line.includes(` ${marker} `))) {
      return lines.flatMap((line) => {
        const match = ACCESS_LINE.exec(line);
        if (!match || match[2].startsWith('/stagefs-log-sync-')) return [];
        return [{ method: match[1], url: match[2], range: undefined, status: Number(match[3]) }];
      });
    }
    if (Date.now() > deadline) throw new Error(`the RGW access log (${rgw.accessLog}) did not show a request within ${LOG_SYNC_MS} ms`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

/** The buckets in the running RGW, made where missing and emptied, so each test starts from nothing. */
async function useRgw(directory: string, buckets: string[]): Promise<TestS3> {
  const rgw = await Rgw.start({ directory, buckets });
  const s3 = testS3(rgw, buckets, rgw.clientEnv(), () => rgwRequests(rgw));
  for (const bucket of buckets) {
    const store = bucket === buckets[0] ? s3.store : new S3Store({ bucket, prefix: '', endpoint: rgw.endpoint, region: rgw.region, pathStyle: true, profile: undefined, caBundle: undefined });
    for (let page = await store.list(''); page.objects.length > 0; page = await store.list('')) {
      await store.deleteMany(page.objects.map((o) => o.key));
    }
  }
  return s3;
}
