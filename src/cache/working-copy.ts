/**
 * A file written through the mount: its staging file is the whole content (no block map), its
 * size and key can change, and it stays dirty until an upload of its latest content succeeds.
 */
import type { FileHandle } from 'node:fs/promises';
import type { EntryRecord, EntryState } from './cache-index';
import { LazyFile } from './lazy-file';

export class WorkingCopy {
  /** Changes so far; an upload that started at generation g leaves the copy clean only if none came after. */
  generation: number;
  private uploadedGeneration: number;
  /** The latest generation any upload carried, clean or not since. */
  lastUploadedGeneration = 0;
  /** The ETag of the last upload that left the copy clean. */
  uploadedEtag: string | undefined;
  uploading = false;
  lastError: string | undefined;
  /** Handles open on it through the mount. */
  users = 0;
  removed = false;
  private readonly file: LazyFile;

  constructor(
    readonly id: string,
    readonly bucket: string,
    public key: string,
    public size: number,
    public metadata: Record<string, string>,
    /** Last change of the content or metadata, ms since the epoch. */
    public mtime: number,
    public lastAccess: number,
    open: () => Promise<FileHandle>,
    dirty = true,
  ) {
    this.generation = dirty ? 1 : 0;
    this.uploadedGeneration = 0;
    this.file = new LazyFile(open);
  }

  get dirty(): boolean {
    return this.uploadedGeneration !== this.generation;
  }

  get state(): EntryState {
    if (this.uploading) return 'uploading';
    return this.dirty ? 'dirty' : 'complete';
  }

  /** Records a change; returns whether the copy was clean before it. */
  change(now: number): boolean {
    const wasClean = !this.dirty;
    this.generation++;
    this.mtime = now;
    return wasClean;
  }

  /** An upload of `generation` succeeded with `etag`: clean unless the copy changed since. */
  uploaded(generation: number, etag: string): void {
    this.lastUploadedGeneration = Math.max(this.lastUploadedGeneration, generation);
    if (generation !== this.generation) return;
    this.uploadedGeneration = generation;
    this.uploadedEtag = etag;
    this.lastError = undefined;
  }

  openFile(): Promise<FileHandle> {
    return this.file.get();
  }

  closeFile(): Promise<void> {
    return this.file.close();
  }

  toRecord(blockSize: number): EntryRecord {
    return {
      id: this.id,
      bucket: this.bucket,
      key: this.key,
      etag: this.uploadedEtag ?? '',
      size: this.size,
      mtime: this.mtime,
      blockSize,
      blocks: new Uint8Array(0),
      stagedBytes: this.size,
      lastAccess: this.lastAccess,
      openHandles: this.users,
      pinned: false,
      dirty: this.dirty,
      state: this.state,
      working: true,
      metadata: this.metadata,
      lastError: this.lastError,
    };
  }
}
