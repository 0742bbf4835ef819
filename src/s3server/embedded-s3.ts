/** Starts and stops the embedded S3 server (s3rver in a child process on 127.0.0.1). */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EmbeddedS3Options {
  /** Where objects are kept; a temporary directory, removed on stop, when not given. */
  directory?: string;
  port?: number;
  buckets?: string[];
  /** A file to which every request is appended as a JSON line. */
  requestLog?: string;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

export class EmbeddedS3 {
  static readonly accessKeyId = 'S3RVER';
  static readonly secretAccessKey = 'S3RVER';
  readonly endpoint: string;

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly directory: string,
    private readonly ownsDirectory: boolean,
  ) {
    this.endpoint = `http://127.0.0.1:${port}`;
  }

  static async start(options: EmbeddedS3Options = {}): Promise<EmbeddedS3> {
    const ownsDirectory = !options.directory;
    const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'stagefs-s3-'));
    const args = ['--directory', directory, '--port', String(options.port ?? 0)];
    for (const bucket of options.buckets ?? []) args.push('--bucket', bucket);
    if (options.requestLog) args.push('--request-log', options.requestLog);
    const child = fork(join(__dirname, 'server-process.js'), args, {
      env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --openssl-legacy-provider`.trim() },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the S3 server did not start within 30s')), START_TIMEOUT_MS);
        child.once('message', (message: { port: number }) => {
          clearTimeout(timer);
          resolve(message.port);
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`the S3 server exited with code ${code} before it was ready`));
        });
      });
      return new EmbeddedS3(child, port, directory, ownsDirectory);
    } catch (err) {
      child.kill('SIGKILL');
      if (ownsDirectory) rmSync(directory, { recursive: true, force: true });
      throw err;
    }
  }

  /** The environment a client needs to reach this server. */
  clientEnv(): Record<string, string> {
    return {
      AWS_ACCESS_KEY_ID: EmbeddedS3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: EmbeddedS3.secretAccessKey,
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_S3: this.endpoint,
    };
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (this.running) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    if (this.ownsDirectory) rmSync(this.directory, { recursive: true, force: true });
  }
}
