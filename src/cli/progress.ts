/**
 * A progress line on stderr: a bar, bytes, MiB/s and ETA, cut to the terminal's width; plain
 * lines when not a terminal. The last line says whether the work failed.
 */
import { formatBytes, formatDuration } from '../units';

const BAR_WIDTH = 24;
const MIN_BAR_WIDTH = 8;
const PLAIN_INTERVAL_MS = 2000;

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

export class ProgressBar {
  private readonly started = Date.now();
  private lastPlain = 0;
  private drawn = false;
  /** Bytes already done before this command: they do not count toward its rate. */
  private baseline: number | undefined;

  constructor(
    private readonly label: string,
    private readonly stream: ProgressStream = process.stderr,
  ) {}

  update(done: number, total: number): void {
    const line = this.render(done, total);
    if (this.stream.isTTY) {
      this.stream.write(`\r${line}\x1b[K`);
      this.drawn = true;
    } else if (Date.now() - this.lastPlain >= PLAIN_INTERVAL_MS) {
      this.lastPlain = Date.now();
      this.stream.write(line + '\n');
    }
  }

  /** The last line; `failures` (files that could not be done) show instead of a full bar. */
  finish(done: number, total: number, failures = 0): void {
    const line = this.render(done, total, failures);
    this.stream.write(this.stream.isTTY ? `\r${line}\x1b[K\n` : line + '\n');
    this.drawn = false;
  }

  /** Clears the bar so a message can be printed on its own line. */
  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }

  private render(done: number, total: number, failures = 0): string {
    const fraction = total > 0 ? Math.min(1, done / total) : failures ? 0 : 1;
    this.baseline ??= done;
    const seconds = (Date.now() - this.started) / 1000;
    const rate = seconds > 0 ? (done - this.baseline) / seconds : 0;
    const eta = rate > 0 && total > done ? formatDuration(((total - done) / rate) * 1000) : '0s';
    const percent = `${(fraction * 100).toFixed(0).padStart(3)}%`;
    const bytes = `${formatBytes(done)} / ${formatBytes(total)}`;
    const outcome = failures ? `FAILED: ${failures} file${failures === 1 ? '' : 's'}` : '';
    const speed = `${(rate / 1024 / 1024).toFixed(1)} MiB/s`;
    const bar = (width: number) => `[${'#'.repeat(Math.round(fraction * width))}${'.'.repeat(width - Math.round(fraction * width))}]`;
    // The fullest line that fits: a shorter bar first, then without ETA, rate, bar and bytes.
    const extras = outcome ? [outcome] : [speed, `ETA ${eta}`];
    const candidates: string[][] = [];
    for (let width = BAR_WIDTH; width >= MIN_BAR_WIDTH; width -= 4) candidates.push([this.label, bar(width), percent, bytes, ...extras]);
    for (let keep = extras.length - 1; keep >= 0; keep--) candidates.push([this.label, bar(MIN_BAR_WIDTH), percent, bytes, ...extras.slice(0, keep)]);
    candidates.push([this.label, percent, bytes, ...extras.slice(0, outcome ? 1 : 0)]);
    candidates.push([this.label, percent, ...(outcome ? [outcome] : [])]);
    const limit = this.stream.isTTY && this.stream.columns ? this.stream.columns - 1 : Infinity;
    const lines = candidates.map((parts) => parts.join(' '));
    return lines.find((line) => line.length <= limit) ?? lines[lines.length - 1].slice(0, limit);
  }
}
