/** An SVG chart of the throughput jobs: one group of bars per job and phase, a log scale. */
import { PHASES, type BenchResults } from './results';
import { formatValue } from './report';
import { LABELS, SYSTEM_NAMES, type SystemName } from './systems';

const COLORS: Record<SystemName, string> = {
  stagefs: '#1f77b4',
  'stagefs-fuse-native': '#9ecae9',
  s3fs: '#ff7f0e',
  rclone: '#2ca02c',
  'local-disk': '#7f7f7f',
  'raw-s3': '#c7c7c7',
  'raw-s3-curl': '#e0e0e0',
};

const BAR = 12;
const GROUP_GAP = 14;
const LEFT = 190;
const PLOT = 560;
const TOP = 40;

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function renderChart(results: BenchResults): string {
  const jobs = results.jobs.filter((job) => job.unit === 'MB/s');
  const systems = SYSTEM_NAMES.filter((system) => jobs.some((job) => job.bySystem[system]));
  const values = jobs.flatMap((job) => systems.flatMap((s) => PHASES.map((p) => job.bySystem[s]?.[p] ?? 0)));
  const decades = Math.max(1, Math.ceil(Math.log10(Math.max(10, ...values))));
  const x = (value: number) => LEFT + (Math.log10(Math.max(1, value)) / decades) * PLOT;
  const groupHeight = systems.length * BAR + GROUP_GAP;
  const phased = jobs.flatMap((job) => PHASES.filter((p) => systems.some((s) => job.bySystem[s]?.[p] !== undefined)).map((phase) => ({ job, phase })));
  const groups = phased.length;
  const legendTop = TOP + groups * groupHeight + 20;
  const height = legendTop + systems.length * 18 + 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${LEFT + PLOT + 90}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">Throughput, MB/s (log scale) — ${escape(results.host)}, ${results.date}, ${results.scale}</text>`,
  ];
  for (let decade = 0; decade <= decades; decade++) {
    const at = x(10 ** decade);
    out.push(`<line x1="${at}" y1="${TOP - 6}" x2="${at}" y2="${legendTop - 14}" stroke="#ddd"/>`);
    out.push(`<text x="${at}" y="${TOP - 9}" text-anchor="middle" fill="#666">${(10 ** decade).toLocaleString('en-US')}</text>`);
  }
  let top = TOP;
  for (const { job, phase } of phased) {
    out.push(`<text x="${LEFT - 8}" y="${top + (systems.length * BAR) / 2 + 4}" text-anchor="end">${escape(job.name)} (${phase})</text>`);
    systems.forEach((system, i) => {
      const value = job.bySystem[system]?.[phase];
      const y = top + i * BAR;
      if (value === undefined) return;
      out.push(`<rect x="${LEFT}" y="${y}" width="${Math.max(1, x(value) - LEFT)}" height="${BAR - 2}" fill="${COLORS[system]}"/>`);
      out.push(`<text x="${x(value) + 4}" y="${y + BAR - 3}" fill="#333">${formatValue(value)}</text>`);
    });
    top += groupHeight;
  }
  systems.forEach((system, i) => {
    const y = legendTop + i * 18;
    out.push(`<rect x="${LEFT}" y="${y}" width="12" height="12" fill="${COLORS[system]}"/>`);
    out.push(`<text x="${LEFT + 18}" y="${y + 10}">${escape(LABELS[system])}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
