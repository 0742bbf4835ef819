/** The benchmark's command line. */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { SYSTEM_NAMES, type SystemName } from './systems';
import { JOB_NAMES, type JobName } from './jobs';

export const USAGE = `usage: npm run bench -- [--quick] [--smoke] [--s3 rgw|s3rver | --endpoint URL --bucket NAME]
    [--only JOB[,JOB]] [--systems NAME[,NAME]] [--out DIR] [--work DIR]

  --quick          smaller data sets and shorter timed jobs
  --smoke          a tiny data set, to check that the runner works (what npm test runs)
  --s3 rgw         the object store: a Ceph RGW started by scripts/rgw.sh (the default), or
  --s3 s3rver      the embedded S3 server (s3rver: needs no Ceph packages)
  --endpoint URL   an existing S3 endpoint instead (credentials from AWS_* variables);
                   --bucket names its bucket, which must exist
  --only JOB       run only these jobs: ${JOB_NAMES.join(', ')}
  --systems NAME   mount only these: ${SYSTEM_NAMES.join(', ')}
  --out DIR        where results go (default bench/results)
  --work DIR       data sets, cache dirs and mountpoints (default bench/work)`;

export type Scale = 'full' | 'quick' | 'smoke';
export const SERVERS = ['rgw', 's3rver'] as const;
export type ServerName = (typeof SERVERS)[number];

export interface BenchOptions {
  scale: Scale;
  /** The store: a server the bench starts, or an existing endpoint. */
  store: { server: ServerName } | { endpoint: string };
  bucket: string;
  jobs: JobName[];
  systems: SystemName[];
  outDir: string;
  workDir: string;
}

export class BenchUsageError extends Error {}

function pick<T extends string>(list: string | undefined, known: readonly T[], what: string): T[] {
  if (!list) return [...known];
  const names = list.split(',').map((name) => name.trim()).filter(Boolean);
  for (const name of names) {
    if (!known.includes(name as T)) throw new BenchUsageError(`unknown ${what} '${name}' (known: ${known.join(', ')})`);
  }
  return names as T[];
}

export function parseBenchArgs(args: string[], projectDir: string): BenchOptions | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        quick: { type: 'boolean', default: false },
        smoke: { type: 'boolean', default: false },
        s3: { type: 'string' },
        endpoint: { type: 'string' },
        bucket: { type: 'string' },
        only: { type: 'string' },
        systems: { type: 'string' },
        out: { type: 'string' },
        work: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new BenchUsageError((err as Error).message.split('\n')[0]);
  }
  if (values.help) return 'help';
  if (values.bucket && !values.endpoint) throw new BenchUsageError('--bucket needs --endpoint (a server the bench starts makes its own)');
  if (values.endpoint && !values.bucket) throw new BenchUsageError('--endpoint needs --bucket');
  if (values.endpoint && values.s3) throw new BenchUsageError('--s3 and --endpoint exclude each other');
  const servers = pick(values.s3 ?? 'rgw', SERVERS, 'S3 server');
  if (servers.length !== 1) throw new BenchUsageError('--s3 takes one server: rgw or s3rver');
  const [server] = servers;
  return {
    scale: values.smoke ? 'smoke' : values.quick ? 'quick' : 'full',
    store: values.endpoint ? { endpoint: values.endpoint } : { server },
    bucket: values.bucket ?? 'stagefs-bench',
    jobs: pick(values.only, JOB_NAMES, 'job'),
    systems: pick(values.systems, SYSTEM_NAMES, 'system'),
    outDir: values.out ?? join(projectDir, 'bench', 'results'),
    workDir: values.work ?? join(projectDir, 'bench', 'work'),
  };
}
