/**
 * Reads served straight from the object store when the cache has no room. A sequential reader
 * gets its bytes in chunks held in memory (within a global budget), so a file streamed through
 * a full cache costs one GET per chunk, not one per kernel read.
 */
import { StoreError } from '../errors';
import type { ObjectStore } from '../store/object-store';
import type { ObjectVersion } from './staged-object';

const MAX_CHUNK_BYTES = 8 * 1024 * 1024;

/** Memory all bypass chunks of a mount may hold at once. */
export class MemoryBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

interface Chunk {
  start: number;
  end: number;
  data: Promise<Buffer>;
  budgeted: number;
}

export class BypassReader {
  private chunk: Chunk | undefined;

  constructor(
    private readonly store: ObjectStore,
    private readonly object: Pick<ObjectVersion, 'key' | 'etag' | 'size'>,
    private readonly budget: MemoryBudget,
    private readonly fetched: (bytes: number) => void,
  ) {}

  /** Reads [position, end) into `buffer`; `sequentialWindow` > 0 means more reads follow. */
  async read(buffer: Buffer, position: number, end: number, sequentialWindow: number): Promise<number> {
    let chunk = this.chunk;
    if (!chunk || position < chunk.start || end > chunk.end) {
      chunk = this.fetchChunk(position, end, sequentialWindow);
    }
    const data = await chunk.data;
    return data.copy(buffer, 0, position - chunk.start, end - chunk.start);
  }

  /** Gives back the memory held; the reader may still be used, without its chunk. */
  release(): void {
    if (this.chunk) this.budget.give(this.chunk.budgeted);
    this.chunk = undefined;
  }

  private fetchChunk(position: number, end: number, sequentialWindow: number): Chunk {
    const wanted = Math.min(this.object.size, position + Math.min(MAX_CHUNK_BYTES, Math.max(end - position, sequentialWindow)));
    const keep = sequentialWindow > 0 && wanted > end && this.budget.take(wanted - position);
    const chunkEnd = keep ? wanted : end;
    const chunk: Chunk = { start: position, end: chunkEnd, data: this.download(position, chunkEnd), budgeted: keep ? chunkEnd - position : 0 };
    if (keep) {
      this.release();
      this.chunk = chunk;
      chunk.data.catch(() => {
        if (this.chunk === chunk) this.release();
      });
    }
    return chunk;
  }

  /** The bytes [start, end), all of them: a body of any other length fails the read, never shortens it. */
  private async download(start: number, end: number): Promise<Buffer> {
    const data = Buffer.allocUnsafe(end - start);
    const what = `${this.object.key} [${start}, ${end})`;
    let filled = 0;
    for await (const piece of await this.store.getRange(this.object.key, start, end, this.object.etag)) {
      if (filled + piece.length > data.length) throw new StoreError('BadResponse', `${what}: the store sent more bytes than asked`);
      data.set(piece, filled);
      filled += piece.length;
    }
    if (filled < data.length) throw new StoreError('BadResponse', `${what}: the store sent ${filled} bytes`);
    this.fetched(filled);
    return data;
  }
}
