/**
 * Loading the C addon (built by binding.gyp into build/Release): the native FUSE engine, and
 * the few system calls Node lacks (punching holes in files).
 */
import { join } from 'node:path';

export type Session = { readonly __session: unique symbol };

export const EVENT_REQUEST = 1;
export const EVENT_HIT = 2;
export const EVENT_INIT = 3;
export const EVENT_CLOSED = 4;

export type EventHandler = (kind: number, a: Buffer | number, b?: number, c?: number) => void;

export interface NegotiatedInfo {
  protocolMinor: number;
  passthrough: boolean;
  maxWrite: number;
  maxReadahead: number;
  threads: number;
}

/** What the request threads served on their own. */
export interface SessionStats {
  fastReads: number;
  fastReadBytes: number;
}

export type FetchPool = { readonly __fetchPool: unique symbol };
export type FetchTransfer = { readonly __fetchTransfer: unique symbol };

export const FETCH_EVENT_HEAD = 1;
export const FETCH_EVENT_PROGRESS = 2;
export const FETCH_EVENT_DONE = 3;

/** How a transfer ended (native/fetch.h `fetch_outcome`). */
export enum FetchOutcome {
  Ok = 0,
  Http = 1,
  Network = 2,
  Write = 3,
  Refused = 4,
  Cancelled = 5,
  Short = 6,
  Overrun = 7,
}

/** One event of a transfer; the head is given with HEAD and DONE, the outcome with DONE. */
export interface FetchEvent {
  kind: number;
  id: number;
  /** Bytes before this offset are on disk. */
  written: number;
  /** The CRC32Cs of the blocks completed since the last event, from block `firstDone` on. */
  firstDone: number;
  crcs?: Uint32Array;
  status?: number;
  contentRange?: string;
  contentLength?: string;
  etag?: string;
  outcome?: FetchOutcome;
  /** The CURLcode (Network) or errno (Write). */
  code?: number;
  /** libcurl's message (Network), the start of an error answer's body (Http), or a HEAD's header lines. */
  text?: string;
  /** The CRC of the block holding `written`, over its bytes before `written`: a resumed transfer goes on from it. */
  crc?: number;
  crcFilled?: number;
}

export interface FetchTransferSpec {
  id: number;
  url: string;
  /** "Name: value" lines. */
  headers: string[];
  /** The file the body goes into, at the object's offsets (the pool writes through a dup of it). */
  fd: number;
  start: number;
  end: number;
  blockSize: number;
  crc: number;
  crcFilled: number;
}

export interface NativeAddon {
  mount(options: { mountpoint: string; source: string; allowOther: boolean; readOnly: boolean }): number;
  open(fd: number, options: { threads: number; passthrough: boolean }, onEvent: EventHandler): Session;
  reply(session: Session, unique: bigint, errno: number, data?: Buffer | Buffer[]): number;
  /** Frees the memory of a request's buffer (from an EVENT_REQUEST) now; views of it see no bytes after. */
  releaseRequest(request: Buffer): void;
  registerHandle(session: Session, fh: number, fd: number, bitmap: Uint8Array, blockSize: number, size: number): void;
  unregisterHandle(session: Session, fh: number): void;
  backingOpen(session: Session, fd: number): number;
  backingClose(session: Session, backingId: number): void;
  info(session: Session): NegotiatedInfo;
  stats(session: Session): SessionStats;
  /** Sends one sd_notify datagram to `socketPath` ('@' starts an abstract name); 0 or an errno. */
  notify(socketPath: string, message: string): number;
  /** Points standard error at `fd` (dup2), so output written to fd 2 follows a reopened log. */
  redirectStderr(fd: number): void;
  close(session: Session): void;
  /** Frees the disk blocks of [offset, offset + length) of an open file; the size stays. */
  punchHole(fd: number, offset: number, length: number): void;
  /** The CRC32C of `bytes`, continuing from `crc` (hardware-assisted where the CPU can). */
  crc32c(bytes: Uint8Array, crc?: number): number;
  /** A pool of threads running ranged GETs into files with libcurl (native/fetch.h). */
  fetchOpen(options: { threads: number; connectTimeoutMs: number; idleTimeoutMs: number; caFile?: string }, onEvent: (event: FetchEvent) => void): FetchPool;
  fetchStart(pool: FetchPool, spec: FetchTransferSpec): FetchTransfer;
  /** A HEAD: only a DONE event follows, its `text` the response's header lines. */
  fetchHead(pool: FetchPool, spec: Pick<FetchTransferSpec, 'id' | 'url' | 'headers'>): FetchTransfer;
  /** Lets a transfer whose HEAD was posted write its body, or refuses it. */
  fetchVerdict(transfer: FetchTransfer, accept: boolean): void;
  /** Asks for a PROGRESS event once `offset` is written; returns the bytes written so far. */
  fetchWatch(transfer: FetchTransfer, offset: number): number;
  fetchCancel(transfer: FetchTransfer): void;
  /** Cancels every transfer and stops the threads. */
  fetchClose(pool: FetchPool): void;
}

/** STAGEFS_NATIVE_ADDON loads another build, such as the sanitizer build of native/test. */
export const ADDON_PATH =
  process.env.STAGEFS_NATIVE_ADDON ?? join(__dirname, '..', '..', '..', 'build', 'Release', 'stagefs_native.node');

let loaded: { addon: NativeAddon } | { error: string } | undefined;

/** The addon, or why it cannot be used here. */
export function loadNativeAddon(): { addon: NativeAddon } | { error: string } {
  if (!loaded) {
    try {
      loaded = { addon: require(ADDON_PATH) as NativeAddon };
    } catch (err) {
      loaded = { error: (err as Error).message.split('\n')[0] };
    }
  }
  return loaded;
}
