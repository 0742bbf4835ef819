/**
 * Sequential readahead of one open file handle: the window grows while reads follow each other
 * and collapses on a random read, so qcow2-style random reads fetch only the blocks they touch.
 */

/** Kernel readahead and several request threads deliver sequential reads slightly out of order. */
const SEQUENTIAL_SLACK = 1024 * 1024;

export interface ReadaheadLimits {
  initialBytes: number;
  maxBytes: number;
}

export class Readahead {
  private lastEnd = 0; // a first read at offset 0 counts as the start of a sequential stream
  private windowBytes = 0;
  /** Readahead has been requested up to this offset; later reads only extend it. */
  scheduledUntil = 0;

  constructor(private readonly limits: ReadaheadLimits) {}

  /** Records a read of [position, end) and returns how far past `end` should be staged. */
  onRead(position: number, end: number): number {
    const sequential = position >= this.lastEnd - SEQUENTIAL_SLACK && position <= this.lastEnd + SEQUENTIAL_SLACK;
    if (sequential) {
      this.windowBytes = this.windowBytes
        ? Math.min(this.windowBytes * 2, this.limits.maxBytes)
        : this.limits.initialBytes;
    } else {
      this.windowBytes = 0;
      this.scheduledUntil = 0;
    }
    this.lastEnd = Math.max(end, sequential ? this.lastEnd : 0);
    return this.windowBytes;
  }
}
