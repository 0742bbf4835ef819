/**
 * Sequential readahead of one open file handle: the window grows fast while reads follow each
 * other and collapses on a random read, so qcow2-style random reads fetch only the blocks they
 * touch. A handle's first read starts none when it is small: a reader that wants one header
 * gets its bytes without readahead GETs competing for the store, and a sequential reader's next
 * read starts the window.
 */

/** Kernel readahead and several request threads deliver sequential reads slightly out of order. */
const SEQUENTIAL_SLACK = 1024 * 1024;
/** The window's growth per sequential read. */
const GROWTH = 4;
/**
 * A first read shorter than this starts no readahead: a probe of a header (the kernel turns a
 * 4 KiB read into a 16 KiB one), not the first read of a stream (128 KiB and more).
 */
const SMALL_FIRST_READ = 128 * 1024;

export interface ReadaheadLimits {
  initialBytes: number;
  maxBytes: number;
}

export class Readahead {
  private lastEnd = 0; // a first read at offset 0 counts as the start of a sequential stream
  private windowBytes = 0;
  private reads = 0;
  /** Readahead has been requested up to this offset; later reads only extend it. */
  scheduledUntil = 0;

  constructor(private readonly limits: ReadaheadLimits) {}

  /** Records a read of [position, end) and returns how far past `end` should be staged. */
  onRead(position: number, end: number): number {
    const sequential = position >= this.lastEnd - SEQUENTIAL_SLACK && position <= this.lastEnd + SEQUENTIAL_SLACK;
    const smallFirst = this.reads++ === 0 && end - position < SMALL_FIRST_READ;
    if (sequential) {
      if (this.windowBytes) this.windowBytes = Math.min(this.windowBytes * GROWTH, this.limits.maxBytes);
      else if (!smallFirst) this.windowBytes = this.limits.initialBytes;
    } else {
      this.windowBytes = 0;
      this.scheduledUntil = 0;
    }
    this.lastEnd = Math.max(end, sequential ? this.lastEnd : 0);
    return this.windowBytes;
  }
}
