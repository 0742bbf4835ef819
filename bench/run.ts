/**
 * `npm run bench`: measures stagefs, s3fs and rclone mount on the same data in one run, with
 * the limits (raw S3, local disk), and writes bench/results/<date>-<host>.{md,json,svg}.
 */
import { spawnSync } from 'node:child_process';
import { cpus, hostname, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { EmbeddedS3 } from '../src/s3server/embedded-s3';
import { formatBytes } from '../src/units';
import { dataFiles, generateLocal, SHAPES, totalBytes, uploadMissing } from './datasets';
import { JOBS, type JobContext } from './jobs';
import { BenchUsageError, parseBenchArgs, USAGE, type BenchOptions } from './options';
import { dropPageCache } from './processes';
import { renderSummary, writeReport, formatValue } from './report';
import type { BenchResults, JobResult, Measurement } from './results';
import { LABELS, LIMITS, liveMounts, mountSystem, PACKAGES, type LimitName, type MountSystemName, type Remote, type SystemName } from './systems';

const projectDir = join(__dirname, '..', '..');

function say(message: string): void {
  process.stdout.write(`${message}\n`);
}

function installTools(options: BenchOptions): void {
  const packages = ['fio', ...options.systems.flatMap((system) => PACKAGES[system] ?? [])];
  const result = spawnSync('sh', [join(projectDir, 'scripts', 'install-system-deps.sh'), ...packages], { stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`could not install ${packages.join(', ')} (see above)`);
}

function version(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim().split('\n')[0] : 'not installed';
}

function machine(options: BenchOptions): Record<string, string> {
  const cpu = cpus();
  const disk = spawnSync('df', ['--output=source,fstype', options.workDir], { encoding: 'utf8' }).stdout.trim().split('\n')[1] ?? '';
  return {
    cpu: `${cpu.length} × ${cpu[0]?.model ?? 'unknown'}`,
    memory: formatBytes(totalmem()),
    kernel: release(),
    node: process.version,
    'work disk': disk.replace(/\s+/g, ' '),
    fio: version('fio', ['--version']),
    s3fs: version('s3fs', ['--version']),
    rclone: version('rclone', ['version']),
    store: options.endpoint ? `S3 endpoint ${options.endpoint}` : 'embedded S3 server (s3rver, its own process, 127.0.0.1)',
  };
}

async function prepareRemote(options: BenchOptions): Promise<{ remote: Remote; server: EmbeddedS3 | undefined }> {
  if (options.endpoint) {
    const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) throw new BenchUsageError('--endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
    const remote = { endpoint: options.endpoint, bucket: options.bucket, prefix: `${options.scale}/`, accessKeyId, secretAccessKey, region: process.env.AWS_REGION ?? 'us-east-1' };
    return { remote, server: undefined };
  }
  // Kept in the work dir, so a later run finds the data sets already uploaded.
  const directory = join(options.workDir, 's3');
  mkdirSync(directory, { recursive: true });
  const server = await EmbeddedS3.start({ directory, buckets: [options.bucket] });
  const remote = {
    endpoint: server.endpoint,
    bucket: options.bucket,
    prefix: `${options.scale}/`,
    accessKeyId: EmbeddedS3.accessKeyId,
    secretAccessKey: EmbeddedS3.secretAccessKey,
    region: 'us-east-1',
  };
  return { remote, server };
}

function clientFor(remote: Remote): S3Client {
  return new S3Client({
    endpoint: remote.endpoint,
    region: remote.region,
    forcePathStyle: true,
    credentials: { accessKeyId: remote.accessKeyId, secretAccessKey: remote.secretAccessKey },
  });
}

async function ensureBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 404) throw err;
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  }
}

/** Runs `measure` cold then warm, the page cache dropped before each. */
async function coldAndWarm(measure: () => Promise<number>): Promise<Measurement> {
  const result: Measurement = {};
  try {
    dropPageCache();
    result.cold = await measure();
    dropPageCache();
    result.warm = await measure();
  } catch (err) {
    result.error = (err as Error).message.split('\n')[0];
  }
  return result;
}

function describe(system: SystemName, job: JobResult, measurement: Measurement): string {
  const parts = (['cold', 'warm'] as const).filter((p) => measurement[p] !== undefined).map((p) => `${p} ${formatValue(measurement[p])} ${job.unit}`);
  return `  ${system.padEnd(20)} ${job.name.padEnd(15)} ${parts.join(', ')}${measurement.error ? `  FAILED: ${measurement.error}` : ''}`;
}

