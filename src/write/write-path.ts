/**
 * The write path: the one owner of a file's local data, from its first change through its
 * upload to the moment it becomes a staged version in the cache, or is dropped.
 *
 * A file being written is a LocalFile, registered under its path. Its content is a sequence of
 * parts (part-layout.ts), each of which is in one of three places:
 *   local   in the sparse local data file;
 *   base    not local, equal to the base object's bytes (what the store held when the file was
 *           opened for writing or last uploaded): read from it through the cache, copied from it
 *           server-side (UploadPartCopy) on upload, fetched into the local file before a write;
 *   sent    not local, uploaded as a part of the multipart upload under way and dropped from
 *           the local file to make room: neither readable nor writable until that upload
 *           completes (a read fails with EIO, a write with ENOSPC), never lost.
 * Opening an existing object for writing copies nothing: every part starts in the base.
 * A file's metadata (mode, owner) and its times (mtime moves with content changes, ctime with
 * every change, atime only when set) travel with its content: every upload carries them all.
 *
 * States of a file and their transitions:
 *   dirty     content or metadata changed since the store last got it (create, write, truncate,
 *             setattr); close of a writer and fsync upload it (flush) and it turns clean, unless
 *             it changed meanwhile. A sequential writer's finished parts are uploaded as it goes
 *             (a multipart upload), so a file many times the cache size streams through it.
 *   clean     the store holds exactly this content (`base`). At the last close it is handed to
 *             the staging cache as the staged entry of that version (its local parts become
 *             staged blocks): one synchronous step, after which the write path forgets it.
 *   failed    a write failed (no room, disk error): the file is never published, close reports
 *             the error, and it is dropped at the last close; the store keeps what it had.
 *   unlinked  deleted through the mount: open handles still read and write it; never uploaded;
 *             dropped at the last close.
 * A dirty file nothing has open is uploaded in the background, retried with growing delays.
 * Every transition that matters after a crash is in the file's pending record (written before
 * the change is acknowledged); at start every record is uploaded before the mount serves.
 *
 * Ordering rules:
 * - Only this module reads, writes, punches or removes a local data file, and only the staging
 *   cache touches staged files; a file changes hands in the synchronous hand-off.
 * - A part's local bytes are dropped (punched) only when nothing reads or uploads them (`busy`)
 *   and the same bytes can be had elsewhere; its record says where before the punch.
 * - An upload publishes (PUT, or completing the multipart upload) only to the file's current
 *   key and only while it is not unlinked; rename and unlink change those first, then wait for
 *   a publish under way, then fix up the store (copy, delete). So no object appears under a
 *   name the file left, and nothing deletes an object a newer file put there.
 * - The C fast path never serves a local file: handles switched to one lose it first
 *   (Filesystem asks the engine), and a staged entry made at hand-off is new, its blocks all
 *   set before any handle can register it.
 */
import { randomUUID } from 'node:crypto';
import { copyFileSync, renameSync } from 'node:fs';
import { open } from 'node:fs/promises';
import createDebug from 'debug';
import { DiskSpace } from '../cache/disk-space';
import type { CacheHandle } from '../cache/staging-cache';
import type { Reservation } from '../cache/space-ledger';
import type { ObjectVersion } from '../cache/staged-object';
import type { LegacyWriteRecord } from '../cache/cache-index';
import { errorMessage, FsError, StoreError } from '../errors';
import type { ObjectInfo, ObjectStore } from '../store/object-store';
import { formatBytes } from '../units';
import { BoundedBuffers } from '../util/bounded-buffers';
import { formatEpochSeconds } from '../util/epoch-seconds';
import { droppable, LocalFile, newPart, partsOfRecord, sentIsCurrent, type MultipartSession, type Part } from './local-file';
import { FIRST_PART_SIZE, MAX_FILE_SIZE, partCount, partIndexOf, partRange } from './part-layout';
import { PendingRecords, type PendingRecord } from './pending-records';

const debug = createDebug('stagefs:write');
const logError = createDebug('stagefs:error');
const warn = createDebug('stagefs:warn');

const MiB = 1024 * 1024;
/** Files up to this size are uploaded with one PUT. */
export const SINGLE_PUT_MAX = 16 * MiB;
/**
 * Parts uploaded at once across all files, and the memory the bodies of uploads (parts and
 * single PUTs) may take at once; part-sized bodies are reused.
 */
const PARTS_IN_FLIGHT = 4;
const UPLOAD_MEMORY = 32 * MiB;
/** Bodies up to this size (small files) are allocated each time, and held only for their size. */
const SMALL_BODY_BYTES = MiB;
/** Base bytes are copied into the local file in pieces of this size. */
const COPY_CHUNK = 8 * MiB;
const RETRY_TICK_MS = 1000;
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 5 * 60_000;

