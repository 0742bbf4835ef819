/**
 * The object store a run measures against: a Ceph RGW started for the run (the default), the
 * embedded S3 server, or an existing endpoint. Every system and job reaches it the same way.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EmbeddedS3 } from '../src/s3server/embedded-s3';
import { Rgw } from '../src/s3server/rgw';
import { S3Store } from '../src/store/s3-store';
import { BenchUsageError, type BenchOptions, type Scale } from './options';

export interface Remote {
  endpoint: string;
  bucket: string;
  /** Key prefix of the data set, ending in '/'. */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export interface PreparedRemote {
  remote: Remote;
  /** The project's own S3 client, for uploads, checks and the raw-S3 limit. */
  store: S3Store;
  /** What the report says the store was. */
  description: string;
  stop(): Promise<void>;
}

/** RAM the RGW may hold objects in: the data set, plus what the write jobs put at once. */
const RGW_MEMORY: Record<Scale, string> = { full: '12GiB', quick: '4GiB', smoke: '1GiB' };

/** S3Store takes its credentials from the environment, as the AWS SDK does. */
function storeFor(remote: Remote): S3Store {
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: remote.accessKeyId, AWS_SECRET_ACCESS_KEY: remote.secretAccessKey, AWS_REGION: remote.region });
  return new S3Store({ bucket: remote.bucket, prefix: '', endpoint: remote.endpoint, region: remote.region, pathStyle: true, profile: undefined, caBundle: undefined });
}

export async function prepareRemote(options: BenchOptions): Promise<PreparedRemote> {
  const prefix = `${options.scale}/`;
  if ('endpoint' in options.store) {
    const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) throw new BenchUsageError('--endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
    const remote = { endpoint: options.store.endpoint, bucket: options.bucket, prefix, accessKeyId, secretAccessKey, region: process.env.AWS_REGION ?? 'us-east-1' };
    const store = storeFor(remote);
    await store.checkAccess(prefix);
    return { remote, store, description: `S3 endpoint ${remote.endpoint}`, stop: async () => undefined };
  }
  if (options.store.server === 'rgw') {
    const started = performance.now();
    const rgw = await Rgw.start({ directory: join(options.workDir, 'rgw'), memory: RGW_MEMORY[options.scale], buckets: [options.bucket] });
    const seconds = (performance.now() - started) / 1000;
    const remote = { endpoint: rgw.endpoint, bucket: options.bucket, prefix, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey, region: rgw.region };
    const description = `Ceph RGW ${cephVersion()} (scripts/rgw.sh: one mon, one memstore OSD, beast frontend on 127.0.0.1; started in ${seconds.toFixed(1)} s)`;
    return { remote, store: storeFor(remote), description, stop: () => rgw.stop() };
  }
  // Kept in the work dir, so a later run finds the data sets already uploaded.
  const directory = join(options.workDir, 's3');
  mkdirSync(directory, { recursive: true });
  const server = await EmbeddedS3.start({ directory, buckets: [options.bucket] });
  const remote = {
    endpoint: server.endpoint,
    bucket: options.bucket,
    prefix,
    accessKeyId: EmbeddedS3.accessKeyId,
    secretAccessKey: EmbeddedS3.secretAccessKey,
    region: 'us-east-1',
  };
  return { remote, store: storeFor(remote), description: 'embedded S3 server (s3rver, its own process, 127.0.0.1)', stop: () => server.stop() };
}

function cephVersion(): string {
  const result = spawnSync('radosgw', ['--version'], { encoding: 'utf8' });
  return /ceph version (\S+)/.exec(result.stdout ?? '')?.[1] ?? '';
}
