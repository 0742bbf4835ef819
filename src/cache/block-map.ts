/** Which fixed-size blocks of an object are staged on disk: a bitmap with a running count. */
export class BlockMap {
  readonly blockCount: number;
  private readonly bits: Uint8Array;
  private stagedCount = 0;

  constructor(blockCount: number, bits?: Uint8Array) {
    this.blockCount = blockCount;
    this.bits = new Uint8Array(Math.ceil(blockCount / 8));
    if (bits) {
      this.bits.set(bits.subarray(0, this.bits.length));
      // Bits past the last block would count blocks that do not exist.
      const tail = blockCount % 8;
      if (tail && this.bits.length) this.bits[this.bits.length - 1] &= (1 << tail) - 1;
      for (const byte of this.bits) this.stagedCount += popcount(byte);
    }
  }

  static forSize(size: number, blockSize: number): BlockMap {
    return new BlockMap(Math.ceil(size / blockSize));
  }

  has(block: number): boolean {
    return (this.bits[block >> 3] & (1 << (block & 7))) !== 0;
  }

  set(block: number): void {
    if (block < 0 || block >= this.blockCount) throw new RangeError(`block ${block} out of range`);
    if (this.has(block)) return;
    this.bits[block >> 3] |= 1 << (block & 7);
    this.stagedCount++;
  }

  clear(block: number): void {
    if (!this.has(block)) return;
    this.bits[block >> 3] &= ~(1 << (block & 7));
    this.stagedCount--;
  }

  hasAll(first: number, last: number): boolean {
    for (let block = first; block <= last; block++) if (!this.has(block)) return false;
    return true;
  }

  get count(): number {
    return this.stagedCount;
  }

  get complete(): boolean {
    return this.stagedCount === this.blockCount;
  }

  toBytes(): Uint8Array {
    return this.bits.slice();
  }

  /** The bits themselves, for a reader in another thread (the native engine). */
  get liveBits(): Uint8Array {
    return this.bits;
  }
}

function popcount(byte: number): number {
  let count = 0;
  for (let b = byte; b; b &= b - 1) count++;
  return count;
}
