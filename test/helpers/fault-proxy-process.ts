/**
 * The fault proxy's own process (see fault-proxy.ts). Requests are forwarded byte for byte, Host
 * and signature included, so the server checks the mount's SigV4 signatures as if it were
 * reached directly. A request a rule picks gets its fault; faulted responses are written raw on
 * the connection, which is closed after them, so a fault never leaks into the next response.
 */
import { randomBytes } from 'node:crypto';
import { createServer, request, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { objectOfUrl } from '../../src/s3server/object-url';
import type { Fault, FaultRule, ProxyStats, RequestMatch } from './fault-proxy';
import { seeded } from './files';

const WRONG_ETAG = '"00000000000000000000000000000000"';
/** Headers of one hop that a raw response replaces with its own Connection: close. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding']);

interface ActiveRule {
  rule: FaultRule;
  seen: number;
  picked: number;
  random: () => number;
}

function matches(match: RequestMatch | undefined, req: IncomingMessage, key: string | undefined): boolean {
  if (req.method !== (match?.method ?? 'GET')) return false;
  if (match?.keyPrefix !== undefined && !key?.startsWith(match.keyPrefix)) return false;
  const ranged = match?.ranged ?? (match?.method === undefined ? true : undefined);
  if (ranged !== undefined && ranged !== (req.headers.range !== undefined)) return false;
  if (match?.minLength === undefined) return true;
  const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  return range !== null && Number(range[2]) - Number(range[1]) + 1 >= match.minLength;
}

/**
 * Requests per object key, so an object can be replaced while none of them is in flight: s3rver
 * rewrites an object in place, and a GET running meanwhile would mix two versions itself.
 */
class KeyGates {
  private readonly inflight = new Map<string, number>();
  private readonly drained = new Map<string, Array<() => void>>();
  private readonly closed = new Map<string, Promise<void>>();

  async enter(key: string): Promise<() => void> {
    for (let gate = this.closed.get(key); gate; gate = this.closed.get(key)) await gate;
    this.inflight.set(key, (this.inflight.get(key) ?? 0) + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const count = this.inflight.get(key)! - 1;
      if (count > 0) return void this.inflight.set(key, count);
      this.inflight.delete(key);
      for (const wake of this.drained.get(key)?.splice(0) ?? []) wake();
    };
  }

  async exclusive(key: string, work: () => Promise<void>): Promise<void> {
    for (let gate = this.closed.get(key); gate; gate = this.closed.get(key)) await gate;
    let open!: () => void;
    this.closed.set(key, new Promise<void>((resolve) => (open = resolve)));
    try {
      if (this.inflight.has(key)) {
        await new Promise<void>((resolve) => {
          const waiters = this.drained.get(key) ?? [];
          waiters.push(resolve);
          this.drained.set(key, waiters);
        });
      }
      await work();
    } finally {
      this.closed.delete(key);
      open();
    }
  }
}

/** Faults that act at a point of the body (`at`). */
function cutsBody(fault: Fault): fault is Extract<Fault, { at?: number }> {
  return fault.kind === 'reset' || fault.kind === 'truncate' || fault.kind === 'stall' || fault.kind === 'flip';
}

function errorBody(code: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the fault proxy</Message><RequestId>fault-proxy</RequestId></Error>`;
}

function rawPairs(raw: string[]): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) pairs.push([raw[i], raw[i + 1]]);
  return pairs;
}

function header(pairs: Array<[string, string]>, name: string): string | undefined {
  return pairs.find(([k]) => k.toLowerCase() === name)?.[1];
}

async function write(socket: Socket, data: Uint8Array | string): Promise<void> {
  if (socket.destroyed) throw new Error('the client went away');
  if (!socket.write(data)) await once(socket, 'drain');
}

class Proxy {
  private rules: ActiveRule[] = [];
  private stats: ProxyStats = { requests: 0, injected: [], replaced: [] };
  private readonly gates = new KeyGates();
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });
  private readonly upstream: URL;
  private readonly client: S3Client;

  constructor(upstream: string) {
    this.upstream = new URL(upstream);
    this.client = new S3Client({
      endpoint: upstream,
      region: process.env.AWS_REGION ?? 'us-east-1',
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  setRules(rules: FaultRule[]): void {
    this.rules = rules.map((rule, i) => ({ rule, seen: 0, picked: 0, random: seeded(rule.seed ?? i + 1) }));
    this.stats = { requests: 0, injected: [], replaced: [] };
  }

  currentStats(): ProxyStats {
    return this.stats;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    const target = objectOfUrl(req.url ?? '/');
    const key = target ? `${target.bucket}/${target.key}` : undefined;
    const fault = this.pick(req, target?.key);
    if (fault?.kind === 'replace' && target) {
      await this.gates.exclusive(key!, () => this.replace(target.bucket, target.key));
      this.note(fault, req);
    }
    const leave = key ? await this.gates.enter(key) : () => undefined;
    // The socket outlives the response on a kept-alive connection: its listener goes with the response.
    res.on('close', () => {
      req.socket.off('close', leave);
      leave();
    });
    req.socket.on('close', leave);
    switch (fault?.kind) {
      case 'status':
        return this.answerError(req, res, fault.status, fault.code, fault);
      case 'whole-object':
      case 'unconditional':
        if (target) return this.answerItself(req, res, target, fault);
        return this.forward(req, res, undefined);
      default:
        return this.forward(req, res, fault?.kind === 'replace' ? undefined : fault);
    }
  }

  /** The fault for a request, if a rule picks it; a body fault without `at` cuts in at a point the rule's generator draws. */
  private pick(req: IncomingMessage, key: string | undefined): Fault | undefined {
    for (const active of this.rules) {
      const { rule } = active;
      if (!matches(rule.match, req, key)) continue;
      active.seen++;
      if (active.seen <= (rule.skip ?? 0)) continue;
      if (rule.count !== undefined && active.picked >= rule.count) continue;
      if (rule.rate !== undefined && active.random() >= rule.rate) continue;
      active.picked++;
      const fault = rule.fault;
      if (cutsBody(fault)) return { ...fault, at: fault.at ?? active.random() };
      return fault;
    }
    return undefined;
  }

  private note(fault: Fault, req: IncomingMessage): void {
    this.stats.injected.push({ kind: fault.kind, method: req.method ?? '', url: req.url ?? '', range: req.headers.range });
  }

  private answerError(req: IncomingMessage, res: ServerResponse, status: number, code: string, fault?: Fault): void {
    if (fault) this.note(fault, req);
    req.resume();
    const body = req.method === 'HEAD' ? '' : errorBody(code);
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), 'x-amz-request-id': 'fault-proxy' });
    res.end(body);
  }

  private forward(req: IncomingMessage, res: ServerResponse, fault: Fault | undefined): void {
    const upstreamReq = request({
      host: this.upstream.hostname,
      port: this.upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: this.agent,
    });
    req.pipe(upstreamReq);
    upstreamReq.on('error', () => {
      if (!res.headersSent) req.socket.destroy();
      else res.destroy();
    });
    upstreamReq.on('response', (upstream) => {
      res.on('close', () => {
        if (!upstream.complete) upstream.destroy();
      });
      const length = header(rawPairs(upstream.rawHeaders), 'content-length');
      const ok = upstream.statusCode !== undefined && upstream.statusCode >= 200 && upstream.statusCode < 300;
      if (!fault || !ok || length === undefined) {
        res.writeHead(upstream.statusCode ?? 502, upstream.statusMessage, upstream.rawHeaders);
        upstream.pipe(res);
        return;
      }
      this.note(fault, req);
      this.relayFaulted(req.socket, upstream, Number(length), fault).catch(() => {
        upstream.destroy();
        req.socket.destroy();
      });
    });
  }

  /** Writes the upstream response raw on the client's connection, with the fault, then closes it. */
  private async relayFaulted(socket: Socket, upstream: IncomingMessage, length: number, fault: Fault): Promise<void> {
    const headers = rawPairs(upstream.rawHeaders).filter(([name]) => !HOP_HEADERS.has(name.toLowerCase()));
    // A flipped byte must be one of the body's.
    const cut = cutsBody(fault) ? Math.min(fault.kind === 'flip' ? length - 1 : length, Math.floor(length * (fault.at ?? 0))) : undefined;
    for (const pair of headers) {
      const name = pair[0].toLowerCase();
      if (name === 'etag' && fault.kind === 'wrong-etag') pair[1] = WRONG_ETAG;
      if (name === 'content-length' && fault.kind === 'truncate' && fault.declared === 'sent') pair[1] = String(cut);
    }
    if (fault.kind === 'header') headers.push([fault.name, fault.value]);
    headers.push(['Connection', 'close']);
    const head = `HTTP/1.1 ${upstream.statusCode} ${upstream.statusMessage}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
    await write(socket, head);
    let sent = 0;
    for await (const chunk of upstream as AsyncIterable<Buffer>) {
      if (cut === undefined || cut < sent || cut >= sent + chunk.length) {
        await write(socket, chunk);
        sent += chunk.length;
        continue;
      }
      await write(socket, chunk.subarray(0, cut - sent));
      if (fault.kind === 'reset') {
        upstream.destroy();
        socket.resetAndDestroy();
        return;
      }
      if (fault.kind === 'truncate') {
        upstream.destroy();
        socket.end();
        return;
      }
      if (fault.kind === 'stall') await new Promise((resolve) => setTimeout(resolve, fault.ms));
      const rest = Buffer.from(chunk.subarray(cut - sent));
      if (fault.kind === 'flip') rest[0] ^= 0xff;
      await write(socket, rest);
      sent += chunk.length;
    }
    socket.end();
  }

  /** Answers a GET with the proxy's own request: the whole object, or the range without If-Match. */
  private async answerItself(req: IncomingMessage, res: ServerResponse, target: { bucket: string; key: string }, fault: Fault): Promise<void> {
    req.resume();
    try {
      const output = await this.client.send(
        new GetObjectCommand({ Bucket: target.bucket, Key: target.key, Range: fault.kind === 'unconditional' ? req.headers.range : undefined }),
      );
      this.note(fault, req);
      const headers: Record<string, string> = {
        'content-length': String(output.ContentLength ?? 0),
        'content-type': output.ContentType ?? 'application/octet-stream',
        'accept-ranges': 'bytes',
      };
      if (output.ETag) headers.etag = output.ETag;
      if (output.LastModified) headers['last-modified'] = output.LastModified.toUTCString();
      if (output.ContentRange) headers['content-range'] = output.ContentRange;
      res.writeHead(output.$metadata.httpStatusCode ?? 200, headers);
      for await (const chunk of output.Body as AsyncIterable<Uint8Array>) {
        if (!res.write(chunk)) await once(res, 'drain');
      }
      res.end();
    } catch (err) {
      const e = err as Error & { $metadata?: { httpStatusCode?: number } };
      if (res.headersSent) res.destroy();
      else this.answerError(req, res, e.$metadata?.httpStatusCode ?? 500, e.name);
    }
  }

  private async replace(bucket: string, key: string): Promise<void> {
    const head = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    const body = randomBytes(head.ContentLength ?? 0);
    const output = await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
    this.stats.replaced.push({ key, etag: output.ETag ?? '' });
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { upstream: { type: 'string' } } });
  if (!values.upstream) throw new Error('--upstream is required');
  const proxy = new Proxy(values.upstream);
  const server = createServer((req, res) => {
    proxy.handle(req, res).catch(() => req.socket.destroy());
  });
  const control = createServer((req, res) => {
    const answer = (status: number, body: unknown) => {
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    readJson(req)
      .then((body) => {
        if (req.method === 'PUT' && req.url === '/faults') {
          if (!Array.isArray(body)) return answer(400, { error: 'expected an array of rules' });
          proxy.setRules(body as FaultRule[]);
          return answer(200, { rules: body.length });
        }
        if (req.method === 'GET' && req.url === '/stats') return answer(200, proxy.currentStats());
        return answer(404, { error: `no ${req.method} ${req.url}` });
      })
      .catch((err: unknown) => answer(400, { error: err instanceof Error ? err.message : String(err) }));
  });
  server.keepAliveTimeout = 60_000;
  await Promise.all([
    new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)),
    new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve)),
  ]);
  const stop = () => process.exit(0);
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The parent is gone: nobody will stop this proxy, so it stops itself.
  process.on('disconnect', stop);
  const port = (server.address() as { port: number }).port;
  const controlPort = (control.address() as { port: number }).port;
  process.send?.({ port, controlPort });
}

main().catch((err: unknown) => {
  console.error(`fault proxy: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
