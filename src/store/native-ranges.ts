/**
 * Ranged GETs written straight into files by the addon's fetch pool (native/fetch.h): libcurl
 * on threads of its own parses HTTP, writes each body with pwrite and computes each block's
 * CRC32C, so the JavaScript thread handles a few events per GET instead of every chunk of it.
 * What is decided stays in JavaScript: each request is signed by RangeClient, each response's
 * head is judged (rangeResponseProblem) before a byte of its body is written, and the store
 * classifies and retries every failure as it does for any other GET.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { constants } from 'node:os';
import createDebug from 'debug';
import { StoreError } from '../errors';
import { FETCH_EVENT_DONE, FETCH_EVENT_HEAD, FetchOutcome, loadNativeAddon, type FetchEvent, type FetchPool, type FetchTransfer, type FetchTransferSpec, type NativeAddon } from '../native/addon';
import { Deferred } from '../util/deferred';
import { httpError, type SignedRequest } from './range-client';
import type { RangeResponse } from './range-read';

const debug = createDebug('stagefs:fetch');

/** Transfers at once before more queue in C: above what the cache ever runs (demand, readahead and prefetch GETs). */
const POOL_THREADS = 32;

/** libcurl's codes (CURLcode) for failures before or during a response, as the Node codes the store classifies. */
const CURL_CODES: Record<number, string> = {
  5: 'ENOTFOUND', // couldn't resolve proxy
  6: 'ENOTFOUND', // couldn't resolve host
  7: 'ECONNREFUSED', // couldn't connect
  18: 'ECONNRESET', // partial file
  35: 'ECONNRESET', // TLS handshake failed
  52: 'ECONNRESET', // got nothing
  55: 'EPIPE', // send error
  56: 'ECONNRESET', // receive error
  60: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', // peer certificate cannot be verified
};
const CURLE_OPERATION_TIMEDOUT = 28;

export interface NativeRangesOptions {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  caFile: string | undefined;
}

/**
 * One GET into a file: bytes [start, end) of the object at the same offsets of `fd`, going on
 * from `crc`, the CRC so far of the block holding `start` over its `crcFilled` bytes before it.
 */
export interface AttemptSpec extends Omit<FetchTransferSpec, 'id' | 'url' | 'headers'> {
  signed: SignedRequest;
  /** Why a response's head is not the range asked for; undefined when it is. */
  judge(head: RangeResponse): string | undefined;
  /** Bytes before `written` are on disk; `crcs` are those of the blocks from `firstBlock` on completed meanwhile. */
  progress(written: number, firstBlock: number, crcs: Uint32Array | undefined): void;
}

/** Where an attempt stopped: a resumed one goes on from `written` with the CRC so far. */
export interface AttemptEnd {
  written: number;
  crc: number;
  crcFilled: number;
  /** Undefined when every byte was written; the failure otherwise. */
  error: unknown;
  /** Whether the failure is the cache disk's (writing the file), not the store's. */
  localFailure: boolean;
}

export class NativeAttempt {
  private readonly accepted = new Deferred();
  private readonly ended = new Deferred<AttemptEnd>();
  private problem: string | undefined;

  constructor(
    private readonly addon: NativeAddon,
    private readonly transfer: FetchTransfer,
    private readonly spec: AttemptSpec,
  ) {}

  /** Settles once the response's head was accepted, or rejects with the failure that came first. */
  get head(): Promise<void> {
    return this.accepted.promise;
  }

  /** Settles when the transfer is over, however it ended. */
  get end(): Promise<AttemptEnd> {
    return this.ended.promise;
  }

  /** Bytes before `offset` are wanted: progress is told once they are written. Returns the bytes written so far. */
  watch(offset: number): number {
    return this.addon.fetchWatch(this.transfer, offset);
  }

  cancel(): void {
    this.addon.fetchCancel(this.transfer);
  }

