/**
 * Accounting of cache space: staged bytes (on disk) and reserved bytes (promised to fetches in
 * flight). A fetch reserves before it writes, so concurrent faults cannot overcommit the cache;
 * each reserved byte later becomes staged (commit) or is given back (release).
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
  tryReserve(bytes: number): boolean {
    if (this.used + bytes > this.capacity) return false;
    this.reservedBytes += bytes;
    return true;
  }

  /** Turns reserved bytes into staged bytes once they are written. */
  commit(bytes: number): void {
    this.take(bytes);
    this.stagedBytes += bytes;
  }

  /** Gives back reserved bytes that were not written. */
  release(bytes: number): void {
    this.take(bytes);
  }

  /** Counts bytes found on disk at start, or frees them when an entry goes. */
  adjustStaged(delta: number): void {
    this.stagedBytes = Math.max(0, this.stagedBytes + delta);
  }

  private take(bytes: number): void {
    if (bytes > this.reservedBytes) throw new Error(`releasing ${bytes} reserved bytes of ${this.reservedBytes}`);
    this.reservedBytes -= bytes;
  }
}
