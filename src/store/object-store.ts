/**
 * What stagefs needs of an object store. Keys are full object keys (prefix included);
 * nothing here knows about FUSE, paths or the cache.
 */

export interface ObjectInfo {
  key: string;
  size: number;
  /** The store's ETag, quotes included, as it must be sent back in If-Match. */
  etag: string;
  mtime: Date;
  /** User metadata (x-amz-meta-*), present when the object was read with HEAD. */
  metadata?: Record<string, string>;
  /** The store's checksum of the whole object, when it keeps one and HEAD gave it. */
  checksum?: StoreChecksum;
}

export const CHECKSUM_ALGORITHMS = ['CRC32C', 'CRC32', 'SHA256', 'SHA1'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

/** A full-object checksum as S3 gives it (x-amz-checksum-*): base64 of the big-endian digest. */
export interface StoreChecksum {
  algorithm: ChecksumAlgorithm;
  value: string;
}

/** The version of an object a copy is made of. */
export type CopySource = Pick<ObjectInfo, 'key' | 'etag' | 'size'>;

export interface ListPage {
  objects: ObjectInfo[];
  /** Common prefixes, each ending in the delimiter. */
  prefixes: string[];
  continuationToken: string | undefined;
}

export interface ListOptions {
  delimiter?: string;
  continuationToken?: string;
  maxKeys?: number;
}

/** Where writeRange puts a range's bytes, and who hears of them. */
export interface RangeTarget {
  fd: number;
  /** Blocks start at multiples of this; the CRC32C of each is computed as it is written. */
  blockSize: number;
  /**
   * For a `start` inside a block: the CRC32C of the block's bytes before it, already on disk, which
   * the block's CRC continues from (0 and none for a start on a block boundary).
   */
  crcBefore?: number;
  /**
   * Bytes before `written` are on disk; `crcs` are the CRC32Cs of the blocks from `firstBlock`
   * on that were completed since the last call (a block once, whatever retries it took).
   */
  progress(written: number, firstBlock: number, crcs: Uint32Array | undefined): void;
}

export interface RangeWrite {
  /** Settles once every byte is written, or rejects as getRange would. */
  readonly done: Promise<void>;
  /** A reader waits for the bytes before `offset`: progress is told as soon as they are written. */
  want(offset: number): void;
}

export interface ObjectStore {
  /** A human description such as "s3://bucket at http://127.0.0.1:9000", for messages. */
  readonly description: string;

  /** Resolves when the bucket exists and the credentials may list it; throws StoreError otherwise. */
  checkAccess(prefix: string): Promise<void>;

  list(prefix: string, options?: ListOptions): Promise<ListPage>;

  /** The object's info, or undefined when there is no such key. */
  head(key: string): Promise<ObjectInfo | undefined>;

  /**
   * The bytes [start, end) of the object, as it is at `etag`: exactly end - start bytes, in order,
   * or an error (responses are checked, broken bodies resumed, inside the store). Throws
   * StoreError 'PreconditionFailed' when the object no longer has that ETag, so a reader never
   * mixes two versions.
   */
  getRange(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>;

  /**
   * The same bytes as getRange, with the same checks, resumes and errors, written straight into
   * `target.fd` at the object's offsets by a store that can do so off the JavaScript thread;
   * absent where it cannot (use getRange). `start` is on a block boundary of `target.blockSize`,
   * or inside a block whose bytes before it are on disk with the CRC `target.crcBefore`.
   */
  writeRange?(key: string, start: number, end: number, etag: string, target: RangeTarget): RangeWrite;

  /** Stores `body` whole under `key`; returns the new object's info. */
  put(key: string, body: Uint8Array, metadata?: Record<string, string>): Promise<ObjectInfo>;

  /** Starts a multipart upload; returns its id. */
  createMultipart(key: string, metadata?: Record<string, string>): Promise<string>;

  /** Uploads part `partNumber` (from 1); returns its ETag. */
  uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string>;

  /**
   * Makes part `partNumber` of an upload from bytes [start, end) of `source` as it is at its
   * ETag, server-side; throws StoreError 'PreconditionFailed' when the source changed.
   */
  uploadPartCopy(key: string, uploadId: string, partNumber: number, source: { key: string; etag: string }, start: number, end: number): Promise<string>;

  completeMultipart(key: string, uploadId: string, partEtags: string[]): Promise<ObjectInfo>;

  abortMultipart(key: string, uploadId: string): Promise<void>;

  /**
   * Copies `source` to `to` inside the bucket, server-side, only as it is at `source.etag`
   * (CopySourceIfMatch): throws StoreError 'PreconditionFailed' when the object changed. With
   * `metadata` the copy gets it instead of the source's. `to` may be the source's own key, to
   * change metadata only.
   */
  copy(source: CopySource, to: string, metadata?: Record<string, string>): Promise<ObjectInfo>;

  delete(key: string): Promise<void>;

  deleteMany(keys: string[]): Promise<void>;
}
