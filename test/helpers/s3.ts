/** An embedded S3 server (its own process) per test, with a log of every request it served. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { EmbeddedS3 } from '../../src/s3server/embedded-s3';
import type { RequestLogLine } from '../../src/s3server/server-process';
import { S3Store } from '../../src/store/s3-store';

export const BUCKET = 'test';

export interface TestS3 {
  server: EmbeddedS3;
  /** A client of the test bucket, to seed and change objects behind the mount's back. */
  store: S3Store;
  env: Record<string, string>;
  requests(): RequestLogLine[];
  /** GETs of one key's bytes (not listings or HEADs) since the server started. */
  gets(key: string): RequestLogLine[];
}

export async function startS3(t: Test, buckets: string[] = [BUCKET]): Promise<TestS3> {
  const dir = mkdtempSync(join(tmpdir(), 'stagefs-test-s3-'));
  const requestLog = join(dir, 'requests.jsonl');
  const server = await EmbeddedS3.start({ buckets, requestLog, directory: join(dir, 'data') });
  t.teardown(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const env = server.clientEnv();
  Object.assign(process.env, env);
  const store = new S3Store({ bucket: buckets[0], prefix: '', endpoint: server.endpoint, region: 'us-east-1', pathStyle: true, profile: undefined, caBundle: undefined });
  const requests = () =>
    existsSync(requestLog)
      ? readFileSync(requestLog, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as RequestLogLine)
      : [];
  return {
    server,
    store,
    env,
    requests,
    gets: (key) =>
      requests().filter((r) => r.method === 'GET' && decodeURIComponent(r.url.split('?')[0]) === `/${buckets[0]}/${key}`),
  };
}
