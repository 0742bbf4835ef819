/**
 * The in-memory state of one staged object: what is on disk, what is being fetched, who uses it.
 * It owns one staging file, named at its creation; nothing else opens or removes that file.
 */
import type { StoreChecksum } from '../store/object-store';
import { BlockMap } from './block-map';
import type { EntryRecord, EntryState, StagedHead } from './cache-index';
import { LazyFile } from './lazy-file';
import { entryId, newFileName, type StagedFiles, type StagingFile } from './staged-files';

export interface ObjectVersion {
  bucket: string;
  key: string;
  etag: string;
  size: number;
  mtime: number;
  /** The store's checksum of the whole object, when known. */
  checksum?: StoreChecksum;
}

/** What a staged object is restored from: its index record, or a file handed over whole. */
export interface PersistedState {
  file: string;
  blocks: Uint8Array;
  lastAccess: number;
  pinned: boolean;
  /** The CRC32C of each block, 4 bytes a block in the host's byte order, valid where `crcBlocks` has its bit. */
  crcs?: Uint8Array;
  crcBlocks?: Uint8Array;
  head?: StagedHead;
}

/** A block being fetched: `staged` settles once it is staged, `written(until)` once the object's bytes before `until` in it are on disk. */
export interface InflightBlock {
  readonly staged: Promise<void>;
  written(until: number): Promise<void>;
  isWritten(until: number): boolean;
}

export class StagedObject implements ObjectVersion {
  private entryId: string;
  readonly bucket: string;
  private objectKey: string;
  private objectEtag: string;
  readonly size: number;
  readonly mtime: number;
  readonly blockSize: number;
  readonly blocks: BlockMap;
  /** The CRC32C of each staged block whose bit `checksummed` has (blocks handed over whole have none until checked). */
  readonly crcs: Uint32Array;
  readonly checksummed: BlockMap;
  /**
   * Staged blocks written or checked against their CRC in this mount: the only ones served
   * without a check, and the bits the native engine serves from (a reader in another thread).
   */
  readonly verified: BlockMap;
  /** A check of the blocks not yet verified, under way. */
  verifying: Promise<unknown> | undefined;
  /** Never set while block 0 is staged: staging it takes the head's place. */
  private stagedHead: StagedHead | undefined;
  /** The head's bytes were written or checked against its CRC in this mount. */
  headVerified = false;
  /** A fetch of the head under way: readers of its bytes wait on it. */
  headFetch: InflightBlock | undefined;
  stagedBytes: number;
  lastAccess: number;
  openHandles = 0;
  pinned: boolean;
  /** Blocks being fetched: readers of a block in flight wait on the same fetch. */
  readonly inflight = new Map<number, InflightBlock>();
  activeFetches = 0;
  /** Blocks written since the last index snapshot: the file needs a datasync before recording them. */
  unsyncedBlocks = 0;
  /** A newer ETag of the key has been opened: this version goes as soon as nothing uses it. */
  superseded = false;
  removed = false;
  /** The store's checksum of the whole object, when the mount learned it (from HEAD). */
  storeChecksum: StoreChecksum | undefined;
  /** The staging file's name; it exists on disk once `openFile` created it, or from the start when persisted. */
  readonly fileName: string;
  private fileExists: boolean;
  private file: LazyFile | undefined;

  constructor(version: ObjectVersion, blockSize: number, persisted?: PersistedState) {
    this.entryId = entryId(version.bucket, version.key, version.etag);
    this.bucket = version.bucket;
    this.objectKey = version.key;
    this.objectEtag = version.etag;
    this.size = version.size;
    this.mtime = version.mtime;
    this.blockSize = blockSize;
    const blockCount = Math.ceil(version.size / blockSize);
    this.blocks = new BlockMap(blockCount, persisted?.blocks);
    this.crcs = new Uint32Array(blockCount);
    const crcBytes = persisted?.crcs;
    if (crcBytes && persisted.crcBlocks && crcBytes.length >= this.crcs.byteLength) {
      new Uint8Array(this.crcs.buffer).set(crcBytes.subarray(0, this.crcs.byteLength));
      this.checksummed = new BlockMap(blockCount, persisted.crcBlocks);
    } else this.checksummed = new BlockMap(blockCount);
    this.verified = new BlockMap(blockCount);
    if (persisted?.head && this.isHeadShape(persisted.head)) this.stagedHead = { bytes: persisted.head.bytes, crc: persisted.head.crc };
    this.stagedBytes = persisted ? this.bytesOfStagedBlocks() + (this.stagedHead?.bytes ?? 0) : 0;
    this.lastAccess = persisted?.lastAccess ?? Date.now();
    this.pinned = persisted?.pinned ?? false;
    this.fileName = persisted?.file ?? newFileName(this.entryId);
    this.fileExists = persisted !== undefined;
  }

