/** The in-memory state of one staged object: what is on disk, what is being fetched, who uses it. */
import type { FileHandle } from 'node:fs/promises';
import type { Deferred } from '../util/deferred';
import { BlockMap } from './block-map';
import type { EntryRecord, EntryState } from './cache-index';
import { LazyFile } from './lazy-file';
import type { StagedFiles } from './staged-files';

export interface ObjectVersion {
  bucket: string;
  key: string;
  etag: string;
  size: number;
  mtime: number;
}

export class StagedObject implements ObjectVersion {
  readonly bucket: string;
  readonly key: string;
  readonly etag: string;
  readonly size: number;
  readonly mtime: number;
  readonly blockSize: number;
  readonly blocks: BlockMap;
  stagedBytes: number;
  lastAccess: number;
  openHandles = 0;
  pinned: boolean;
  /** Blocks being fetched: readers of a block in flight wait on the same fetch. */
  readonly inflight = new Map<number, Deferred>();
  activeFetches = 0;
  /** Blocks written since the last index snapshot: the file needs a datasync before recording them. */
  unsyncedBlocks = 0;
  /** A newer ETag of the key has been opened: this version goes as soon as nothing uses it. */
  superseded = false;
  removed = false;
  private file: LazyFile | undefined;

  constructor(
    readonly id: string,
    version: ObjectVersion,
    blockSize: number,
    persisted?: Pick<EntryRecord, 'blocks' | 'lastAccess' | 'pinned'>,
  ) {
    this.bucket = version.bucket;
    this.key = version.key;
    this.etag = version.etag;
    this.size = version.size;
    this.mtime = version.mtime;
    this.blockSize = blockSize;
    const blockCount = Math.ceil(version.size / blockSize);
    this.blocks = new BlockMap(blockCount, persisted?.blocks);
    this.stagedBytes = persisted ? this.bytesOfStagedBlocks() : 0;
    this.lastAccess = persisted?.lastAccess ?? Date.now();
    this.pinned = persisted?.pinned ?? false;
  }

  static fromRecord(record: EntryRecord): StagedObject {
    return new StagedObject(record.id, record, record.blockSize, record);
  }

  blockOf(offset: number): number {
    return Math.floor(offset / this.blockSize);
  }

  blockStart(block: number): number {
    return block * this.blockSize;
  }

  blockLength(block: number): number {
    return Math.min(this.blockSize, this.size - block * this.blockSize);
  }

  /** Bytes from the start of `first` to the end of `last`. */
  spanLength(first: number, last: number): number {
    return Math.min(this.size, (last + 1) * this.blockSize) - first * this.blockSize;
  }

  get state(): EntryState {
    if (this.activeFetches > 0) return 'fetching';
    return this.blocks.complete ? 'complete' : 'partial';
  }

  /**
   * Whether eviction may remove this entry now: nothing uses, pins or fetches it. (Unuploaded
   * data lives in working copies, which eviction never sees.)
   */
  get evictable(): boolean {
    return !this.removed && this.openHandles === 0 && this.activeFetches === 0 && this.inflight.size === 0 && !this.pinned;
  }

  markStaged(block: number): number {
    if (this.blocks.has(block)) return 0;
    this.blocks.set(block);
    const length = this.blockLength(block);
    this.stagedBytes += length;
    this.unsyncedBlocks++;
    return length;
  }

  openFile(files: StagedFiles): Promise<FileHandle> {
    this.file ??= new LazyFile(() => files.open(this.id, this.size));
    return this.file.get();
  }

  get fileIsOpen(): boolean {
    return this.file?.isOpen ?? false;
  }

  async closeFile(): Promise<void> {
    await this.file?.close();
  }

  toRecord(): EntryRecord {
    return {
      id: this.id,
      bucket: this.bucket,
      key: this.key,
      etag: this.etag,
      size: this.size,
      mtime: this.mtime,
      blockSize: this.blockSize,
      blocks: this.blocks.toBytes(),
      stagedBytes: this.stagedBytes,
      lastAccess: this.lastAccess,
      openHandles: this.openHandles,
      pinned: this.pinned,
      dirty: false,
      state: this.state,
    };
  }

  private bytesOfStagedBlocks(): number {
    let bytes = 0;
    for (let block = 0; block < this.blocks.blockCount; block++) {
      if (this.blocks.has(block)) bytes += this.blockLength(block);
    }
    return bytes;
  }
}