  handle(event: FetchEvent): void {
    if (event.kind === FETCH_EVENT_HEAD) {
      this.problem = this.spec.judge(headOf(event));
      this.addon.fetchVerdict(this.transfer, this.problem === undefined);
      if (this.problem === undefined) this.accepted.resolve();
      return;
    }
    if (event.crcs || event.written > this.spec.start) this.report(event);
    if (event.kind !== FETCH_EVENT_DONE) return;
    const error = this.failure(event);
    if (error) this.accepted.reject(error);
    else this.accepted.resolve();
    this.ended.resolve({ written: event.written, crc: event.crc ?? 0, crcFilled: event.crcFilled ?? 0, error, localFailure: event.outcome === FetchOutcome.Write });
  }

  private report(event: FetchEvent): void {
    try {
      this.spec.progress(event.written, event.firstDone, event.crcs);
    } catch (err) {
      // The bytes are on disk all the same; blocks not marked staged are fetched again when read.
      debug('recording the progress of a fetch failed: %s', (err as Error).message);
    }
  }

  /** The failure a DONE event reports, as the errors the store's JavaScript GETs would have thrown; undefined for success. */
  private failure(event: FetchEvent): unknown {
    const what = `${event.written - this.spec.start} of ${this.spec.end - this.spec.start} bytes`;
    switch (event.outcome) {
      case FetchOutcome.Ok:
        return undefined;
      case FetchOutcome.Http:
      case FetchOutcome.Network:
      case FetchOutcome.Cancelled:
        return transportFailure(event, event.text ?? '');
      case FetchOutcome.Write: {
        const code = Object.entries(constants.errno).find(([, value]) => value === event.code)?.[0] ?? 'EIO';
        return Object.assign(new Error(`writing the staging file: ${code}`), { code });
      }
      case FetchOutcome.Refused:
        return new StoreError('BadResponse', this.problem ?? 'the response was refused');
      case FetchOutcome.Overrun:
        return new StoreError('BadResponse', 'the store sent more bytes than asked');
      case FetchOutcome.Short: {
        // An empty body never reached the verdict: its head is judged now.
        const problem = event.written === this.spec.start ? this.spec.judge(headOf(event)) : undefined;
        return new StoreError('BadResponse', problem ?? `the body ended after ${what}`);
      }
      default:
        return new StoreError('Server', `the transfer ended in an unknown way (${event.outcome})`);
    }
  }
}

function headOf(event: FetchEvent): RangeResponse {
  return {
    status: event.status,
    contentRange: event.contentRange || undefined,
    contentLength: event.contentLength ? Number(event.contentLength) : undefined,
    etag: event.etag || undefined,
  };
}

function networkError(curlCode: number, message: string): Error {
  if (curlCode === CURLE_OPERATION_TIMEDOUT) return Object.assign(new Error(message), { name: 'TimeoutError' });
  return Object.assign(new Error(message), { code: CURL_CODES[curlCode] ?? `CURLE_${curlCode}` });
}

/**
 * A HEAD's header lines as Node's HTTP client gives them: names in lower case, the values of a
 * repeated name joined with ", " (as node:http joins all but a few).
 */
export function parseHeadLines(text: string): IncomingHttpHeaders {
  const headers: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return headers;
}

/** What a transfer's events go to. */
interface EventSink {
  handle(event: FetchEvent): void;
}

function requestOf(signed: SignedRequest): { url: string; headers: string[] } {
  return {
    url: `${signed.url.protocol}//${signed.url.host}${signed.path}`,
    headers: Object.entries(signed.headers).map(([name, value]) => `${name}: ${value}`),
  };
}

/** An error answer (its body `errorBody`), a failed connection or a cancel, as the JavaScript client's errors. */
function transportFailure(event: FetchEvent, errorBody: string): Error {
  if (event.outcome === FetchOutcome.Http) return httpError(event.status ?? 0, errorBody);
  if (event.outcome === FetchOutcome.Network) return networkError(event.code ?? 0, event.text ?? '');
  return Object.assign(new Error('the transfer was cancelled'), { name: 'AbortError' });
}