/** What the write path needs of the staging cache. */
export interface StagingArea {
  open(version: ObjectVersion): Promise<CacheHandle>;
  read(handle: CacheHandle, buffer: Buffer, length: number, position: number): Promise<number>;
  release(handle: CacheHandle): void;
  /** Reserves room for bytes about to be written locally; undefined when none can be made. */
  reserveSpace(bytes: number): Reservation | undefined;
  /** Local bytes that left the disk. */
  unstage(bytes: number): void;
  /** Local bytes found on disk at start. */
  countStaged(bytes: number): void;
  /** Takes an uploaded file as the staged entry of `version`; false when it keeps its own. */
  adoptFile(version: ObjectVersion, path: string, isStaged: (start: number, end: number) => boolean): boolean;
  /** The staged bytes of `from` now stand for `to` (a server-side copy). */
  rekey(from: ObjectVersion, to: ObjectVersion): Promise<void>;
  takeLegacyWrites(): Array<{ record: LegacyWriteRecord; path: string }>;
  forgetLegacyWrite(id: string): Promise<void>;
}

export interface WritePathOptions {
  store: ObjectStore;
  cache: StagingArea;
  /** Directory of pending records and local data files. */
  dir: string;
  bucket: string;
  /** Key prefix of the mount: keys are prefix + path without its leading '/'. */
  prefix: string;
  /** Frees the disk blocks of a range of a file; without it local parts are never dropped. */
  punchHole: ((fd: number, offset: number, length: number) => void) | undefined;
  /** The store holds `info` under the file's key, made by the mount (an upload, or a copy on rename). */
  stored(file: LocalFile, info: ObjectInfo): void;
  /** The file's changes are dropped (a write failed): its path is the stored version again. */
  abandoned(file: LocalFile): void;
  now?: () => number;
}

/** A file's times, ms since the epoch: content change, change of content or metadata, access. */
export interface FileTimes {
  mtime: number;
  ctime: number;
  atime: number;
}

/** An upload given up because the file moved, was deleted or failed while it ran. */
class UploadCancelled extends Error {
  constructor(key: string) {
    super(`upload of ${key} cancelled: the file changed name or was deleted`);
    this.name = 'UploadCancelled';
  }
}

