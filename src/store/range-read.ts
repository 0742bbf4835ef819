/**
 * Ranged reads that are checked and resumed: the read path's one retry policy.
 *
 * Ranged GETs do not go through the SDK (see range-client.ts): every retry of one is decided
 * here. A request that fails before it has a response (connection errors, timeouts, 5xx,
 * SlowDown) is sent again; a response that is not the one asked for (its status, Content-Range,
 * Content-Length or ETag differ) is never data; a body that breaks off or ends short is resumed
 * with a new GET from the first byte not yet delivered, with the same If-Match. The caller gets
 * exactly the bytes asked for, in order, once each, or an error.
 */
import { StoreError } from '../errors';
import { sleep } from '../util/deferred';

/** Failed attempts in a row, without a byte delivered between them, before a read gives up. */
export const READ_ATTEMPTS = 4;
/** Failed attempts of one read in all, however much each delivered. */
const MAX_FAILURES = 16;
const RETRY_BASE_MS = 100;

export interface RangeResponse {
  status: number | undefined;
  contentRange: string | undefined;
  contentLength: number | undefined;
  etag: string | undefined;
}

/** Why a response to a GET of [start, end) at `etag` is not that range; undefined when it is. */
export function rangeResponseProblem(response: RangeResponse, start: number, end: number, etag: string): string | undefined {
  if (response.status !== 206) return `status ${response.status ?? 'missing'}, not 206 Partial Content`;
  const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.contentRange ?? '');
  if (!range || Number(range[1]) !== start || Number(range[2]) !== end - 1) {
    return `Content-Range ${response.contentRange ?? 'missing'}, asked for bytes ${start}-${end - 1}`;
  }
  if (range[3] !== '*' && Number(range[3]) < end) return `Content-Range ${response.contentRange} ends past the object`;
  if (response.contentLength !== end - start) return `Content-Length ${response.contentLength ?? 'missing'}, asked for ${end - start}`;
  if (response.etag !== etag) return `ETag ${response.etag ?? 'missing'}, asked for ${etag}`;
  return undefined;
}

/** A response body the reader may drop unread (a response that failed its checks, or an early stop). */
export type RangeBody = AsyncIterable<Uint8Array> & { destroy?: () => void };

/**
 * Opens a GET of [start, end), its response checked: throws StoreError 'BadResponse' for a
 * response that is not that range, other StoreErrors for failed requests.
 */
export type OpenRange = (start: number, end: number) => Promise<RangeBody>;

/** Whether another GET may succeed where this attempt failed. */
function isRetryable(err: unknown, signal: AbortSignal | undefined): boolean {
  if (signal?.aborted) return false;
  if (err instanceof StoreError) return err.kind === 'BadResponse' || isTransient(err);
  // Anything a body throws while it streams (reset, premature close, socket timeout).
  return true;
}

/** A failure of the request rather than of what it asked for: the connection, a timeout, a 5xx or throttling answer. */
function isTransient(err: StoreError): boolean {
  if (err.kind === 'Unreachable' || err.kind === 'Timeout') return true;
  if (err.kind !== 'Server') return false;
  const status = (err.cause as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  return status === undefined || status >= 500 || status === 429;
}

/**
 * The failed attempts of one ranged read, and whether it goes on after each: the retry policy
 * that every way of reading a range shares.
 */
export class ResumePolicy {
  private failuresInARow = 0;
  private failures = 0;

  constructor(
    private readonly what: string,
    private readonly start: number,
    private readonly signal?: AbortSignal,
  ) {}

  /** An attempt from `from` failed with bytes before `delivered` delivered: waits before the next one, or throws. */
  async failed(err: unknown, from: number, delivered: number): Promise<void> {
    this.failures++;
    this.failuresInARow = delivered > from ? 1 : this.failuresInARow + 1;
    if (!isRetryable(err, this.signal) || this.failuresInARow >= READ_ATTEMPTS || this.failures >= MAX_FAILURES) {
      throw asStoreError(err, this.what, delivered - this.start);
    }
    await sleep(RETRY_BASE_MS * 4 ** (this.failuresInARow - 1));
  }
}

/** The bytes [start, end) from responses of `open`, resumed where a broken one stopped. */
export async function* resumingRange(open: OpenRange, start: number, end: number, what: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const policy = new ResumePolicy(what, start, signal);
  let delivered = start;
  while (delivered < end) {
    const from = delivered;
    let body: RangeBody | undefined;
    try {
      body = await open(from, end);
      for await (const chunk of body) {
        if (delivered + chunk.length > end) throw new StoreError('BadResponse', `${what}: the store sent more bytes than asked`);
        delivered += chunk.length;
        yield chunk;
      }
      if (delivered < end) throw new StoreError('BadResponse', `${what}: the body ended after ${delivered - from} of ${end - from} bytes`);
    } catch (err) {
      body?.destroy?.();
      await policy.failed(err, from, delivered);
    } finally {
      // The reader stopped early (or failed): the connection goes, unread.
      if (delivered < end) body?.destroy?.();
    }
  }
}

function asStoreError(err: unknown, what: string, delivered: number): StoreError {
  if (err instanceof StoreError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new StoreError('Server', `${what}: the body broke off after ${delivered} bytes (${message})`, err);
}
