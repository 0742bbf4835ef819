/** A progress line on stderr: a bar, bytes, MiB/s and ETA; plain lines when not a terminal. */
import { formatBytes, formatDuration } from '../units';

const WIDTH = 24;
const PLAIN_INTERVAL_MS = 2000;

export class ProgressBar {
  private readonly started = Date.now();
  private lastPlain = 0;
  private drawn = false;
  /** Bytes already done before this command: they do not count toward its rate. */
  private baseline: number | undefined;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
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

  finish(done: number, total: number): void {
    const line = this.render(done, total);
    this.stream.write(this.stream.isTTY ? `\r${line}\x1b[K\n` : line + '\n');
    this.drawn = false;
  }

  /** Clears the bar so a message can be printed on its own line. */
  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }

  private render(done: number, total: number): string {
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(fraction * WIDTH);
    this.baseline ??= done;
    const seconds = (Date.now() - this.started) / 1000;
    const rate = seconds > 0 ? (done - this.baseline) / seconds : 0;
    const eta = rate > 0 && total > done ? formatDuration(((total - done) / rate) * 1000) : '0s';
    return (
      `${this.label} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${formatBytes(done)} / ${formatBytes(total)}  ${(rate / 1024 / 1024).toFixed(1)} MiB/s  ETA ${eta}`
    );
  }
}
