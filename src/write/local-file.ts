/**
 * One file being written through the mount: where each part of its content is, what the store
 * holds of it, and who has it open. State only; the write path does the I/O.
 */
import type { FileHandle } from 'node:fs/promises';
import type { CacheHandle } from '../cache/staging-cache';
import type { ObjectVersion } from '../cache/staged-object';
import { Mutex } from '../util/mutex';
import { partCount, partRange } from './part-layout';
import type { PartPlace, PendingRecord } from './pending-records';

/** One part of the file (see part-layout): where its current bytes can be read. */
export interface Part {
  /** The bytes are in the local data file. */
  local: boolean;
  /** The bytes equal the base object's at the same offsets (so they can be read or copied from it). */
  matchesBase: boolean;
  /** Changes so far; an upload carrying generation g is current while no change came after. */
  generation: number;
  /** Sent as a part of the multipart upload under way, with the bytes of `generation`. */
  sent?: { etag: string; generation: number };
  /** Reads and uploads of the local bytes under way: they must stay until these end. */
  busy: number;
  /** The bytes being copied in from the base object. */
  materializing?: Promise<void>;
}

export interface MultipartSession {
  key: string;
  uploadId: string;
}

export function newPart(): Part {
  return { local: true, matchesBase: false, generation: 1, busy: 0 };
}

export function sentIsCurrent(part: Part): boolean {
  return part.sent !== undefined && part.sent.generation === part.generation;
}

/** Whether the part's local bytes can go: the same bytes can be had from the base or the upload. */
export function droppable(part: Part): boolean {
  return part.local && part.busy === 0 && part.materializing === undefined && (part.matchesBase || sentIsCurrent(part));
}

export class LocalFile {
  path: string;
  key: string;
  size: number;
  metadata: Record<string, string>;
  /** Last change of content (or the time the user set), ms since the epoch. */
  mtime: number;
  /** Last change of content or metadata, ms since the epoch. */
  ctime: number;
  /** The access time the user set (reads do not move it, as with noatime), ms since the epoch. */
  atime: number;
  parts: Part[];
  /** The object version the clean parts match: what the store held when the file was opened or last uploaded. */
  base: ObjectVersion | undefined;
  /** A cache handle on `base`, opened when its bytes are first needed. */
  baseHandle: Promise<CacheHandle> | undefined;
  session: MultipartSession | undefined;
  /** Changes of content or metadata so far, and the latest one the store has. */
  generation: number;
  uploadedGeneration: number;
  /** Handles open on the file through the mount. */
  users = 0;
  unlinked: boolean;
  /** A write that failed: the file is never published, and close reports this. */
  failure: Error | undefined;
  lastError: string | undefined;
  /** The upload under way (one at a time). */
  uploading: Promise<void> | undefined;
  /** Bytes of local parts counted against the cache size. */
  heldBytes = 0;
  retry = { at: 0, delayMs: 0 };
  /** The part an appending writer is in; the parts before it are finished. */
  appendingAt: number | undefined;
  /** Writes and size changes, one at a time (as a local file system serialises them per inode). */
  readonly changes = new Mutex();

  /** The inode number the kernel knows the file by while it is written (the mount's to choose). */
  ino: number | undefined;

  constructor(
    readonly id: string,
    /** The open local data file (sparse: parts not local are holes). */
    readonly data: FileHandle,
    init: {
      path: string;
      key: string;
      size: number;
      metadata: Record<string, string>;
      mtime: number;
      ctime?: number;
      atime?: number;
      base?: ObjectVersion;
      parts?: Part[];
      dirty: boolean;
      session?: MultipartSession;
      unlinked?: boolean;
    },
  ) {
    this.path = init.path;
    this.key = init.key;
    this.size = init.size;
    this.metadata = init.metadata;
    this.mtime = init.mtime;
    this.ctime = init.ctime ?? init.mtime;
    this.atime = init.atime ?? init.mtime;
    this.base = init.base;
    this.session = init.session;
    this.parts = init.parts ?? Array.from({ length: partCount(init.size) }, newPart);
    this.generation = init.dirty ? 1 : 0;
    this.uploadedGeneration = 0;
    this.unlinked = init.unlinked ?? false;
  }

  get dirty(): boolean {
    return this.generation !== this.uploadedGeneration;
  }

  /** Some part is read from the base object rather than the local file. */
  get relyingOnBase(): boolean {
    return this.parts.some((part) => !part.local && part.matchesBase);
  }

  /** Some part's bytes exist only as a sent part of the multipart upload under way. */
  get holdsDroppedParts(): boolean {
    return this.parts.some((part) => !part.local && !part.matchesBase);
  }

  /** Bytes the local parts of a file of `size` bytes hold. */
  localBytes(size = this.size): number {
    let bytes = 0;
    for (let index = 0; index < partCount(size); index++) {
      const part = this.parts[index];
      if (part && part.local) {
        const { start, end } = partRange(index, size);
        bytes += end - start;
      }
    }
    return bytes;
  }

  /** Whether [start, end) lies wholly in local parts. */
  isLocal(start: number, end: number): boolean {
    for (let index = 0; index < this.parts.length; index++) {
      const range = partRange(index, this.size);
      if (range.end > start && range.start < end && !this.parts[index].local) return false;
    }
    return true;
  }

  /** Records a change of content or metadata; returns whether the file was clean before it. */
  changed(now: number, what: 'content' | 'metadata'): boolean {
    const wasClean = !this.dirty;
    this.generation++;
    if (what === 'content') this.mtime = now;
    this.ctime = now;
    return wasClean;
  }

  toRecord(): PendingRecord {
    const sent: Record<number, string> = {};
    const places = this.parts.map((part, index): PartPlace => {
      if (part.local) return 'L';
      if (part.matchesBase) return 'B';
      sent[index] = part.sent!.etag;
      return 'S';
    });
    return {
      id: this.id,
      key: this.key,
      size: this.size,
      mtime: this.mtime,
      ctime: this.ctime,
      atime: this.atime,
      metadata: this.metadata,
      dirty: this.dirty,
      base: this.base && { key: this.base.key, etag: this.base.etag, size: this.base.size, mtime: this.base.mtime },
      parts: places.join('').replace(/L+$/, ''),
      session: this.session && { ...this.session, sent },
      unlinked: this.unlinked || undefined,
      failed: this.failure?.message,
      lastError: this.lastError,
    };
  }
}

/** The parts a record describes for a file of `size` bytes: its letters, then local parts. */
export function partsOfRecord(record: PendingRecord, size: number): Part[] {
  return Array.from({ length: partCount(size) }, (_, index): Part => {
    const place = record.parts[index] ?? 'L';
    if (place === 'B') return { local: false, matchesBase: true, generation: 0, busy: 0 };
    if (place === 'S') return { local: false, matchesBase: false, generation: 0, sent: { etag: record.session!.sent[index], generation: 0 }, busy: 0 };
    // Local bytes may have changed after the record was written: they are uploaded again.
    return newPart();
  });
}
