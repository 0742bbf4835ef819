/**
 * Free space on the file system that holds the cache. The cache size is a budget the admin sets;
 * the disk may fill first (other files, a smaller volume than --cache-size). Reservations also
 * need the disk to have room, and a margin is always left free so the LMDB index can still
 * commit: lmdb fails badly when a commit meets a full disk.
 */
import { statfsSync } from 'node:fs';

/** Kept free on the cache's file system for the index and for metadata. */
export const DISK_HEADROOM_BYTES = 32 * 1024 * 1024;

export class DiskSpace {
  constructor(
    private readonly dir: string,
    private readonly headroom = DISK_HEADROOM_BYTES,
  ) {}

  /** Bytes that may still be written, beyond `pending` bytes already promised to writers. */
  available(pending: number): number {
    // One statfs per reservation: a syscall costs microseconds and a reservation covers MiBs,
    // and a cached figure would miss what other writers did since.
    const stats = statfsSync(this.dir);
    return stats.bavail * stats.bsize - pending - this.headroom;
  }

  fits(bytes: number, pending: number): boolean {
    return bytes <= this.available(pending);
  }
}