export class WritePath {
  private readonly records: PendingRecords;
  private readonly disk: DiskSpace;
  private readonly store: ObjectStore;
  private readonly cache: StagingArea;
  private readonly now: () => number;
  /** Files by their path in the mount. */
  private readonly byPath = new Map<string, LocalFile>();
  /** Every file, including unlinked ones still open and ones outside the mount's prefix. */
  private readonly all = new Set<LocalFile>();
  /** Part uploads under way, which writers short of room may wait for. */
  private readonly partUploads = new Set<Promise<void>>();
  private readonly uploadBodies = new BoundedBuffers(UPLOAD_MEMORY, FIRST_PART_SIZE, SMALL_BODY_BYTES);
  /** Parts being sent ahead of a flush, so none is sent twice at once. */
  private readonly sending = new Set<Part>();
  /** The last failure of a part sent ahead, which a writer waiting for room must not wait out forever. */
  private partFailure: unknown;
  private readonly sessions = new Map<LocalFile, Promise<MultipartSession>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: WritePathOptions) {
    this.records = new PendingRecords(options.dir);
    this.disk = new DiskSpace(options.dir);
    this.store = options.store;
    this.cache = options.cache;
    this.now = options.now ?? Date.now;
  }

  /** The file being written at `path`. */
  fileAt(path: string): LocalFile | undefined {
    return this.byPath.get(path);
  }

  /** The files being written, by path. */
  files(): IterableIterator<LocalFile> {
    return this.byPath.values();
  }

  /** Files whose changes are not in the store yet. */
  pending(): { count: number; bytes: number } {
    const dirty = [...this.all].filter((file) => file.dirty && !file.unlinked && !file.failure);
    return { count: dirty.length, bytes: dirty.reduce((sum, file) => sum + file.size, 0) };
  }

  /** A new, empty file at `path`; `metadata` without its times (the file's own, from now). */
  async create(path: string, metadata: Record<string, string>): Promise<LocalFile> {
    return this.register(path, { size: 0, metadata, dirty: true });
  }

  /**
   * `path`, an existing object, opened for a change: its bytes stay in the store (the base) until
   * parts of them are changed. With `empty` the file starts empty instead (O_TRUNC).
   */
  async openExisting(path: string, base: ObjectVersion, metadata: Record<string, string>, empty: boolean, times: Partial<FileTimes>): Promise<LocalFile> {
    if (empty) return this.register(path, { size: 0, metadata, dirty: true, ...times });
    const parts = Array.from({ length: partCount(base.size) }, () => ({ local: false, matchesBase: true, generation: 0, busy: 0 }));
    return this.register(path, { size: base.size, metadata, base, parts, dirty: false, ...times });
  }

  attach(file: LocalFile): void {
    file.users++;
  }

  /** A handle on the file closed; the last close uploads, hands over or drops it. */
  detach(file: LocalFile): void {
    file.users--;
    this.idle(file);
  }

  async read(file: LocalFile, buffer: Buffer, length: number, position: number): Promise<number> {
    // A size change while this read runs (as a racing truncate on a local disk) leaves the read
    // to the parts and size it began with.
    const size = file.size;
    const end = Math.min(size, position + length);
    if (position >= end) return 0;
    const first = partIndexOf(position);
    const pinned = file.parts.slice(first, partIndexOf(end - 1) + 1);
    for (const part of pinned) part.busy++;
    try {
      for (const [offset, part] of pinned.entries()) {
        const index = first + offset;
        const range = partRange(index, size);
        const start = Math.max(position, range.start);
        const stop = Math.min(end, range.end);
        const into = buffer.subarray(start - position, stop - position);
        if (part.local) await readFully(file, into, start);
        else if (part.matchesBase) await this.readBase(file, into, start);
        else throw new FsError('EIO', `${file.key}: bytes ${start}-${stop} were uploaded and dropped to make room; readable once the upload completes`);
      }
    } finally {
      for (const part of pinned) part.busy--;
    }
    return end - position;
  }

  async write(file: LocalFile, data: Buffer, position: number): Promise<number> {
    if (data.length === 0) return 0;
    const end = position + data.length;
    if (end > MAX_FILE_SIZE) throw new FsError('EFBIG', `${file.key}: larger than ${formatBytes(MAX_FILE_SIZE)}`);
    await file.changes.run(() =>
      this.failing(file, async () => {
        const oldSize = file.size;
        const newSize = Math.max(oldSize, end);
        const first = partIndexOf(position);
        const last = partIndexOf(end - 1);
        // The parts written, and the old last part when the file grows past it (its tail turns zeros).
        const existing = new Set<number>();
        for (let index = first; index <= Math.min(last, file.parts.length - 1); index++) existing.add(index);
        if (newSize > oldSize && oldSize > 0) existing.add(file.parts.length - 1);
        await this.changeParts(file, [...existing], newSize, async () => {
          let done = 0;
          while (done < data.length) done += (await file.data.write(data, done, data.length - done, position + done)).bytesWritten;
        });
        // After the bytes landed: an upload that read the parts before then sends them again.
        for (let index = first; index <= last; index++) touch(file.parts[index]);
        if (newSize > oldSize && oldSize > 0) touch(file.parts[partIndexOf(oldSize - 1)]);
        this.changed(file);
        // A writer appending: the parts behind it are finished and may go up as it goes on.
        file.appendingAt = end > oldSize && position <= oldSize ? first : undefined;
        if (file.size > SINGLE_PUT_MAX) this.uploadFinishedParts(file);
      }),
    );
    return data.length;
  }

  async truncate(file: LocalFile, size: number): Promise<void> {
    if (size > MAX_FILE_SIZE) throw new FsError('EFBIG', `${file.key}: larger than ${formatBytes(MAX_FILE_SIZE)}`);
    await file.changes.run(() =>
      this.failing(file, async () => {
        const oldSize = file.size;
        if (size === oldSize) return;
        // The part cut in two (shrinking) or grown (growing) changes; parts past the new end go.
        const boundary = Math.min(size, oldSize);
        const changing = boundary > 0 && partRange(partIndexOf(boundary - 1), oldSize).end !== partRange(partIndexOf(boundary - 1), size).end ? [partIndexOf(boundary - 1)] : [];
        await this.changeParts(file, changing, size, () => file.data.truncate(size));
        for (const index of changing) touch(file.parts[index]);
        this.changed(file);
      }),
    );
  }

  /**
   * New metadata (mode, owner; without times) and the times the user set; uploaded with the
   * content. The change time moves to now.
   */
  setAttributes(file: LocalFile, metadata: Record<string, string>, times: { atime?: number; mtime?: number }): void {
    file.metadata = { ...file.metadata, ...metadata };
    this.changed(file, 'metadata');
    if (times.mtime !== undefined) file.mtime = times.mtime;
    if (times.atime !== undefined) file.atime = times.atime;
    this.persist(file);
  }

  /** Resolves once every change made so far is in the store; throws when that fails. */
  async flush(file: LocalFile): Promise<void> {
    const target = file.generation;
    for (;;) {
      if (file.failure) throw file.failure;
      if (file.unlinked || !file.dirty || file.uploadedGeneration >= target) return;
      if (file.uploading) {
        await file.uploading.catch(() => undefined); // its own caller reports it; this flush tries anew
        if (file.uploadedGeneration >= target) return;
        continue;
      }
      await this.upload(file, file.key);
    }
  }

  /**
   * The file at `from` is now at `to`. Its key changes first (no upload publishes under the old
   * name after that); then the store follows: the base object is copied to the new key when
   * parts still rely on it or the file is clean, and the old object is deleted.
   */
  async rename(from: string, to: string): Promise<void> {
    const file = this.byPath.get(from);
    if (!file) throw new FsError('ENOENT', `no file being written at ${from}`);
    await this.replace(to);
    const oldKey = file.key;
    this.move(file, to);
    try {
      await this.settleUploads(file);
      if (file.session && file.holdsDroppedParts) await this.upload(file, file.session.key);
      else this.abandonSession(file);
      const base = file.base;
      if (base && base.key === oldKey && (file.relyingOnBase || !file.dirty)) {
        const info = await this.store.copy({ key: oldKey, etag: base.etag, size: base.size }, file.key);
        const moved = { ...base, key: file.key, etag: info.etag, mtime: info.mtime.getTime() };
        await this.cache.rekey(base, moved);
        this.rebase(file, moved);
        this.options.stored(file, info);
      } else if (base && base.key === oldKey) {
        this.forgetBase(file);
      }
    } catch (err) {
      this.move(file, from);
      throw err;
    }
    await this.store.delete(oldKey);
    this.persist(file);
    this.idle(file);
  }

  /**
   * What is being written at `path` goes because `path` is about to be replaced (a rename onto
   * it, or an upload of another file under its name): nothing of it is published any more.
   */
  async replace(path: string): Promise<void> {
    const file = this.byPath.get(path);
    if (!file) return;
    this.unregister(file);
    await this.settleUploads(file);
    this.abandonSession(file);
    this.idle(file);
  }

  /**
   * The file at `path` is deleted: its object goes now, its open handles keep reading and
   * writing its data (fetched whole first where it is still in the store) until the last close.
   */
  async unlink(path: string): Promise<void> {
    const file = this.byPath.get(path);
    if (!file) throw new FsError('ENOENT', `no file being written at ${path}`);
    this.unregister(file);
    await this.settleUploads(file);
    this.abandonSession(file);
    if (file.users > 0 && file.relyingOnBase) {
      try {
        await file.changes.run(() => this.changeParts(file, file.parts.map((_, index) => index), file.size, async () => undefined));
      } catch (err) {
        warn('%s stays readable only where it is local: %s', file.key, errorMessage(err));
      }
    }
    await this.store.delete(file.key);
    this.idle(file);
  }

  /** Uploads what a previous run left, before the mount serves; what still fails stays pending. */
  async recover(): Promise<void> {
    await this.adoptLegacyWrites();
    const { records, unnamedData } = this.records.scan();
    for (const path of unnamedData) warn('kept %s: written data without a record of where it belongs', path);
    for (const record of records) {
      let file: LocalFile;
      try {
        file = await this.restore(record);
      } catch (err) {
        warn('cannot recover the write of %s: %s', record.key, errorMessage(err));
        continue;
      }
      if (file.unlinked || file.failure || !file.dirty) {
        this.idle(file);
        continue;
      }
      try {
        await this.flush(file);
        debug('recovered %s (%s)', file.key, formatBytes(file.size));
        this.idle(file);
      } catch (err) {
        warn('%s stays pending: %s', file.key, errorMessage(err)); // the retry timer keeps at it
      }
    }
    this.timer = setInterval(() => this.retryIdle(), RETRY_TICK_MS);
    this.timer.unref();
  }

  /** Stops background uploads and tries once more to upload everything dirty. */
  async drain(): Promise<void> {
    clearInterval(this.timer);
    let failed = 0;
    for (const file of [...this.all]) {
      file.users = 0;
      try {
        await this.flush(file);
        this.idle(file);
      } catch (err) {
        failed++;
        debug('%s stays pending: %s', file.key, errorMessage(err));
      }
    }
    await Promise.all([...this.all].map((file) => file.data.close()));
    if (failed) warn('%d files are not uploaded yet; the next mount uploads them', failed);
  }

  // --- registration and records ---

  private async register(
    path: string,
    init: { size: number; metadata: Record<string, string>; dirty: boolean; base?: ObjectVersion; parts?: LocalFile['parts'] } & Partial<FileTimes>,
  ): Promise<LocalFile> {
    await this.replace(path);
    const id = randomUUID();
    const data = await open(this.records.dataPath(id), 'wx+', 0o600);
    try {
      await data.truncate(init.size);
    } catch (err) {
      await data.close();
      throw err;
    }
    const now = this.now();
    const file = new LocalFile(id, data, { path, key: this.keyOf(path), ...init, mtime: init.mtime ?? now, ctime: init.ctime ?? now, atime: init.atime ?? now });
    this.byPath.set(path, file);
    this.all.add(file);
    this.persist(file);
    debug('writing %s (%s)', file.key, init.base ? `over ${init.base.etag}` : 'new');
    return file;
  }

  private async restore(record: PendingRecord): Promise<LocalFile> {
    const data = await open(this.records.dataPath(record.id), 'r+');
    // Records are not rewritten for every write: the data file's size is the file's.
    const size = (await data.stat()).size;
    const path = record.key.startsWith(this.options.prefix) ? '/' + record.key.slice(this.options.prefix.length) : undefined;
    const file = new LocalFile(record.id, data, {
      path: path ?? '',
      key: record.key,
      size,
      metadata: record.metadata,
      mtime: record.mtime,
      ctime: record.ctime,
      atime: record.atime,
      base: record.base && { bucket: this.options.bucket, ...record.base },
      parts: partsOfRecord(record, size),
      dirty: record.dirty,
      session: record.session && { key: record.session.key, uploadId: record.session.uploadId },
      unlinked: record.unlinked,
    });
    if (record.failed) file.failure = new FsError('EIO', record.failed);
    file.heldBytes = file.localBytes();
    this.cache.countStaged(file.heldBytes);
    this.all.add(file);
    if (path && !file.unlinked && !this.byPath.has(path)) this.byPath.set(path, file);
    return file;
  }

  /** Files an older stagefs kept in the cache index become pending records here. */
  private async adoptLegacyWrites(): Promise<void> {
    for (const { record, path } of this.cache.takeLegacyWrites()) {
      if (record.dirty) {
        const id = randomUUID();
        moveFile(path, this.records.dataPath(id));
        this.records.write({ id, key: record.key, size: record.size, mtime: record.mtime, metadata: record.metadata ?? {}, dirty: true, parts: '' });
      }
      await this.cache.forgetLegacyWrite(record.id);
    }
  }

  private keyOf(path: string): string {
    return this.options.prefix + path.slice(1);
  }

  private move(file: LocalFile, path: string): void {
    if (this.byPath.get(file.path) === file) this.byPath.delete(file.path);
    file.path = path;
    file.key = this.keyOf(path);
    this.byPath.set(path, file);
    this.persist(file);
  }

  private unregister(file: LocalFile): void {
    file.unlinked = true;
    if (this.byPath.get(file.path) === file) this.byPath.delete(file.path);
    this.persist(file);
  }

  private persist(file: LocalFile, durable = false): void {
    if (this.all.has(file)) this.records.write(file.toRecord(), durable);
  }

  private changed(file: LocalFile, what: 'content' | 'metadata' = 'content'): void {
    if (file.changed(this.now(), what)) this.persist(file);
  }

  // --- parts ---

  /**
   * Runs `change` (the I/O of a write or size change) with the parts `indices` local, and room
   * reserved for the file's local bytes at `newSize`. Parts between are pinned, so none is
   * dropped underneath; new parts past the old end start local (zeros).
   */
  private async changeParts(file: LocalFile, indices: number[], newSize: number, change: () => Promise<void>): Promise<void> {
    const pinned = indices.map((index) => file.parts[index]);
    for (const part of pinned) part.busy++;
    try {
      for (const index of indices) await this.makeLocal(file, index);
      const oldCount = file.parts.length;
      const newCount = partCount(newSize);
      const grown = Array.from({ length: Math.max(0, newCount - oldCount) }, newPart);
      const held = file.localBytes(newSize) + grown.reduce((sum, _, i) => sum + partLength(oldCount + i, newSize), 0);
      const reservation = held > file.heldBytes ? await this.reserve(held - file.heldBytes) : undefined;
      try {
        await change();
      } catch (err) {
        reservation?.release();
        throw err;
      }
      file.parts.push(...grown);
      file.parts.length = newCount;
      file.size = newSize;
      reservation?.commit(held - file.heldBytes);
      if (held < file.heldBytes) this.cache.unstage(file.heldBytes - held);
      file.heldBytes = held;
    } finally {
      for (const part of pinned) part.busy--;
    }
  }

  /** Brings part `index` into the local file, from the base object, before a write changes it. */
  private makeLocal(file: LocalFile, index: number): Promise<void> {
    const part = file.parts[index];
    if (part.local) return Promise.resolve();
    if (!part.matchesBase) {
      return Promise.reject(
        new FsError('ENOSPC', `${file.key}: part ${index + 1} was uploaded and dropped to make room; it cannot change before the upload completes`),
      );
    }
    part.materializing ??= (async () => {
      const { start, end } = partRange(index, file.size);
      const reservation = await this.reserve(end - start);
      try {
        const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK, end - start));
        for (let offset = start; offset < end; offset += buffer.length) {
          const piece = buffer.subarray(0, Math.min(buffer.length, end - offset));
          await this.readBase(file, piece, offset);
          await file.data.write(piece, 0, piece.length, offset);
        }
      } catch (err) {
        reservation.release();
        throw err;
      }
      reservation.commit(end - start);
      file.heldBytes += end - start;
      part.local = true;
      this.persist(file);
    })().finally(() => (part.materializing = undefined));
    return part.materializing;
  }

  private async readBase(file: LocalFile, into: Buffer, position: number): Promise<void> {
    const base = file.base!;
    file.baseHandle ??= this.cache.open(base);
    const handle = await file.baseHandle;
    let done = 0;
    while (done < into.length) {
      const n = await this.cache.read(handle, into.subarray(done), into.length - done, position + done);
      if (n === 0) throw new FsError('EIO', `${base.key}: the stored object is shorter than ${position + into.length} bytes`);
      done += n;
    }
  }

  /**
   * Room for `bytes` more local bytes: from the cache (evicting what nothing uses), else by
   * dropping local parts whose bytes can be had elsewhere, else after part uploads under way
   * make some droppable; ENOSPC when nothing can.
   */
  private async reserve(bytes: number): Promise<Reservation> {
    for (;;) {
      // The local data's own disk must have room too (it may not be the cache's).
      const reservation = this.disk.fits(bytes, 0) ? this.cache.reserveSpace(bytes) : undefined;
      if (reservation) return reservation;
      if (this.dropParts(bytes) > 0) continue;
      // Short of room: the finished parts of appending writers go up now, whatever their size.
      if (this.partUploads.size === 0) for (const file of this.all) this.uploadFinishedParts(file);
      if (this.partUploads.size === 0) throw new FsError('ENOSPC', `no room in the cache for ${formatBytes(bytes)} more of written data`);
      this.partFailure = undefined;
      await Promise.race([...this.partUploads].map((upload) => upload.catch(() => undefined)));
      if (this.partFailure) {
        throw new FsError('ENOSPC', `no room in the cache for ${formatBytes(bytes)} more of written data (uploading to make room failed: ${errorMessage(this.partFailure)})`);
      }
    }
  }

  /** Drops local parts that can be had elsewhere until `bytes` are freed; returns bytes freed. */
  private dropParts(bytes: number): number {
    const punch = this.options.punchHole;
    if (!punch) return 0;
    let freed = 0;
    for (const file of this.all) {
      for (let index = 0; index < file.parts.length && freed < bytes; index++) {
        const part = file.parts[index];
        if (!droppable(part)) continue;
        const { start, end } = partRange(index, file.size);
        part.local = false;
        // The record says where the part's bytes are, on disk, before they leave the local file.
        this.persist(file, true);
        punch(file.data.fd, start, end - start);
        file.heldBytes -= end - start;
        this.cache.unstage(end - start);
        freed += end - start;
        debug('dropped part %d of %s (%s): %s', index + 1, file.key, formatBytes(end - start), part.matchesBase ? 'in the store' : 'uploaded');
      }
    }
    return freed;
  }

  // --- uploads ---

  /** Uploads the finished parts behind a sequential writer, so its file streams to the store. */
  private uploadFinishedParts(file: LocalFile): void {
    for (let index = 0; index < (file.appendingAt ?? 0) && this.partUploads.size < PARTS_IN_FLIGHT; index++) {
      const part = file.parts[index];
      if (!part.local || sentIsCurrent(part) || part.busy > 0 || this.sending.has(part)) continue;
      this.sending.add(part);
      const upload = this.sendPart(file, index, file.key)
        .catch((err: unknown) => {
          this.partFailure = err;
          debug('part %d of %s waits for the next upload: %s', index + 1, file.key, errorMessage(err));
        })
        .finally(() => this.sending.delete(part));
      void this.track(upload);
    }
  }

  private track(upload: Promise<void>): Promise<void> {
    const tracked = upload.finally(() => this.partUploads.delete(tracked));
    this.partUploads.add(tracked);
    return tracked;
  }

  /** Uploads part `index` into the file's multipart upload under `key`. */
  private async sendPart(file: LocalFile, index: number, key: string): Promise<void> {
    const part = file.parts[index];
    const session = await this.sessionOf(file, key);
    const { start, end } = partRange(index, file.size);
    const current = () => file.session === session && file.parts[index] === part && partRange(index, file.size).end === end;
    if (part.matchesBase && !part.local) {
      const generation = part.generation;
      const base = file.base!;
      const etag = await this.store.uploadPartCopy(session.key, session.uploadId, index + 1, { key: base.key, etag: base.etag }, start, end);
      if (current() && part.generation === generation && part.matchesBase) part.sent = { etag, generation };
      return;
    }
    if (!part.local) return; // sent and dropped: current by construction
    // Pinned, its bytes stay in the local file until read; the generation read is the one sent.
    part.busy++;
    const buffer = await this.uploadBodies.take(end - start);
    try {
      const generation = part.generation;
      const body = buffer.subarray(0, end - start);
      try {
        await readFully(file, body, start);
      } finally {
        part.busy--;
      }
      const etag = await this.store.uploadPart(session.key, session.uploadId, index + 1, body);
      if (current()) part.sent = { etag, generation };
    } finally {
      this.uploadBodies.give(buffer);
    }
  }

  /** The file's multipart upload under `key`, started on first need. */
  private sessionOf(file: LocalFile, key: string): Promise<MultipartSession> {
    if (file.session?.key === key) return Promise.resolve(file.session);
    let starting = this.sessions.get(file);
    if (!starting) {
      if (file.session) this.abandonSession(file);
      starting = this.store
        .createMultipart(key, this.metadataOf(file))
        .then((uploadId) => {
          file.session = { key, uploadId };
          return file.session;
        })
        .finally(() => this.sessions.delete(file));
      this.sessions.set(file, starting);
    }
    return starting;
  }

  private abandonSession(file: LocalFile): void {
    const session = file.session;
    if (!session) return;
    file.session = undefined;
    for (const part of file.parts) if (part.local || part.matchesBase) part.sent = undefined;
    this.store.abortMultipart(session.key, session.uploadId).catch((err: unknown) => debug('aborting the upload of %s: %s', session.key, errorMessage(err)));
  }

  /** The metadata an upload of `file` carries: its own, with its times. */
  metadataOf(file: LocalFile): Record<string, string> {
    return { ...file.metadata, mtime: formatEpochSeconds(file.mtime), ctime: formatEpochSeconds(file.ctime), atime: formatEpochSeconds(file.atime) };
  }

  /** Waits until no upload of the file is under way (they stop early once it moved or went). */
  private async settleUploads(file: LocalFile): Promise<void> {
    while (file.uploading || this.sessions.has(file)) {
      await Promise.allSettled([file.uploading, this.sessions.get(file)]);
    }
    await Promise.allSettled([...this.partUploads]);
  }

  /** One upload of everything the file holds to `key`: a PUT when small, else a multipart upload. */
  private upload(file: LocalFile, key: string): Promise<void> {
    const run = this.uploadOnce(file, key).finally(() => {
      if (file.uploading === run) file.uploading = undefined;
    });
    file.uploading = run;
    return run;
  }

  private async uploadOnce(file: LocalFile, key: string): Promise<void> {
    const generation = file.generation;
    const size = file.size;
    const cancelled = () => file.failure !== undefined || (key === file.key ? file.unlinked : key !== file.session?.key);
    try {
      let info: ObjectInfo;
      let partGenerations: number[];
      if (size <= SINGLE_PUT_MAX && !file.holdsDroppedParts) {
        partGenerations = file.parts.map((part) => part.generation);
        const buffer = await this.uploadBodies.take(size);
        try {
          const body = buffer.subarray(0, size);
          await this.read(file, body, size, 0);
          if (cancelled() || file.size !== size) throw new UploadCancelled(key);
          this.abandonSession(file);
          info = await this.store.put(key, body, this.metadataOf(file));
        } finally {
          this.uploadBodies.give(buffer);
        }
      } else {
        const session = await this.sessionOf(file, key);
        let next = 0;
        const sender = async () => {
          while (next < file.parts.length) {
            const index = next++;
            if (cancelled()) throw new UploadCancelled(key);
            if (!sentIsCurrent(file.parts[index])) await this.track(this.sendPart(file, index, key));
          }
        };
        await Promise.all(Array.from({ length: PARTS_IN_FLIGHT }, sender));
        if (cancelled() || file.session !== session || file.size !== size) throw new UploadCancelled(key);
        const unsent = file.parts.findIndex((part) => !part.sent);
        if (unsent >= 0) throw new UploadCancelled(key); // changed while it was being sent: the next flush sends it
        partGenerations = file.parts.map((part) => part.sent!.generation);
        info = await this.store.completeMultipart(session.key, session.uploadId, file.parts.map((part) => part.sent!.etag));
        if (file.session === session) file.session = undefined;
      }
      if (info.size !== size) throw new StoreError('Server', `${key}: the store holds ${info.size} bytes of the ${size} uploaded`);
      this.uploaded(file, key, info, generation, partGenerations);
    } catch (err) {
      if (err instanceof UploadCancelled) {
        debug('%s', err.message);
        return;
      }
      file.lastError = errorMessage(err);
      logError('upload of %s failed: %s', key, file.lastError);
      file.retry = { at: this.now() + Math.max(RETRY_FIRST_MS, file.retry.delayMs), delayMs: Math.min(RETRY_MAX_MS, Math.max(RETRY_FIRST_MS, file.retry.delayMs * 2)) };
      this.persist(file);
      throw err;
    }
  }

  /** The store holds the file's content of `generation` as `info`, under `key`. */
  private uploaded(file: LocalFile, key: string, info: ObjectInfo, generation: number, partGenerations: number[]): void {
    const base = { bucket: this.options.bucket, key, etag: info.etag, size: info.size, mtime: info.mtime.getTime() };
    if (key !== file.key && !file.unlinked) {
      // Published under the old name on the way to a rename, which copies it to the new one.
      this.rebase(file, base, partGenerations);
      return;
    }
    this.rebase(file, base, partGenerations);
    if (file.generation === generation) file.uploadedGeneration = generation;
    file.lastError = undefined;
    file.retry = { at: 0, delayMs: 0 };
    this.persist(file);
    debug('uploaded %s (%s, %s)', key, formatBytes(info.size), info.etag);
    this.options.stored(file, info);
  }

  /** The file's parts now match `base` where their bytes did not change since they were read. */
  private rebase(file: LocalFile, base: ObjectVersion, partGenerations?: number[]): void {
    this.releaseBase(file);
    file.base = base;
    file.parts.forEach((part, index) => {
      part.matchesBase = partGenerations ? part.generation === partGenerations[index] && index < partCount(base.size) : part.matchesBase;
      part.sent = undefined;
    });
  }

  private forgetBase(file: LocalFile): void {
    this.releaseBase(file);
    file.base = undefined;
    for (const part of file.parts) part.matchesBase = false;
  }

  private releaseBase(file: LocalFile): void {
    const handle = file.baseHandle;
    file.baseHandle = undefined;
    handle?.then((h) => this.cache.release(h), () => undefined);
  }

  // --- the end of a file's life here ---

  /** Once no handle has the file: upload it if dirty, then hand it to the cache, or drop it. */
  idle(file: LocalFile): void {
    if (file.users > 0 || !this.all.has(file)) return;
    if (file.unlinked || file.failure) return this.drop(file, file.failure ? 'its write failed' : 'deleted');
    if (file.dirty) {
      // Background: a release has no one to report to; the retry timer keeps at it.
      this.flush(file).then(
        () => this.idle(file),
        (err: unknown) => debug('%s stays pending: %s', file.key, errorMessage(err)),
      );
      return;
    }
    if (file.uploading || this.sessions.has(file)) return;
    this.handOver(file);
  }

  /** A clean file nobody has open becomes the staged entry of its version, in one step. */
  private handOver(file: LocalFile): void {
    const version = file.base;
    const local = file.parts.some((part) => part.local);
    this.forget(file);
    const adopted = version !== undefined && local && this.cache.adoptFile(version, this.records.dataPath(file.id), (start, end) => file.isLocal(start, end));
    this.records.remove(file.id);
    debug('%s %s (%s)', file.key, adopted ? 'is now staged' : 'is in the store; its local copy goes', version?.etag);
  }

  private drop(file: LocalFile, why: string): void {
    if (file.failure && this.byPath.get(file.path) === file) this.options.abandoned(file);
    this.abandonSession(file);
    this.forget(file);
    this.records.remove(file.id);
    debug('dropping the local data of %s: %s', file.key, why);
  }

  private forget(file: LocalFile): void {
    this.all.delete(file);
    if (this.byPath.get(file.path) === file) this.byPath.delete(file.path);
    this.releaseBase(file);
    this.cache.unstage(file.heldBytes);
    file.heldBytes = 0;
    file.data.close().catch((err: unknown) => debug('closing the data of %s: %s', file.key, errorMessage(err)));
  }

  /** Runs a change; a failure of it marks the file failed (never published) and is rethrown. */
  private async failing(file: LocalFile, change: () => Promise<void>): Promise<void> {
    if (file.failure) throw file.failure;
    try {
      await change();
    } catch (err) {
      if (!(err instanceof FsError && err.code === 'EFBIG')) {
        file.failure = err instanceof Error ? err : new Error(String(err));
        this.abandonSession(file);
        this.persist(file);
        warn('%s will not be uploaded: a write failed: %s', file.key, errorMessage(err));
      }
      throw err;
    }
  }

  private retryIdle(): void {
    for (const file of this.all) {
      if (file.users > 0 || !file.dirty || file.unlinked || file.failure || file.uploading || file.retry.at > this.now()) continue;
      this.flush(file).then(
        () => this.idle(file),
        () => undefined, // logged by the attempt; tried again on a later tick
      );
    }
  }
}

/** Marks a part changed by a write. */
function touch(part: { generation: number; matchesBase: boolean }): void {
  part.generation++;
  part.matchesBase = false;
}

function partLength(index: number, size: number): number {
  const { start, end } = partRange(index, size);
  return Math.max(0, end - start);
}

async function readFully(file: LocalFile, into: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await file.data.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) {
      into.fill(0, done); // a sparse tail the local file does not cover yet
      return;
    }
    done += bytesRead;
  }
}

/** Moves a file, copying when it crosses file systems. */
function moveFile(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    copyFileSync(from, to);
  }
}