async function measureLimit(limit: LimitName, job: JobResult, context: JobContext, localRoot: string, client: S3Client, remote: Remote): Promise<Measurement> {
  const definition = JOBS[job.name];
  if (limit === 'local-disk') return coldAndWarm(() => definition.measureTree(localRoot, context));
  // The store has no warm: every read of it is a request.
  try {
    return { cold: await definition.measureStore(client, remote, context) };
  } catch (err) {
    return { error: (err as Error).message.split('\n')[0] };
  }
}

async function measureMounted(system: MountSystemName, jobs: JobResult[], context: JobContext, remote: Remote, options: BenchOptions, results: BenchResults): Promise<void> {
  const entry = (results.systems[system] = { label: LABELS[system] } as NonNullable<BenchResults['systems'][SystemName]>);
  for (const job of jobs) {
    let mounted;
    try {
      mounted = await mountSystem(system, remote, options.workDir, projectDir);
    } catch (err) {
      entry.error = (err as Error).message;
      say(`  ${system}: ${entry.error}`);
      return;
    }
    try {
      const root = mounted.root;
      job.bySystem[system] = await coldAndWarm(() => JOBS[job.name].measureTree(root, context));
    } finally {
      const rss = mounted.peakRss();
      if (rss !== undefined) entry.peakRssBytes = Math.max(entry.peakRssBytes ?? 0, rss);
      await mounted.unmount();
    }
    say(describe(system, job, job.bySystem[system]!));
  }
}

async function unmountEverything(): Promise<void> {
  for (const mounted of [...liveMounts]) await mounted.unmount().catch((err: Error) => say(`unmount failed: ${err.message}`));
}

async function main(): Promise<number> {
  let options;
  try {
    options = parseBenchArgs(process.argv.slice(2), projectDir);
  } catch (err) {
    if (!(err instanceof BenchUsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (options === 'help') {
    say(USAGE);
    return 0;
  }
  const started = performance.now();
  installTools(options);
  const shape = SHAPES[options.scale];
  const files = dataFiles(shape);
  const localRoot = join(options.workDir, 'data', options.scale);
  say(`data sets (${options.scale}): ${files.length.toLocaleString('en-US')} files, ${formatBytes(totalBytes(files))} in ${localRoot}`);
  const generated = generateLocal(localRoot, files);
  if (generated) say(`  generated ${generated} files`);

  const { remote, server } = await prepareRemote(options);
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    say(`\n${signal}: unmounting and stopping`);
    void unmountEverything()
      .then(() => server?.stop())
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const client = clientFor(remote);
    await ensureBucket(client, remote.bucket);
    const uploaded = await uploadMissing(client, remote.bucket, remote.prefix, localRoot, files);
    say(`  ${uploaded ? `uploaded ${uploaded} objects` : 'already uploaded'} to ${remote.endpoint}/${remote.bucket}/${remote.prefix}`);

    const context: JobContext = { shape, files, jobsDir: join(projectDir, 'bench', 'jobs') };
    const jobs: JobResult[] = options.jobs.map((name) => {
      const { title, unit, higherIsBetter } = JOBS[name];
      return { name, title, unit, higherIsBetter, bySystem: {} };
    });
    const now = new Date();
    const results: BenchResults = {
      date: now.toISOString().slice(0, 10),
      host: hostname(),
      machine: machine(options),
      scale: options.scale,
      shape,
      command: ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
      pageCacheDropped: dropPageCache(),
      seconds: 0,
      systems: {},
      jobs,
    };
    for (const system of options.systems) {
      say(`${LABELS[system]}:`);
      if ((LIMITS as readonly string[]).includes(system)) {
        results.systems[system] = { label: LABELS[system] };
        for (const job of jobs) {
          job.bySystem[system] = await measureLimit(system as LimitName, job, context, localRoot, client, remote);
          say(describe(system, job, job.bySystem[system]!));
        }
      } else {
        await measureMounted(system as MountSystemName, jobs, context, remote, options, results);
      }
    }
    results.seconds = (performance.now() - started) / 1000;
    const report = writeReport(results, options.outDir);
    say(`\n${renderSummary(results)}\n\nresults: ${report}`);
    const failed = jobs.some((job) => Object.values(job.bySystem).some((m) => m?.error)) || Object.values(results.systems).some((s) => s?.error);
    return failed ? 1 : 0;
  } finally {
    await unmountEverything();
    await server?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: ${err.message}\n`);
    void unmountEverything().finally(() => process.exit(1));
  },
);
