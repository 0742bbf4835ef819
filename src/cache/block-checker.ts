/**
 * Checks staged blocks (and heads) against the CRC32C recorded when they were written: staging files live on
 * a disk others can touch (a crash, an admin, fsck, a failing drive), so their bytes are checked
 * once per mount before they are served. Reads are synchronous: a check is one step no other
 * work interleaves with, and staged bytes are local.
 */
import { readSync } from 'node:fs';
import { crc32c } from '../util/crc32c';
import type { StagedObject } from './staged-object';

/** `recorded`: the block had no CRC yet (handed over whole by the write path); it has now. */
export type BlockVerdict = 'good' | 'bad' | 'recorded';

export class BlockChecker {
  private buffer: Buffer | undefined;

  /** Checks staged block `block` of `object`, read from `fd`; a good block counts as verified. */
  check(object: StagedObject, fd: number, block: number): BlockVerdict {
    const crc = this.crcOf(fd, object.blockStart(block), object.blockLength(block), object.blockSize);
    if (crc === undefined) return 'bad'; // the file is shorter than its staged blocks
    if (!object.checksummed.has(block)) {
      object.recordCrc(block, crc);
      return 'recorded';
    }
    if (crc !== object.crcs[block]) return 'bad';
    object.verified.set(block);
    return 'good';
  }

  /** Checks the staged head of `object` (it always has its CRC); a good head counts as verified. */
  checkHead(object: StagedObject, fd: number): 'good' | 'bad' {
    const head = object.head;
    if (!head) return 'bad';
    if (this.crcOf(fd, 0, head.bytes, object.blockSize) !== head.crc) return 'bad';
    object.headVerified = true;
    return 'good';
  }

  /** The CRC32C of the `length` bytes at `start` in `fd`; undefined when the file ends before them. */
  private crcOf(fd: number, start: number, length: number, blockSize: number): number | undefined {
    if (!this.buffer || this.buffer.length < length) this.buffer = Buffer.allocUnsafe(Math.max(length, blockSize));
    const bytes = this.buffer.subarray(0, length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, bytes, done, length - done, start + done);
      if (n === 0) return undefined;
      done += n;
    }
    return crc32c(bytes);
  }
}