/** Why a HEAD's DONE is no answer; an error answer has no body (HEAD has none). */
function headFailure(event: FetchEvent): Error {
  switch (event.outcome) {
    case FetchOutcome.Http:
    case FetchOutcome.Network:
    case FetchOutcome.Cancelled:
      return transportFailure(event, '');
    case FetchOutcome.Overrun:
      return new StoreError('BadResponse', 'the response head is too large');
    default:
      return new StoreError('Server', `the HEAD ended in an unknown way (${event.outcome})`);
  }
}

/** The addon's fetch pool: transfers started, and their events dispatched to them. */
export class NativeRanges {
  private readonly attempts = new Map<number, EventSink>();
  private nextId = 1;
  private pool: FetchPool | undefined;
  private opened = false;
  private readonly closing = new AbortController();

  /** Opens the pool on the first attempt: a store that never fetches starts no threads. */
  private constructor(
    private readonly addon: NativeAddon,
    private readonly options: NativeRangesOptions,
  ) {}

  /** The pool, or undefined when the addon is missing or was built without it. */
  static create(options: NativeRangesOptions): NativeRanges | undefined {
    const loaded = loadNativeAddon();
    if ('error' in loaded) {
      debug('ranged GETs go through JavaScript: the native addon is not available (%s)', loaded.error);
      return undefined;
    }
    if (typeof loaded.addon.fetchOpen !== 'function') return undefined;
    return new NativeRanges(loaded.addon, options);
  }

  /** Aborted once the pool closes: nothing started on it is retried then. */
  get closed(): AbortSignal {
    return this.closing.signal;
  }

  start(spec: AttemptSpec): NativeAttempt {
    const pool = this.openPool();
    const request = { id: this.nextId++, ...requestOf(spec.signed) };
    const transfer = this.addon.fetchStart(pool, { ...request, fd: spec.fd, start: spec.start, end: spec.end, blockSize: spec.blockSize, crc: spec.crc, crcFilled: spec.crcFilled });
    const attempt = new NativeAttempt(this.addon, transfer, spec);
    this.attempts.set(request.id, attempt);
    void attempt.end.finally(() => this.attempts.delete(request.id));
    return attempt;
  }

  /**
   * The response headers of a signed HEAD, sent from a pool thread's warm connection; an error
   * status is thrown as the store's error answers are, without a body (HEAD has none).
   */
  head(signed: SignedRequest): Promise<IncomingHttpHeaders> {
    const pool = this.openPool();
    const request = { id: this.nextId++, ...requestOf(signed) };
    const done = new Deferred<IncomingHttpHeaders>();
    this.attempts.set(request.id, {
      handle: (event) => {
        if (event.kind !== FETCH_EVENT_DONE) return;
        this.attempts.delete(request.id);
        if (event.outcome === FetchOutcome.Ok) done.resolve(parseHeadLines(event.text ?? ''));
        else done.reject(headFailure(event));
      },
    });
    try {
      this.addon.fetchHead(pool, request);
    } catch (err) {
      this.attempts.delete(request.id);
      throw err;
    }
    return done.promise;
  }

  private openPool(): FetchPool {
    if (!this.opened) {
      this.opened = true;
      const { connectTimeoutMs, idleTimeoutMs, caFile } = this.options;
      this.pool = this.addon.fetchOpen({ threads: POOL_THREADS, connectTimeoutMs, idleTimeoutMs, caFile }, (event) => this.dispatch(event));
    }
    if (!this.pool) throw Object.assign(new Error('the fetch pool is closed'), { name: 'AbortError' });
    return this.pool;
  }

  /** Cancels every transfer and stops the pool's threads. */
  close(): void {
    this.opened = true;
    this.closing.abort();
    if (!this.pool) return;
    this.addon.fetchClose(this.pool);
    this.pool = undefined;
  }

  private dispatch(event: FetchEvent): void {
    this.attempts.get(event.id)?.handle(event);
  }
}
