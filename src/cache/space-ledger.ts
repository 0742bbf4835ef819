/**
 * Accounting of cache space: staged bytes (on disk) and reserved bytes (promised to writers in
 * flight). A writer reserves before it writes, so concurrent faults cannot overcommit the cache.
 * Reserved bytes are held by a Reservation, which alone turns them into staged bytes or gives
 * them back: it knows how many it still holds, so no byte is committed or released twice.
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
  tryReserve(bytes: number): Reservation | undefined {
    if (this.used + bytes > this.capacity) return undefined;
    this.reservedBytes += bytes;
    return new Reservation(bytes, (committed, released) => {
      this.reservedBytes -= committed + released;
      this.stagedBytes += committed;
    });
  }

  /** Counts bytes found on disk at start, or frees them when an entry goes. */
  adjustStaged(delta: number): void {
    this.stagedBytes = Math.max(0, this.stagedBytes + delta);
  }
}

/** Bytes reserved for one writer, until they are written (commit) or given back (release). */
export class Reservation {
  constructor(
    private remaining: number,
    private readonly settle: (committed: number, released: number) => void,
  ) {}

  /** Bytes still reserved. */
  get bytes(): number {
    return this.remaining;
  }

  /** `bytes` of the reservation were written: they count as staged from now on. */
  commit(bytes: number): void {
    if (bytes > this.remaining) throw new RangeError(`committing ${bytes} bytes of a reservation holding ${this.remaining}`);
    this.remaining -= bytes;
    this.settle(bytes, 0);
  }

  /** Gives back what was not committed; the reservation holds nothing after. */
  release(): void {
    const bytes = this.remaining;
    this.remaining = 0;
    this.settle(0, bytes);
  }
}
