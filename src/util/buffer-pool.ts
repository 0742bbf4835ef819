/**
 * Reusable buffers for hot paths that fill a megabyte, hand it on and drop it: allocating one
 * each time keeps the garbage collector busy.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(private readonly maxKept: number) {}

  /** A buffer of at least `size` bytes. */
  take(size: number): Buffer {
    const index = this.free.findIndex((b) => b.length >= size);
    if (index < 0) return Buffer.allocUnsafe(size);
    return this.free.splice(index, 1)[0];
  }

  give(buffer: Buffer): void {
    if (this.free.length < this.maxKept) this.free.push(buffer);
  }
}
