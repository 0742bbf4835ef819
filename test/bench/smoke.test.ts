/**
 * The benchmark runner works end to end on a tiny data set: every system mounts, every job
 * measures, the report is written and nothing stays mounted. Speed is not checked here.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { JOBS } from '../../bench/jobs';
import type { BenchResults } from '../../bench/results';
import { mounts } from '../../src/daemon/mount-table';
import { tempDir } from '../helpers/mount';

const RUNNER = join(__dirname, '..', '..', 'bench', 'run.js');

function runBench(args: string[], t: Test): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RUNNER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (data: Buffer) => (output += data.toString()));
    child.stderr.on('data', (data: Buffer) => (output += data.toString()));
    // An interrupted runner unmounts what it mounted.
    t.teardown(() => {
      if (child.exitCode === null) child.kill('SIGINT');
    });
    child.on('close', (code) => resolve({ code, output }));
  });
}

function mountsUnder(dir: string): string[] {
  return mounts()
    .map((entry) => entry.mountpoint)
    .filter((path) => path.startsWith(dir));
}

t.test('a smoke run measures every job on every system and writes the report', async (t) => {
  const work = tempDir(t, 'bench-work');
  const out = tempDir(t, 'bench-out');
  t.teardown(() => {
    for (const path of mountsUnder(work)) spawnSync('umount', ['-l', path]);
  });
  // On the embedded server, which starts in a moment; the mount suites run on RGW elsewhere.
  const { code, output } = await runBench(['--smoke', '--s3', 's3rver', '--work', work, '--out', out], t);
  t.equal(code, 0, 'the runner succeeds');
  t.same(mountsUnder(work), [], 'and leaves nothing mounted');
  t.match(output, /^job\s+phase\s+unit\s+stagefs\s+stagefs-fuse-native\s+s3fs\s+rclone\s+local-disk\s+raw-s3\s+raw-s3-curl\s+vs peer\s+vs limit$/m, 'it prints the table');

  const files = readdirSync(out);
  const json = files.find((f) => f.endsWith('-smoke.json'));
  t.ok(json, 'it writes the JSON');
  t.ok(files.some((f) => f.endsWith('-smoke.md')), 'the markdown');
  const svg = files.find((f) => f.endsWith('-smoke.svg'));
  t.match(svg && readFileSync(join(out, svg), 'utf8'), /^<svg [^]*<\/svg>\n$/, 'and the chart');
  const results = JSON.parse(readFileSync(join(out, json!), 'utf8')) as BenchResults;
  t.same(results.jobs.map((job) => job.name), Object.keys(JOBS), 'every job');
  for (const job of results.jobs) {
    const definition = JOBS[job.name];
    const expected = ['stagefs', 'stagefs-fuse-native', 's3fs', 'rclone', ...(definition.local ? ['local-disk'] : []), 'raw-s3'];
    if (definition.measureCurl) expected.push('raw-s3-curl');
    t.same(Object.keys(job.bySystem).sort(), expected.sort(), `${job.name}: on every system it means something for`);
    for (const [system, measurement] of Object.entries(job.bySystem)) {
      t.notOk(measurement?.error, `${job.name} on ${system} ran`);
      t.ok((measurement?.cold ?? 0) > 0, `${job.name} on ${system}: cold measured`);
      t.same(job.phases, definition.phases, `${job.name}: its phases are in the results`);
      for (const phase of ['warm', 'remounted'] as const) {
        // The store has no warm: every read of it is a request.
        if (definition.phases.includes(phase) && !system.startsWith('raw-s3')) t.ok((measurement?.[phase] ?? 0) > 0, `${job.name} on ${system}: ${phase} measured`);
        else t.equal(measurement?.[phase], undefined, `${job.name} on ${system}: no ${phase} run`);
      }
    }
  }
  for (const system of ['stagefs', 'stagefs-fuse-native', 's3fs', 'rclone'] as const) {
    t.ok((results.systems[system]?.peakRssBytes ?? 0) > 1024 * 1024, `peak RSS of ${system} recorded`);
  }
});

t.test('bad options get one clear line and the usage', async (t) => {
  const { code, output } = await runBench(['--only', 'warp-speed'], t);
  t.equal(code, 2);
  t.match(output, /^bench: unknown job 'warp-speed' \(known: seq-read, /m);
  t.match(output, /usage: npm run bench/);
});
