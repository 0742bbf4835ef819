/**
 * Accounting of cache space: staged bytes (on disk) and reserved bytes (promised to fetches and
 * writes in flight). Space is reserved before it is filled, so concurrent faults cannot
 * overcommit the cache. A reservation is an object that gives each of its bytes back exactly
 * once, as staged (commit) or unused (release), so no caller can count a byte twice.
 */
export class SpaceLedger {
  private stagedBytes = 0;
  private reservedBytes = 0;

  constructor(readonly capacity: number) {}

  get staged(): number {
    return this.stagedBytes;
  }

  get reserved(): number {
    return this.reservedBytes;
  }

  get used(): number {
    return this.stagedBytes + this.reservedBytes;
  }

  get free(): number {
    return Math.max(0, this.capacity - this.used);
  }

  /** Reserves `bytes` if they fit within capacity; never blocks. */
  reserve(bytes: number): Reservation | undefined {
    if (this.used + bytes > this.capacity) return undefined;
    this.reservedBytes += bytes;
    return new Reservation(bytes, (committed, released) => {
      this.reservedBytes -= committed + released;
      this.stagedBytes += committed;
    });
  }

  /** Counts bytes found on disk at start, or frees them when they leave the disk. */
  adjustStaged(delta: number): void {
    this.stagedBytes = Math.max(0, this.stagedBytes + delta);
  }
}

/** Bytes promised by the ledger, each given back once: committed as staged, or released. */
export class Reservation {
  private remainingBytes: number;

  constructor(
    bytes: number,
    private readonly settle: (committed: number, released: number) => void,
  ) {
    this.remainingBytes = bytes;
  }

  get remaining(): number {
    return this.remainingBytes;
  }

  /** Up to `bytes` of what is left became staged; returns how many did. */
  commit(bytes: number): number {
    const committed = Math.min(bytes, this.remainingBytes);
    this.remainingBytes -= committed;
    this.settle(committed, 0);
    return committed;
  }

  /** Gives back whatever is left; later calls give back nothing. */
  release(): void {
    const released = this.remainingBytes;
    this.remainingBytes = 0;
    if (released) this.settle(0, released);
  }
}
