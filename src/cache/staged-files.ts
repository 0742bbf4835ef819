/**
 * The sparse files holding staged bytes. An entry's id is a hash of (bucket, key, ETag), never
 * the key, so no key can reach outside the cache directory. Its file is named by the id plus a
 * suffix unique to the entry instance: a file belongs to exactly one entry for its whole life,
 * so removing one entry (an eviction finishing late, a replaced version) can never delete or
 * truncate a file that another entry of the same id now owns.
 */
import { createHash, randomBytes } from 'node:crypto';
import { close, closeSync, fdatasync, ftruncateSync, mkdirSync, openSync, readdirSync, renameSync, writev } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const closeFd = promisify(close);
const datasyncFd = promisify(fdatasync);
const writevFd = promisify(writev);

/**
 * An open staging file: its descriptor, which the cache reads synchronously and the addon writes
 * to, and the calls that go through the thread pool (writes of fetched bytes, syncs, the close).
 */
export class StagingFile {
  constructor(readonly fd: number) {}

  /** Writes `buffers` at `position`; returns the bytes written. */
  async writev(buffers: Buffer[], position: number): Promise<number> {
    return (await writevFd(this.fd, buffers, position)).bytesWritten;
  }

  datasync(): Promise<void> {
    return datasyncFd(this.fd);
  }

  close(): Promise<void> {
    return closeFd(this.fd);
  }
}

export function entryId(bucket: string, key: string, etag: string): string {
  return createHash('sha256').update(`${bucket}\0${key}\0${etag}`).digest('hex').slice(0, 40);
}

/** A file name no other entry has had, for an entry of `id`. */
export function newFileName(id: string): string {
  return `${id}.${randomBytes(6).toString('hex')}`;
}

/** Whether `name` is one `newFileName` gives; older versions named files by the id alone. */
export function isEntryFileName(name: string): boolean {
  return /^[0-9a-f]{40}\.[0-9a-f]{12}$/.test(name);
}

/** Files are spread over directories named by the first two hex digits of their name. */
const SHARD_COUNT = 256;

export class StagedFiles {
  readonly root: string;

  constructor(cacheDir: string) {
    this.root = join(cacheDir, 'staged');
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
    this.makeShards();
  }

  /**
   * Every shard directory exists from the start: on a fresh cache, a file's creation would
   * otherwise fail, make its shard (a synchronous mkdir) and try again, on the way to the first
   * byte of each of the first few hundred files.
   */
  private makeShards(): void {
    const present = new Set(readdirSync(this.root));
    for (let shard = 0; shard < SHARD_COUNT; shard++) {
      const name = shard.toString(16).padStart(2, '0');
      if (!present.has(name)) mkdirSync(join(this.root, name), { mode: 0o700 });
    }
  }

  pathOf(name: string): string {
    return join(this.root, name.slice(0, 2), name);
  }

  /**
   * Creates the file `name`, sparse at `size` bytes; fails if it exists. Synchronous, as opening
   * one: a create on the local cache disk is a metadata operation of some 0.1 ms, where a trip
   * through a busy mount's thread pool took 1-1.5 ms, on the way to the first byte of every file.
   */
  create(name: string, size: number): StagingFile {
    const fd = this.openNew(name);
    try {
      ftruncateSync(fd, size);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return new StagingFile(fd);
  }

  /** A shard removed while the cache runs is made again. */
  private openNew(name: string): number {
    try {
      return openSync(this.pathOf(name), 'wx+', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      mkdirSync(join(this.root, name.slice(0, 2)), { recursive: true, mode: 0o700 });
      return openSync(this.pathOf(name), 'wx+', 0o600);
    }
  }

  /** Opens an existing file; a missing one is an error, never silently recreated empty. */
  open(name: string): StagingFile {
    return new StagingFile(openSync(this.pathOf(name), 'r+'));
  }

  /**
   * Moves a file from elsewhere on the same file system in under `name`. Synchronous: a rename
   * is one metadata operation, and a caller handing a file over must not be interleaved with.
   */
  moveIn(path: string, name: string): void {
    mkdirSync(join(this.root, name.slice(0, 2)), { recursive: true, mode: 0o700 });
    renameSync(path, this.pathOf(name));
  }

  async remove(name: string): Promise<void> {
    try {
      await unlink(this.pathOf(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /** The names of every staging file on disk, for reconciliation with the index. */
  namesOnDisk(): string[] {
    const names: string[] = [];
    for (const shard of readdirSync(this.root)) {
      for (const name of readdirSync(join(this.root, shard))) names.push(name);
    }
    return names;
  }
}
