/**
 * Reusable buffers for hot paths that fill a megabyte, hand it on and drop it: allocating one
 * each time keeps the garbage collector busy, and buffers waiting for a collection count in the
 * process's memory as much as live ones. The pool keeps at most `maxKeptBytes` of free buffers,
 * and lets all of them go once it has been idle for `idleMs`, so a burst does not hold memory
 * for good.
 */
const IDLE_MS = 10_000;

export class BufferPool {
  private free: Buffer[] = [];
  private keptBytes = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private usedSinceCheck = false;

  constructor(
    private readonly maxKeptBytes: number,
    private readonly idleMs = IDLE_MS,
  ) {}

  /** A buffer of at least `size` bytes. */
  take(size: number): Buffer {
    this.usedSinceCheck = true;
    const index = this.free.findIndex((b) => b.length >= size);
    if (index < 0) return Buffer.allocUnsafe(size);
    const buffer = this.free.splice(index, 1)[0];
    this.keptBytes -= buffer.length;
    return buffer;
  }

  give(buffer: Buffer): void {
    this.usedSinceCheck = true;
    if (this.keptBytes + buffer.length > this.maxKeptBytes) return;
    this.free.push(buffer);
    this.keptBytes += buffer.length;
    this.idleTimer ??= setInterval(() => this.dropIfIdle(), this.idleMs).unref();
  }

  private dropIfIdle(): void {
    if (this.usedSinceCheck) {
      this.usedSinceCheck = false;
      return;
    }
    this.free = [];
    this.keptBytes = 0;
    clearInterval(this.idleTimer);
    this.idleTimer = undefined;
  }
}
