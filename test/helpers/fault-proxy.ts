/**
 * A fault-injecting S3 proxy for tests, in its own process (fault-proxy-process.ts), between a
 * mount and the embedded S3 server. It forwards every request unchanged (Host and SigV4
 * signature included) and answers with what the server said, unless a rule picks the request
 * for a fault. Rules are switched at run time over a small control HTTP endpoint.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Test } from 'tap';
import type { TestS3 } from './s3';

/**
 * What happens to a picked request. Body faults cut in at `at` (a share of the body, 0..1), or
 * where the rule's seeded generator says.
 */
export type Fault =
  /** An S3 error answered by the proxy itself: 500 InternalError, 503 SlowDown, ... */
  | { kind: 'status'; status: number; code: string }
  /** The connection is reset (TCP RST) after part of the body. */
  | { kind: 'reset'; at?: number }
  /**
   * The server closes the connection after part of the body. `declared: 'full'` keeps the
   * Content-Length of the whole body (the client sees the connection end early); `'sent'`
   * declares only the bytes sent, a complete-looking response that is short of the range.
   */
  | { kind: 'truncate'; at?: number; declared?: 'full' | 'sent' }
  /** The body stops for `ms`, then goes on. */
  | { kind: 'stall'; at?: number; ms: number }
  /** One byte of the body is changed, under the right status, length and ETag. */
  | { kind: 'flip'; at?: number }
  /** A header added to the response, as a store that sends it would (x-amz-checksum-crc32c, say). */
  | { kind: 'header'; name: string; value: string }
  /** The right bytes under another ETag header. */
  | { kind: 'wrong-etag' }
  /** 200 and the whole object for a ranged GET, as a server that ignores Range sends. */
  | { kind: 'whole-object' }
  /** The range as the object is now, without If-Match, as a server that ignores If-Match sends. */
  | { kind: 'unconditional' }
  /**
   * Before this request goes on, the object is replaced by other bytes of the same size,
   * atomically for its readers: no request of that key is in flight meanwhile.
   */
  | { kind: 'replace' };

export interface RequestMatch {
  /** Default GET. */
  method?: string;
  /** Object keys starting with this; default any. */
  keyPrefix?: string;
  /** Only requests with (true) or without (false) a Range header; default: GETs of a range. */
  ranged?: boolean;
  /** Only ranges of at least this many bytes (bodies that span several blocks, say). */
  minLength?: number;
}

export interface FaultRule {
  fault: Fault;
  match?: RequestMatch;
  /** Matching requests let through before the rule starts picking. */
  skip?: number;
  /** The rule picks at most this many requests. */
  count?: number;
  /** The share of matching requests picked (0..1), from a generator seeded per rule; default all. */
  rate?: number;
  seed?: number;
}

export interface InjectedFault {
  kind: Fault['kind'];
  method: string;
  url: string;
  range: string | undefined;
}

export interface ProxyStats {
  requests: number;
  injected: InjectedFault[];
  /** Objects the proxy replaced (kind 'replace'), with their new ETags. */
  replaced: Array<{ key: string; etag: string }>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export class FaultProxy {
  readonly endpoint: string;
  private readonly control: string;

  private constructor(
    private readonly child: ChildProcess,
    port: number,
    controlPort: number,
  ) {
    this.endpoint = `http://127.0.0.1:${port}`;
    this.control = `http://127.0.0.1:${controlPort}`;
  }

  /** Starts a proxy to `upstream`; `env` carries the credentials its own requests (replace, whole-object) sign with. */
  static async start(upstream: string, env: Record<string, string>): Promise<FaultProxy> {
    const child = fork(join(__dirname, 'fault-proxy-process.js'), ['--upstream', upstream], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      const ports = await new Promise<{ port: number; controlPort: number }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the fault proxy did not start within 30s')), START_TIMEOUT_MS);
        child.once('message', (message: { port: number; controlPort: number }) => {
          clearTimeout(timer);
          resolve(message);
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`the fault proxy exited with code ${code} before it was ready`));
        });
      });
      return new FaultProxy(child, ports.port, ports.controlPort);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
  }

  /** Replaces every rule (and the record of faults injected so far). */
  async set(rules: FaultRule[]): Promise<void> {
    await this.call('PUT', '/faults', rules);
  }

  async clear(): Promise<void> {
    await this.set([]);
  }

  async stats(): Promise<ProxyStats> {
    return (await this.call('GET', '/stats')) as ProxyStats;
  }

  /** How many faults of `kind` were injected since the rules were last set. */
  async injected(kind?: Fault['kind']): Promise<number> {
    return (await this.stats()).injected.filter((f) => kind === undefined || f.kind === kind).length;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(this.control + path, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`fault proxy ${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }
}

/** A proxy in front of the test's S3 server, stopped in teardown. */
export async function startFaultProxy(t: Test, s3: TestS3): Promise<FaultProxy> {
  const proxy = await FaultProxy.start(s3.server.endpoint, s3.env);
  t.teardown(() => proxy.stop());
  return proxy;
}