  static fromRecord(record: EntryRecord): StagedObject {
    return new StagedObject(record, record.blockSize, record);
  }

  get id(): string {
    return this.entryId;
  }

  get key(): string {
    return this.objectKey;
  }

  get etag(): string {
    return this.objectEtag;
  }

  /** The same bytes now stand under another key or ETag (a rename, a metadata change); the file stays. */
  retarget(key: string, etag: string): void {
    this.objectKey = key;
    this.objectEtag = etag;
    this.entryId = entryId(this.bucket, key, etag);
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

  /** The offset just past the block's last byte. */
  blockEnd(block: number): number {
    return Math.min(this.size, (block + 1) * this.blockSize);
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
   * data belongs to the write path, which eviction never sees.)
   */
  get evictable(): boolean {
    return !this.removed && this.openHandles === 0 && this.activeFetches === 0 && this.inflight.size === 0 && !this.pinned;
  }

  /** Records a block as staged; with the CRC of the bytes just written, it counts as verified. */
  markStaged(block: number, crc?: number): number {
    if (this.blocks.has(block)) return 0;
    this.blocks.set(block);
    if (crc !== undefined) this.recordCrc(block, crc);
    // The head's bytes are the block's first: the block now answers for them, and they were counted already.
    const headBytes = block === 0 ? this.dropHead() : 0;
    const length = this.blockLength(block);
    this.stagedBytes += length;
    this.unsyncedBlocks++;
    return length - headBytes;
  }

  get head(): StagedHead | undefined {
    return this.stagedHead;
  }

  /**
   * Records the first `bytes` of block 0 as on disk, written in this mount with this CRC; returns
   * the bytes newly staged (none when block 0 or a head is staged already).
   */
  recordHead(bytes: number, crc: number): number {
    if (this.blocks.has(0) || this.stagedHead || !this.isHeadShape({ bytes, crc })) return 0;
    this.stagedHead = { bytes, crc };
    this.headVerified = true;
    this.stagedBytes += bytes;
    this.unsyncedBlocks++;
    return bytes;
  }

  /** The head is no longer staged (block 0 took its place, or its bytes failed their check); returns the bytes it held. */
  dropHead(): number {
    const bytes = this.stagedHead?.bytes ?? 0;
    this.stagedHead = undefined;
    this.headVerified = false;
    this.stagedBytes -= bytes;
    return bytes;
  }

  /** A head shorter than block 0, with a 32-bit CRC: anything else in a record is not one. */
  private isHeadShape(head: StagedHead): boolean {
    const { bytes, crc } = head;
    return Number.isSafeInteger(bytes) && bytes > 0 && bytes < this.blockLength(0) && Number.isInteger(crc) && crc >= 0 && crc <= 0xffffffff;
  }

  /** The CRC of a staged block's bytes, as written or first read in this mount. */
  recordCrc(block: number, crc: number): void {
    this.crcs[block] = crc;
    this.checksummed.set(block);
    this.verified.set(block);
  }

  /** A staged block's bytes are not the object's: it is no longer staged. Returns the bytes it held. */
  unstage(block: number): number {
    if (!this.blocks.has(block)) return 0;
    this.verified.clear(block);
    this.checksummed.clear(block);
    this.blocks.clear(block);
    const length = this.blockLength(block);
    this.stagedBytes -= length;
    return length;
  }

  openFile(files: StagedFiles): Promise<StagingFile> {
    this.file ??= new LazyFile(async () => {
      if (this.fileExists) return files.open(this.fileName);
      const handle = files.create(this.fileName, this.size);
      this.fileExists = true;
      return handle;
    });
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
      file: this.fileName,
      bucket: this.bucket,
      key: this.key,
      etag: this.etag,
      size: this.size,
      mtime: this.mtime,
      blockSize: this.blockSize,
      blocks: this.blocks.toBytes(),
      crcs: new Uint8Array(this.crcs.buffer.slice(0)),
      crcBlocks: this.checksummed.toBytes(),
      head: this.stagedHead && { ...this.stagedHead },
      stagedBytes: this.stagedBytes,
      lastAccess: this.lastAccess,
      openHandles: this.openHandles,
      pinned: this.pinned,
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
