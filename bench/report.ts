/** The report of a run: a markdown page with a table per job, the JSON, and an SVG chart. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatBytes } from '../src/units';
import { renderChart } from './chart';
import { SHAPES } from './datasets';
import { bestPeer, limit, PHASES, stagefsVsBestPeer, stagefsVsLimit, type BenchResults, type JobResult, type Phase } from './results';
import { LABELS, type SystemName } from './systems';

export function formatValue(value: number | undefined): string {
  if (value === undefined) return '–';
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  if (value >= 10) return value.toFixed(1);
  return value.toPrecision(2);
}

function formatRatio(ratio: number | undefined): string {
  return ratio === undefined ? '–' : `${ratio >= 10 ? ratio.toFixed(0) : ratio.toFixed(2)}×`;
}

function cell(job: JobResult, system: SystemName, phase: Phase): string {
  const measurement = job.bySystem[system];
  if (!measurement) return '';
  // A failure shows in the first phase that has no figure; the phases after it never ran.
  const previous = PHASES[PHASES.indexOf(phase) - 1];
  if (measurement[phase] === undefined && measurement.error) return !previous || measurement[previous] !== undefined ? 'failed' : '–';
  return formatValue(measurement[phase]);
}

function withSystem(ratio: number | undefined, against: { system: SystemName } | undefined): string {
  return `**${formatRatio(ratio)}**${against ? ` (${against.system})` : ''}`;
}

function jobSection(job: JobResult): string[] {
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const lines = [`### ${job.name}: ${job.title}`, '', row(['system', ...job.phases.map((p) => `${p} (${job.unit})`)]), row(['---', ...job.phases.map(() => '---:')])];
  const systems = Object.keys(job.bySystem) as SystemName[];
  for (const system of systems) lines.push(row([LABELS[system], ...job.phases.map((p) => cell(job, system, p))]));
  lines.push(
    row(['**stagefs ÷ best peer**', ...job.phases.map((p) => withSystem(stagefsVsBestPeer(job, p), bestPeer(job, p)))]),
    row(['**stagefs ÷ limit**', ...job.phases.map((p) => withSystem(stagefsVsLimit(job, p), limit(job, p)))]),
  );
  const failures = systems.filter((s) => job.bySystem[s]?.error).map((s) => `${s}: ${job.bySystem[s]!.error}`);
  if (failures.length) lines.push('', ...failures.map((f) => `- failed: ${f}`));
  lines.push('');
  return lines;
}

export function renderMarkdown(results: BenchResults, chartFile: string): string {
  const shape = SHAPES[results.scale];
  const lines = [
    `# stagefs benchmark, ${results.date}, ${results.host}`,
    '',
    `Command: \`${results.command}\` (${results.scale} scale, ${Math.round(results.seconds / 60)} min). ` +
      `Data: one ${formatBytes(shape.bigBytes)} object, ${shape.imageCount} × ${formatBytes(shape.imageBytes)} objects, ` +
      `${shape.smallCount.toLocaleString('en-US')} objects of 4-64 KiB in one directory, a qcow2 VM template of ${formatBytes(shape.vmBytes)} (virtual size), ` +
      `on the ${results.machine.store}.`,
    '',
    `Machine: ${Object.entries(results.machine).filter(([k]) => k !== 'store').map(([k, v]) => `${k} ${v}`).join('; ')}.`,
    '',
    'Every job runs on a fresh mount with an empty cache: **cold** is its first run, **warm** the same job again on the same mount, ' +
      '**remounted** (read jobs) the same job again after the system was unmounted and mounted again on the same cache dir, as after a restart of the daemon or a reboot. ' +
      'Each system keeps its cache on disk across a remount: stagefs its index (the blocks staged, a CRC32C each) and staging files, and it checks each staged block ' +
      'against its CRC once per mount before serving it, so remounted is where those checks cost (warm runs serve blocks the mount already checked); ' +
      's3fs (`use_cache`) the files\' bytes and a stat file per file of which pages it holds; rclone (VFS cache) its data files and their metadata (ranges held, the object\'s fingerprint). ' +
      'None keeps its listings or attributes: those are read from the store again. ' +
      (results.pageCacheDropped
        ? 'The kernel page cache is dropped before each run, so warm means the system\'s own cache, not RAM.'
        : '**The page cache could not be dropped (not root)**: warm figures include it.') +
      ' Ratios say how many times better stagefs (native engine) does (> 1: stagefs is better; for times, lower is better); ' +
      '"limit" is the object store without FUSE (cold), the better of the AWS SDK client stagefs uses and curl, each the best of 1, 4 and 8 ranged GETs in flight, ' +
      'or the same bytes read from local disk (warm and remounted). Write jobs count until the object is in the store (polled with HEAD), not until close returns: ' +
      'rclone uploads after close (run with `--vfs-write-back 0s`), stagefs and s3fs before close returns. Write jobs have no warm run; ' +
      'the copy job\'s warm run copies a source the mount has staged (it has no remounted run: its time is the upload\'s).',
    '',
    `![main jobs](${chartFile})`,
    '',
    '## Peak memory of each mount process (VmHWM, over all its jobs)',
    '',
    '| system | peak RSS |',
    '| --- | ---: |',
  ];
  for (const [system, result] of Object.entries(results.systems) as Array<[SystemName, NonNullable<BenchResults['systems'][SystemName]>]>) {
    if (result.peakRssBytes !== undefined) lines.push(`| ${LABELS[system]} | ${formatBytes(result.peakRssBytes)} |`);
  }
  const broken = Object.entries(results.systems).filter(([, r]) => r?.error);
  if (broken.length) lines.push('', ...broken.map(([system, r]) => `- ${system} could not run: ${r!.error}`));
  lines.push('', '## Jobs', '');
  for (const job of results.jobs) lines.push(...jobSection(job));
  return lines.join('\n');
}

/** A compact table for the terminal. */
export function renderSummary(results: BenchResults): string {
  const systems = [...new Set(results.jobs.flatMap((job) => Object.keys(job.bySystem)))] as SystemName[];
  const header = ['job', 'phase', 'unit', ...systems, 'vs peer', 'vs limit'];
  const rows = results.jobs.flatMap((job) =>
    job.phases.map((phase) => [
      job.name,
      phase,
      job.unit,
      ...systems.map((system) => cell(job, system, phase)),
      formatRatio(stagefsVsBestPeer(job, phase)),
      formatRatio(stagefsVsLimit(job, phase)),
    ]),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const format = (row: string[]) => row.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [format(header), ...rows.map(format)].join('\n');
}

/** Writes <out>/<date>-<host>.{md,json,svg}; returns the markdown's path. */
export function writeReport(results: BenchResults, outDir: string): string {
  mkdirSync(outDir, { recursive: true });
  const base = `${results.date}-${results.host}${results.scale === 'full' ? '' : `-${results.scale}`}`;
  writeFileSync(join(outDir, `${base}.json`), JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(outDir, `${base}.svg`), renderChart(results));
  const markdown = join(outDir, `${base}.md`);
  writeFileSync(markdown, renderMarkdown(results, `${base}.svg`) + '\n');
  return markdown;
}
