/**
 * A throwaway Ceph RGW on 127.0.0.1, for the benchmark and the tests: a thin handle on
 * scripts/rgw.sh, which does the work (so a person at a shell gets the very same server).
 */
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';

const SCRIPT = join(__dirname, '..', '..', '..', 'scripts', 'rgw.sh');
/** Covers an apt install of the Ceph packages on a machine that lacks them. */
const START_TIMEOUT_MS = 15 * 60_000;
const STOP_TIMEOUT_MS = 60_000;

export interface RgwOptions {
  /** The cluster's own directory (config, pid files, logs); removed on stop. */
  directory: string;
  buckets?: string[];
  /** Cap on the objects it holds in RAM, e.g. '4GiB'. */
  memory?: string;
}

function parseEnv(output: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of output.split('\n')) {
    const match = /^(AWS_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (match) env[match[1]] = match[2];
  }
  if (!env.AWS_ENDPOINT_URL_S3 || !env.AWS_ACCESS_KEY_ID || !env.AWS_SECRET_ACCESS_KEY) {
    throw new Error(`scripts/rgw.sh printed no endpoint: ${output.trim().slice(0, 300)}`);
  }
  return env;
}

function script(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sh', [SCRIPT, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`scripts/rgw.sh ${args[0]} failed: ${(stderr || err.message).trim().split('\n').slice(-3).join(' | ')}`));
      else resolve(stdout);
    });
  });
}

export class Rgw {
  readonly endpoint: string;
  readonly port: number;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region: string;

  private constructor(
    readonly directory: string,
    private readonly env: Record<string, string>,
  ) {
    this.endpoint = env.AWS_ENDPOINT_URL_S3;
    this.port = Number(new URL(this.endpoint).port);
    this.accessKeyId = env.AWS_ACCESS_KEY_ID;
    this.secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
    this.region = env.AWS_REGION ?? 'us-east-1';
  }

  /** Starts the cluster in `directory`, or finds it running there; makes the buckets that are missing. */
  static async start(options: RgwOptions): Promise<Rgw> {
    const args = ['start', options.directory];
    if (options.memory) args.push('--memory', options.memory);
    for (const bucket of options.buckets ?? []) args.push('--bucket', bucket);
    return new Rgw(options.directory, parseEnv(await script(args, START_TIMEOUT_MS)));
  }

  /** Makes these buckets where they are missing. */
  async createBuckets(buckets: string[]): Promise<void> {
    await Rgw.start({ directory: this.directory, buckets });
  }

  /** The environment a client needs to reach this server. */
  clientEnv(): Record<string, string> {
    return { ...this.env };
  }

  /** The access log of the S3 frontend (one line per request, as Ceph's beast frontend writes it). */
  get accessLog(): string {
    return join(this.directory, 'log', 'rgw.log');
  }

  async stop(): Promise<void> {
    await Rgw.stopIn(this.directory);
  }

  /** Stops the cluster of `directory` (if any) and removes the directory. */
  static async stopIn(directory: string): Promise<void> {
    await script(['stop', directory], STOP_TIMEOUT_MS);
  }

  /** For process exit handlers, where nothing asynchronous runs any more. */
  static stopNow(directory: string): void {
    try {
      execFileSync('sh', [SCRIPT, 'stop', directory], { stdio: 'ignore', timeout: STOP_TIMEOUT_MS });
    } catch {
      // Exiting anyway: a cluster left behind is named by its directory in the process list.
    }
  }
}
