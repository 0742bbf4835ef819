/**
 * The sparse files holding staged bytes. Names come from a hash of (bucket, key, ETag), never from
 * the key, so no key can reach outside the cache directory and two versions never share a file.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync } from 'node:fs';
import { mkdir, open, rename, type FileHandle, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export function entryId(bucket: string, key: string, etag: string): string {
  return createHash('sha256').update(`${bucket}\0${key}\0${etag}`).digest('hex').slice(0, 40);
}

export class StagedFiles {
  readonly root: string;

  constructor(cacheDir: string) {
    this.root = join(cacheDir, 'staged');
    mkdirSync(this.root, { recursive: true });
  }

  pathOf(id: string): string {
    return join(this.root, id.slice(0, 2), id);
  }

  /** Opens the staging file for `id`, creating it sparse at `size` bytes when it is new. */
  async open(id: string, size: number): Promise<FileHandle> {
    const path = this.pathOf(id);
    try {
      return await open(path, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await mkdir(join(this.root, id.slice(0, 2)), { recursive: true });
    const handle = await open(path, 'w+');
    await handle.truncate(size);
    return handle;
  }

  /** Gives the staging file of `from` to `to` (the same bytes under another identity). */
  async move(from: string, to: string): Promise<void> {
    await mkdir(join(this.root, to.slice(0, 2)), { recursive: true });
    await rename(this.pathOf(from), this.pathOf(to));
  }

  async remove(id: string): Promise<void> {
    try {
      await unlink(this.pathOf(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }

  /** The ids of every staging file on disk, for reconciliation with the index. */
  idsOnDisk(): string[] {
    const ids: string[] = [];
    for (const shard of readdirSync(this.root)) {
      for (const name of readdirSync(join(this.root, shard))) ids.push(name);
    }
    return ids;
  }
}
