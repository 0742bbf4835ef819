/**
 * `npm run bench`: measures stagefs, s3fs and rclone mount on the same data in one run, with
 * the limits (raw S3, local disk), and writes bench/results/<date>-<host>.{md,json,svg}.
 */
import { spawnSync } from 'node:child_process';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { formatBytes } from '../src/units';
import { dataFiles, generateLocal, SHAPES, totalBytes, uploadMissing } from './datasets';
import { clearWrites, JOBS, type JobContext } from './jobs';
import { BenchUsageError, parseBenchArgs, USAGE, type BenchOptions } from './options';
import { dropPageCache } from './processes';
import { prepareRemote, type PreparedRemote } from './remote';
import { renderSummary, writeReport, formatValue } from './report';
import { PHASES, type BenchResults, type JobResult, type Measurement, type Phase } from './results';
import { LABELS, LIMITS, liveMounts, mountSystem, PACKAGES, type LimitName, type MountSystemName, type SystemName } from './systems';

const projectDir = join(__dirname, '..', '..');

function say(message: string): void {
  process.stdout.write(`${message}\n`);
}

function installTools(options: BenchOptions): void {
  const packages = ['fio', 'qemu-utils', 'curl', ...options.systems.flatMap((system) => PACKAGES[system] ?? [])];
  const result = spawnSync('sh', [join(projectDir, 'scripts', 'install-system-deps.sh'), ...packages], { stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`could not install ${packages.join(', ')} (see above)`);
}

function version(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim().split('\n')[0] : 'not installed';
}

/** The 1-minute load average: other work on the machine shows in every figure. */
function loadNow(): string {
  return loadavg()[0].toFixed(1);
}

function machine(options: BenchOptions, store: string): Record<string, string> {
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
    'qemu-img': version('qemu-img', ['--version']),
    curl: version('curl', ['--version']),
    store,
    'load average': loadNow(),
  };
}

/**
 * Runs `measure` in each phase, the page cache dropped before each; `remount` before the
 * remounted one (the local disk has nothing to remount: its remounted run is another warm one).
 */
async function inPhases(phases: readonly Phase[], measure: () => Promise<number>, remount?: () => Promise<void>): Promise<Measurement> {
  const result: Measurement = {};
  try {
    for (const phase of phases) {
      if (phase === 'remounted') await remount?.();
      dropPageCache();
      result[phase] = await measure();
    }
  } catch (err) {
    result.error = (err as Error).message.split('\n')[0];
  }
  return result;
}

function describe(system: SystemName, job: JobResult, measurement: Measurement): string {
  const parts = PHASES.filter((p) => measurement[p] !== undefined).map((p) => `${p} ${formatValue(measurement[p])} ${job.unit}`);
  return `  ${system.padEnd(20)} ${job.name.padEnd(15)} ${parts.join(', ')}${measurement.error ? `  FAILED: ${measurement.error}` : ''}`;
}

/** A limit's measurement of a job, or undefined where that limit means nothing for it. */
async function measureLimit(limit: LimitName, job: JobResult, context: JobContext): Promise<Measurement | undefined> {
  const definition = JOBS[job.name];
  if (limit === 'local-disk') return definition.local ? inPhases(definition.phases, () => definition.measureTree(context.localRoot, context)) : undefined;
  const measure = limit === 'raw-s3' ? definition.measureSdk : definition.measureCurl;
  if (!measure) return undefined;
  // The store has no warm: every read of it is a request.
  try {
    return { cold: await measure(context) };
  } catch (err) {
    return { error: (err as Error).message.split('\n')[0] };
  } finally {
    await clearWrites(context);
  }
}

async function measureMounted(system: MountSystemName, jobs: JobResult[], context: JobContext, options: BenchOptions, results: BenchResults): Promise<void> {
  const entry = (results.systems[system] = { label: LABELS[system] } as NonNullable<BenchResults['systems'][SystemName]>);
  for (const job of jobs) {
    let mounted;
    try {
      mounted = await mountSystem(system, context.remote, options.workDir, projectDir);
    } catch (err) {
      entry.error = (err as Error).message;
      say(`  ${system}: ${entry.error}`);
      return;
    }
    try {
      const { root, remount } = mounted;
      const definition = JOBS[job.name];
      job.bySystem[system] = await inPhases(definition.phases, () => definition.measureTree(root, context), remount);
    } finally {
      const rss = mounted.peakRss();
      if (rss !== undefined) entry.peakRssBytes = Math.max(entry.peakRssBytes ?? 0, rss);
      await mounted.unmount();
      await clearWrites(context);
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
  const localRoot = join(options.workDir, 'data', options.scale);
  const generated = generateLocal(localRoot, dataFiles(shape), shape);
  const files = generated.files;
  say(`data sets (${options.scale}): ${files.length.toLocaleString('en-US')} files, ${formatBytes(totalBytes(files))} in ${localRoot}`);
  if (generated.made) say(`  generated ${generated.made} files`);

  let prepared: PreparedRemote | undefined;
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    say(`\n${signal}: unmounting and stopping`);
    void unmountEverything()
      .then(() => prepared?.stop())
      .finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    prepared = await prepareRemote(options);
    const { remote, store } = prepared;
    say(`object store: ${prepared.description}`);
    const uploadStart = performance.now();
    const uploaded = await uploadMissing(store, remote.prefix, localRoot, files);
    say(`  ${uploaded ? `uploaded ${uploaded} objects in ${((performance.now() - uploadStart) / 1000).toFixed(1)} s` : 'already uploaded'} to ${remote.endpoint}/${remote.bucket}/${remote.prefix}`);
    const etags = new Map<string, string>();
    for (let token: string | undefined, first = true; first || token; first = false) {
      const page = await store.list(remote.prefix, { continuationToken: token });
      for (const object of page.objects) etags.set(object.key, object.etag);
      token = page.continuationToken;
    }
    const context: JobContext = {
      shape,
      files,
      jobsDir: join(projectDir, 'bench', 'jobs'),
      localRoot,
      scratchDir: join(options.workDir, 'scratch'),
      remote,
      store,
      etags,
    };
    await clearWrites(context);
    const jobs: JobResult[] = options.jobs.map((name) => {
      const { title, unit, higherIsBetter, phases } = JOBS[name];
      return { name, title, unit, higherIsBetter, phases, bySystem: {} };
    });
    const now = new Date();
    const results: BenchResults = {
      date: now.toISOString().slice(0, 10),
      host: hostname(),
      machine: machine(options, prepared.description),
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
          const measurement = await measureLimit(system as LimitName, job, context);
          if (!measurement) continue;
          job.bySystem[system] = measurement;
          say(describe(system, job, measurement));
        }
      } else {
        await measureMounted(system as MountSystemName, jobs, context, options, results);
      }
    }
    results.seconds = (performance.now() - started) / 1000;
    results.machine['load average'] = `${results.machine['load average']} at the start, ${loadNow()} at the end`;
    const report = writeReport(results, options.outDir);
    say(`\n${renderSummary(results)}\n\nresults: ${report}`);
    const failed = jobs.some((job) => Object.values(job.bySystem).some((m) => m?.error)) || Object.values(results.systems).some((s) => s?.error);
    return failed ? 1 : 0;
  } finally {
    await unmountEverything();
    await prepared?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: ${err.message}\n`);
    void unmountEverything().finally(() => process.exit(1));
  },
);
