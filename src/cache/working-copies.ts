/**
 * Working copies: files written through the mount, staged whole in the cache until uploaded.
 * Their bytes count against the cache size (growth is reserved before it is written, so a full
 * cache fails the write with ENOSPC and keeps what was written). Each is recorded in the index
 * before its first change is acknowledged, and again whenever it turns dirty, so a crash never
 * forgets unuploaded data.
 */
import { randomUUID } from 'node:crypto';
import { copyFile, mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import createDebug from 'debug';
import { FsError } from '../errors';
import type { CacheIndex, EntryRecord } from './cache-index';
import type { Reservation, SpaceLedger } from './space-ledger';
import { entryId, type StagedFiles } from './staged-files';
import { StagedObject, type ObjectVersion } from './staged-object';
import { WorkingCopy } from './working-copy';

const debug = createDebug('stagefs:working');

export interface WorkingCopiesDeps {
  bucket: string;
  blockSize: number;
  index: CacheIndex;
  files: StagedFiles;
  ledger: SpaceLedger;
  /** Reserves cache space, evicting clean entries if needed; undefined when no room can be made. */
  reserve: (bytes: number) => Reservation | undefined;
  /** Takes a clean staged version into the cache (a working copy that became one). */
  adopt: (object: StagedObject) => void;
  now: () => number;
}

export class WorkingCopies {
  private readonly copies = new Map<string, WorkingCopy>();

  constructor(private readonly deps: WorkingCopiesDeps) {}

  /** Working copies found in the index at start: dirty ones to upload, clean ones to keep as staged versions. */
  load(records: Array<{ record: EntryRecord; size: number }>): void {
    for (const { record, size } of records) {
      const copy = this.make(record.id, record.key, size, record.metadata ?? {}, record.mtime, record.dirty);
      if (!record.dirty && record.etag) copy.uploaded(copy.generation, record.etag);
      this.copies.set(copy.id, copy);
      this.deps.ledger.adjustStaged(size);
    }
  }

  list(): WorkingCopy[] {
    return [...this.copies.values()];
  }

  /** A new working copy of `key`: empty, or a copy of a staged file (`source`). */
  async create(key: string, metadata: Record<string, string>, source?: { path: string; size: number }): Promise<WorkingCopy> {
    const id = entryId(this.deps.bucket, key, `working:${randomUUID()}`);
    const path = this.deps.files.pathOf(id);
    await mkdir(dirname(path), { recursive: true });
    const size = source?.size ?? 0;
    const reservation = size > 0 ? this.deps.reserve(size) : undefined;
    if (size > 0 && !reservation) throw new FsError('ENOSPC', `no cache space for a working copy of ${key}`);
    try {
      if (source) await copyFile(source.path, path);
      else await (await open(path, 'w')).close();
      reservation?.commit(size);
    } finally {
      reservation?.release();
    }
    const copy = this.make(id, key, size, metadata, this.deps.now(), true);
    this.copies.set(id, copy);
    await this.persist(copy);
    debug('working copy of %s (%d bytes)', key, size);
    return copy;
  }

  async read(copy: WorkingCopy, buffer: Buffer, length: number, position: number): Promise<number> {
    copy.lastAccess = this.deps.now();
    const end = Math.min(copy.size, position + length);
    const file = await copy.openFile();
    let done = 0;
    while (position + done < end) {
      const { bytesRead } = await file.read(buffer, done, end - position - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  async write(copy: WorkingCopy, data: Buffer, position: number): Promise<number> {
    const end = position + data.length;
    await this.resize(copy, Math.max(copy.size, end), async (file) => {
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await file.write(data, done, data.length - done, position + done);
        done += bytesWritten;
      }
    });
    return data.length;
  }

  async truncate(copy: WorkingCopy, size: number): Promise<void> {
    await this.resize(copy, size, (file) => file.truncate(size));
  }

  /** Records a metadata change (mode, owner), and a modification time set by the user, uploaded with the content. */
  async setMetadata(copy: WorkingCopy, metadata: Record<string, string>, mtime?: number): Promise<void> {
    copy.metadata = { ...copy.metadata, ...metadata };
    await this.changed(copy);
    if (mtime !== undefined) copy.mtime = mtime;
  }

  /** The copy now belongs to another key (a rename); a crash from here on uploads it there. */
  async retarget(copy: WorkingCopy, key: string): Promise<void> {
    copy.key = key;
    if (copy.dirty) await this.persist(copy);
    else await this.changed(copy);
  }

  uploaded(copy: WorkingCopy, generation: number, etag: string): void {
    copy.uploaded(generation, etag);
    void this.persist(copy).catch((err: unknown) => debug('recording the upload of %s: %s', copy.key, (err as Error).message));
  }

  /** A clean copy nothing uses becomes a staged version of its object: its bytes stay cached. */
  async settle(copy: WorkingCopy, version: ObjectVersion): Promise<void> {
    if (copy.dirty || copy.users > 0) throw new Error(`working copy of ${copy.key} is not settled`);
    await copy.closeFile();
    const object = new StagedObject(entryId(version.bucket, version.key, version.etag), version, this.deps.blockSize);
    for (let block = 0; block < object.blocks.blockCount; block++) object.markStaged(block);
    object.unsyncedBlocks = 0;
    this.forget(copy);
    await this.deps.files.move(copy.id, object.id);
    await this.deps.index.remove(copy.id);
    this.deps.adopt(object);
    debug('%s settled as %s', copy.key, version.etag);
  }

  /** Drops a copy and its data (the file was deleted, or replaced). */
  async discard(copy: WorkingCopy): Promise<void> {
    this.forget(copy);
    await copy.closeFile();
    await this.deps.index.remove(copy.id);
    await this.deps.files.remove(copy.id);
  }

  /** Records every copy's current size, state and users, for status readers. */
  async persistAll(): Promise<void> {
    await Promise.all([...this.copies.values()].map((copy) => this.persist(copy)));
  }

  async closeAll(): Promise<void> {
    for (const copy of this.copies.values()) {
      copy.users = 0;
      await this.persist(copy);
      await copy.closeFile();
    }
  }

  private forget(copy: WorkingCopy): void {
    copy.removed = true;
    this.copies.delete(copy.id);
    this.deps.ledger.adjustStaged(-copy.size);
  }

  /** Changes the size, reserving growth first, and runs `change` on the file. */
  private async resize(copy: WorkingCopy, size: number, change: (file: FileHandle) => Promise<unknown>): Promise<void> {
    const growth = size - copy.size;
    const reservation = growth > 0 ? this.deps.reserve(growth) : undefined;
    if (growth > 0 && !reservation) throw new FsError('ENOSPC', `no cache space to grow ${copy.key}`);
    try {
      await change(await copy.openFile());
      reservation?.commit(growth);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw new FsError('ENOSPC', `cache disk full writing ${copy.key}`);
      throw err;
    } finally {
      reservation?.release();
    }
    if (growth < 0) this.deps.ledger.adjustStaged(growth);
    copy.size = size;
    await this.changed(copy);
  }

  private async changed(copy: WorkingCopy): Promise<void> {
    if (copy.change(this.deps.now())) await this.persist(copy);
  }

  private async persist(copy: WorkingCopy): Promise<void> {
    if (!copy.removed) await this.deps.index.put(copy.toRecord(this.deps.blockSize));
  }

  private make(id: string, key: string, size: number, metadata: Record<string, string>, mtime: number, dirty: boolean): WorkingCopy {
    const now = this.deps.now();
    return new WorkingCopy(id, this.deps.bucket, key, size, metadata, mtime, now, () => this.deps.files.open(id, size), dirty);
  }
}
