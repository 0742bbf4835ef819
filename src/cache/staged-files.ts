/**
 * The sparse files holding staged bytes. An entry's id is a hash of (bucket, key, ETag), never
 * the key, so no key can reach outside the cache directory. Its file is named by the id plus a
 * suffix unique to the entry instance: a file belongs to exactly one entry for its whole life,
 * so removing one entry (an eviction finishing late, a replaced version) can never delete or
 * truncate a file that another entry of the same id now owns.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ftruncateSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import { open, type FileHandle, unlink } from 'node:fs/promises';
import { join } from 'node:path';

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

export class StagedFiles {
  readonly root: string;

  constructor(cacheDir: string) {
    this.root = join(cacheDir, 'staged');
    mkdirSync(this.root, { recursive: true, mode: 0o700 });
  }

  pathOf(name: string): string {
    return join(this.root, name.slice(0, 2), name);
  }

  /**
   * Creates the file `name`, sparse at `size` bytes; fails if it exists. One trip through the
   * thread pool: sizing a new empty file only changes its inode, cheaper done here than queued.
   */
  async create(name: string, size: number): Promise<FileHandle> {
    const handle = await this.openNew(name);
    try {
      ftruncateSync(handle.fd, size);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle;
  }

  /** Its shard directory is made only when it is missing: all but a shard's first file cost no mkdir. */
  private async openNew(name: string): Promise<FileHandle> {
    try {
      return await open(this.pathOf(name), 'wx+', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      mkdirSync(join(this.root, name.slice(0, 2)), { recursive: true, mode: 0o700 });
      return open(this.pathOf(name), 'wx+', 0o600);
    }
  }

  /** Opens an existing file; a missing one is an error, never silently recreated empty. */
  open(name: string): Promise<FileHandle> {
    return open(this.pathOf(name), 'r+');
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
