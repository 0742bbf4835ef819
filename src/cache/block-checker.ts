/**
 * Checks staged blocks against the CRC32C recorded when they were written: staging files live on
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
    const length = object.blockLength(block);
    if (!this.buffer || this.buffer.length < length) this.buffer = Buffer.allocUnsafe(object.blockSize);
    const bytes = this.buffer.subarray(0, length);
    const start = object.blockStart(block);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, bytes, done, length - done, start + done);
      if (n === 0) return 'bad'; // the file is shorter than its staged blocks
      done += n;
    }
    const crc = crc32c(bytes);
    if (!object.checksummed.has(block)) {
      object.recordCrc(block, crc);
      return 'recorded';
    }
    if (crc !== object.crcs[block]) return 'bad';
    object.verified.set(block);
    return 'good';
  }
}
