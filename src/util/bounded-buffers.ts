/**
 * Buffers handed out within a byte budget: a taker past it waits until others give theirs back.
 * A taker waits before it holds anything, so as long as a holder needs no second buffer to
 * finish, waiting cannot deadlock; a single request larger than the budget is served alone.
 * Requests above `smallBytes` and up to `pooledBytes` get a buffer of `pooledBytes` from a pool,
 * reused rather than left for the garbage collector (which lets garbage buffers pile up far past
 * any budget); smaller or larger ones are allocated as they come.
 */
import { BufferPool } from './buffer-pool';
import { ByteBudget } from './byte-budget';

export class BoundedBuffers {
  private readonly budget: ByteBudget;
  private readonly pool: BufferPool;

  constructor(
    limitBytes: number,
    private readonly pooledBytes: number,
    private readonly smallBytes: number,
  ) {
    this.budget = new ByteBudget(limitBytes);
    this.pool = new BufferPool(limitBytes);
  }

  /** A buffer of at least `size` bytes, once the budget has room for it. */
  async take(size: number): Promise<Buffer> {
    const pooled = size > this.smallBytes && size <= this.pooledBytes;
    await this.budget.acquire(pooled ? this.pooledBytes : size);
    return pooled ? this.pool.take(this.pooledBytes) : Buffer.allocUnsafe(size);
  }

  /** Gives back a buffer from `take`, whole, once nothing uses its bytes any more. */
  give(buffer: Buffer): void {
    this.budget.release(buffer.length);
    if (buffer.length === this.pooledBytes) this.pool.give(buffer);
  }
}
