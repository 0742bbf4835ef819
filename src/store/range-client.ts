/**
 * The read path's requests without the SDK's middleware - ranged GETs for data, HEADs for
 * lookups: a request signed with SigV4 (request-signer.ts) on a keep-alive node:http(s)
 * agent, a body handed on as the socket delivers it. It costs a fraction of an SDK request's CPU
 * and latency on the JavaScript thread, which cold reads and every lookup wait on. Everything
 * else stays with the SDK client this is made from: its credentials provider (the whole AWS
 * chain, expiring credentials refreshed), its region and its endpoint rules. It neither checks
 * nor retries: range-read.ts decides both.
 */
import { request as httpRequest, type Agent as HttpAgent, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import type { S3Client } from '@aws-sdk/client-s3';
import type { RangeBody, RangeResponse } from './range-read';
import { RequestSigner } from './request-signer';

/** Bytes of an error response's body read for its code and message. */
const MAX_ERROR_BODY = 64 * 1024;

export interface RangeClientOptions {
  bucket: string;
  /** The configured endpoint, if any; AWS's own otherwise. */
  endpoint: string | undefined;
  forcePathStyle: boolean | undefined;
  httpAgent: HttpAgent;
  httpsAgent: HttpsAgent;
  /** Socket inactivity before a request or its body is given up. */
  idleTimeoutMs: number;
}

/** A GET's response: its head, for range-read's checks, and its body. */
export interface RangeResult extends RangeResponse {
  body: RangeBody;
}

/** An error answer of the store, shaped as the SDK's errors are so the store classifies both alike. */
export class StoreHttpError extends Error {
  readonly $metadata: { httpStatusCode: number };

  constructor(status: number, code: string | undefined, message: string) {
    super(message);
    this.name = code ?? `HTTP${status}`;
    this.$metadata = { httpStatusCode: status };
  }
}

export interface SignedRequest {
  /** The bucket's endpoint; `path` is the object's path on it. */
  url: URL;
  path: string;
  headers: Record<string, string>;
}

interface Target {
  url: URL;
  signer: RequestSigner;
}

export class RangeClient {
  private target: Promise<Target> | undefined;

  constructor(
    private readonly client: S3Client,
    private readonly options: RangeClientOptions,
  ) {}

  /** GETs [start, end) of `key` if it still has `etag`; any answer but an error status is returned for checking. */
  async get(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<RangeResult> {
    const { url, path, headers } = await this.signedGet(key, start, end, etag);
    const response = await this.send('GET', url, path, headers, signal);
    const status = response.statusCode ?? 0;
    if (status >= 300) throw httpError(status, await errorText(response));
    const length = response.headers['content-length'];
    return {
      status,
      contentRange: response.headers['content-range'],
      contentLength: length === undefined ? undefined : Number(length),
      etag: response.headers.etag,
      body: response,
    };
  }

  /**
   * The response headers of a HEAD of `key` (with its checksums when `withChecksums`); an error
   * status is thrown as the store's error answers are, without a body (HEAD has none).
   */
  async head(key: string, withChecksums: boolean): Promise<IncomingHttpHeaders> {
    const { url, path, headers } = await this.signedHead(key, withChecksums);
    const response = await this.send('HEAD', url, path, headers, undefined);
    // Nothing follows a HEAD's head: consuming it hands the socket back to the agent.
    response.resume();
    const status = response.statusCode ?? 0;
    if (status >= 300) throw httpError(status, '');
    return response.headers;
  }

  /** The URL and signed headers of a HEAD of `key` (asking for its checksums when `withChecksums`), for any HTTP client to send. */
  signedHead(key: string, withChecksums: boolean): Promise<SignedRequest> {
    return this.signed('HEAD', key, withChecksums ? { 'x-amz-checksum-mode': 'ENABLED' } : {});
  }

  /** The URL and signed headers of a GET of [start, end) of `key` at `etag`, for any HTTP client to send. */
  signedGet(key: string, start: number, end: number, etag: string): Promise<SignedRequest> {
    return this.signed('GET', key, { range: `bytes=${start}-${end - 1}`, 'if-match': etag });
  }

  private async signed(method: 'GET' | 'HEAD', key: string, extraHeaders: Record<string, string>): Promise<SignedRequest> {
    const { url, signer } = await this.resolveTarget();
    const path = `${url.pathname.replace(/\/$/, '')}/${encodeKey(key)}`;
    return { url, path, headers: await signer.sign(method, path, { host: url.host, ...extraHeaders }) };
  }

  private send(method: 'GET' | 'HEAD', url: URL, path: string, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    const https = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)({
        agent: https ? this.options.httpsAgent : this.options.httpAgent,
        method,
        hostname: url.hostname,
        port: url.port || undefined,
        path,
        headers,
        signal,
      });
      req.setTimeout(this.options.idleTimeoutMs, () => req.destroy(Object.assign(new Error(`no answer for ${this.options.idleTimeoutMs} ms`), { name: 'TimeoutError' })));
      // The idle timeout goes on guarding the body: a stalled body errors instead of hanging.
      req.once('response', resolve);
      req.once('error', reject);
      req.end();
    });
  }

  /** The bucket's endpoint and a signer for it, resolved once by the SDK client's own rules. */
  private resolveTarget(): Promise<Target> {
    if (this.target) return this.target;
    const resolving = (async () => {
      const { config } = this.client;
      const region = await config.region();
      const endpoint = config.endpointProvider({
        Bucket: this.options.bucket,
        Region: region,
        Endpoint: this.options.endpoint,
        ForcePathStyle: this.options.forcePathStyle,
        UseFIPS: await config.useFipsEndpoint(),
        UseDualStack: await config.useDualstackEndpoint(),
        Accelerate: false,
      });
      const scheme = (endpoint.properties?.authSchemes as Array<{ signingRegion?: string }> | undefined)?.[0];
      // S3 signs the path as sent, not encoded a second time: the signer takes it as it is.
      const signer = new RequestSigner(() => config.credentials(), scheme?.signingRegion ?? region);
      return { url: new URL(endpoint.url.href), signer };
    })();
    this.target = resolving;
    // A failure (no region, say) is not kept: the next GET tries again.
    resolving.catch(() => {
      if (this.target === resolving) this.target = undefined;
    });
    return resolving;
  }
}

/** A key as S3 wants it in a path: every byte but unreserved ones and '/' percent-encoded. */
function encodeKey(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** The start of an error answer's body, for its code and message. */
async function errorText(response: IncomingMessage): Promise<string> {
  let text = '';
  try {
    for await (const chunk of response as AsyncIterable<Buffer>) {
      if (text.length < MAX_ERROR_BODY) text += chunk.toString('utf8');
    }
  } catch {
    // The code and message are a courtesy: the status alone classifies the answer.
  }
  return text;
}

/** The error of an answer with an error status and (the start of) its XML body. */
export function httpError(status: number, text: string): StoreHttpError {
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1];
  return new StoreHttpError(status, code ?? (status === 412 ? 'PreconditionFailed' : status === 404 ? 'NotFound' : undefined), message ?? `status ${status}`);
}
