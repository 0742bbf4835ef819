/** ObjectStore over S3 (or any S3-compatible server) with @aws-sdk/client-s3. */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import createDebug from 'debug';
import type { StoreConfig } from '../config';
import { StoreError, type StoreErrorKind } from '../errors';
import type { CopySource, ListOptions, ListPage, ObjectInfo, ObjectStore } from './object-store';
import { rangeResponseProblem, resumingRange, type RangeBody } from './range-read';

const debug = createDebug('stagefs:store');

// stagefs supports Node 20; the SDK's notice that its future releases will not is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const MAX_SOCKETS = 128;
const CONNECT_TIMEOUT_MS = 5_000;
/** Socket inactivity, not total duration: a long GET that keeps streaming is never cut. */
const IDLE_TIMEOUT_MS = 30_000;
const MAX_ATTEMPTS = 4;
/** The largest object CopyObject copies in one request; larger ones are copied in parts. */
const MAX_SINGLE_COPY = 5 * 1024 ** 3;
const COPY_PART_SIZE = 1024 ** 3;
const DELETE_BATCH = 1000;

const KIND_BY_NAME: Record<string, StoreErrorKind> = {
  NoSuchKey: 'NotFound',
  NotFound: 'NotFound',
  NoSuchBucket: 'NoSuchBucket',
  AccessDenied: 'AccessDenied',
  Forbidden: 'AccessDenied',
  InvalidAccessKeyId: 'InvalidCredentials',
  SignatureDoesNotMatch: 'InvalidCredentials',
  CredentialsProviderError: 'InvalidCredentials',
  PreconditionFailed: 'PreconditionFailed',
  InvalidRange: 'InvalidRange',
  TimeoutError: 'Timeout',
  RequestTimeout: 'Timeout',
};

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNRESET', 'EPIPE']);

export class S3Store implements ObjectStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;

  constructor(config: StoreConfig) {
    this.bucket = config.bucket;
    this.description = `s3://${config.bucket} at ${config.endpoint ?? `AWS ${config.region}`}`;
    const agentOptions = { keepAlive: true, maxSockets: MAX_SOCKETS };
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.pathStyle,
      maxAttempts: MAX_ATTEMPTS,
      // Checksums the SDK adds by default are not understood by every S3-compatible server.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: new HttpAgent(agentOptions),
        httpsAgent: new HttpsAgent(agentOptions),
        connectionTimeout: CONNECT_TIMEOUT_MS,
        socketTimeout: IDLE_TIMEOUT_MS,
      },
    });
  }

  async checkAccess(prefix: string): Promise<void> {
    await this.list(prefix, { maxKeys: 1, delimiter: '/' });
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const output = await this.call(`list ${prefix}`, () =>
      this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix || undefined,
          Delimiter: options.delimiter,
          ContinuationToken: options.continuationToken,
          MaxKeys: options.maxKeys,
        }),
      ),
    );
    return {
      objects: (output.Contents ?? []).map((item) => ({
        key: item.Key ?? '',
        size: item.Size ?? 0,
        etag: item.ETag ?? '',
        mtime: item.LastModified ?? new Date(0),
      })),
      prefixes: (output.CommonPrefixes ?? []).map((p) => p.Prefix ?? '').filter((p) => p.length > 0),
      continuationToken: output.IsTruncated ? output.NextContinuationToken : undefined,
    };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const output = await this.call(`head ${key}`, () =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })),
      );
      return {
        key,
        size: output.ContentLength ?? 0,
        etag: output.ETag ?? '',
        mtime: output.LastModified ?? new Date(0),
        metadata: output.Metadata ?? {},
      };
    } catch (err) {
      if (err instanceof StoreError && err.kind === 'NotFound') return undefined;
      throw err;
    }
  }

  getRange(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const open = (from: number, to: number) => this.openRange(key, from, to, etag, signal);
    return Promise.resolve(resumingRange(open, start, end, `get ${key} [${start}, ${end})`, signal));
  }

  /** One GET of [start, end), refused unless the response is exactly that range of that version. */
  private async openRange(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<RangeBody> {
    const what = `get ${key} [${start}, ${end})`;
    const output = await this.call(what, () =>
      this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end - 1}`, IfMatch: etag }),
        { abortSignal: signal },
      ),
    );
    const body = output.Body as RangeBody | undefined;
    // Servers that ignore Range or If-Match answer with other bytes; those are never data.
    const problem = body
      ? rangeResponseProblem(
          { status: output.$metadata.httpStatusCode, contentRange: output.ContentRange, contentLength: output.ContentLength, etag: output.ETag },
          start,
          end,
          etag,
        )
      : 'the response has no body';
    if (problem) {
      body?.destroy?.();
      throw new StoreError('BadResponse', `${what}: ${problem}`);
    }
    return body!;
  }

  async put(key: string, body: Uint8Array, metadata: Record<string, string> = {}): Promise<ObjectInfo> {
    const output = await this.call(`put ${key}`, () =>
      this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, Metadata: metadata }),
      ),
    );
    return this.infoAfterWrite(key, output.ETag);
  }

  async createMultipart(key: string, metadata: Record<string, string> = {}): Promise<string> {
    const output = await this.call(`create multipart ${key}`, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, Metadata: metadata })),
    );
    if (!output.UploadId) throw new StoreError('Server', `create multipart ${key}: no upload id`);
    return output.UploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string> {
    const output = await this.call(`upload part ${partNumber} of ${key}`, () =>
      this.client.send(
        new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length }),
      ),
    );
    return output.ETag ?? '';
  }

  async completeMultipart(key: string, uploadId: string, partEtags: string[]): Promise<ObjectInfo> {
    const output = await this.call(`complete multipart ${key}`, () =>
      this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: partEtags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      ),
    );
    return this.infoAfterWrite(key, output.ETag);
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    await this.call(`abort multipart ${key}`, () =>
      this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })),
    );
  }

  async copy(from: CopySource, to: string, metadata?: Record<string, string>): Promise<ObjectInfo> {
    const source = copySource(this.bucket, from.key);
    const directive = metadata ? 'REPLACE' : 'COPY';
    const what = `copy ${from.key} (${from.etag}) to ${to}`;
    if (from.size <= MAX_SINGLE_COPY) {
      const output = await this.call(what, () =>
        this.client.send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key: to,
            CopySource: source,
            CopySourceIfMatch: from.etag,
            MetadataDirective: directive,
            Metadata: metadata,
          }),
        ),
      );
      return this.infoAfterWrite(to, output.CopyObjectResult?.ETag);
    }
    const uploadId = await this.createMultipart(to, metadata ?? (await this.sourceMetadata(from)));
    try {
      const etags: string[] = [];
      for (let start = 0; start < from.size; start += COPY_PART_SIZE) {
        const end = Math.min(from.size, start + COPY_PART_SIZE) - 1;
        const output = await this.call(`${what}, part ${etags.length + 1}`, () =>
          this.client.send(
            new UploadPartCopyCommand({
              Bucket: this.bucket,
              Key: to,
              UploadId: uploadId,
              PartNumber: etags.length + 1,
              CopySource: source,
              CopySourceIfMatch: from.etag,
              CopySourceRange: `bytes=${start}-${end}`,
            }),
          ),
        );
        etags.push(output.CopyPartResult?.ETag ?? '');
      }
      return await this.completeMultipart(to, uploadId, etags);
    } catch (err) {
      await this.abortMultipart(to, uploadId).catch(() => undefined); // best effort: the copy already failed
      throw err;
    }
  }

  /** The metadata of the version a multipart copy is made of; the parts' CopySourceIfMatch holds it to that version. */
  private async sourceMetadata(from: CopySource): Promise<Record<string, string> | undefined> {
    const info = await this.head(from.key);
    if (!info) throw new StoreError('NotFound', `copy ${from.key}: no such key`);
    if (info.etag !== from.etag) throw new StoreError('PreconditionFailed', `copy ${from.key}: it changed in the store (ETag ${info.etag}, expected ${from.etag})`);
    return info.metadata;
  }

  async delete(key: string): Promise<void> {
    await this.call(`delete ${key}`, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  async deleteMany(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const output = await this.call(`delete ${batch.length} objects`, () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } })),
      );
      const failed = output.Errors?.[0];
      if (failed) throw new StoreError('Server', `delete ${failed.Key}: ${failed.Code} ${failed.Message ?? ''}`.trim());
    }
  }

  /** What a write left: the store's word on size and time, which later listings will repeat. */
  private async infoAfterWrite(key: string, etag: string | undefined): Promise<ObjectInfo> {
    const info = await this.head(key);
    if (!info) throw new StoreError('Server', `${key} is missing right after it was written`);
    if (etag && info.etag !== etag) debug('%s changed again right after it was written', key);
    return info;
  }

  private async call<T>(what: string, request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      const classified = this.classify(what, err);
      debug('%s failed: %s', what, classified.message);
      throw classified;
    }
  }

  private classify(what: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const e = err as Error & { code?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    let kind: StoreErrorKind | undefined = KIND_BY_NAME[e.name];
    if (!kind && e.code && UNREACHABLE_CODES.has(e.code)) kind = 'Unreachable';
    if (!kind && status === 404) kind = 'NotFound';
    if (!kind && status === 403) kind = 'AccessDenied';
    if (!kind && status === 412) kind = 'PreconditionFailed';
    if (!kind && e.name === 'AbortError') kind = 'Timeout';
    kind ??= 'Server';
    return new StoreError(kind, `${what}: ${describe(kind, e, this.description)}`, err);
  }
}

/** x-amz-copy-source: URL-encoded, but with the characters s3rver's decodeURI leaves alone kept as they are. */
function copySource(bucket: string, key: string): string {
  return encodeURI(`${bucket}/${key}`).replace(/\?/g, '%3F').replace(/#/g, '%23');
}

function describe(kind: StoreErrorKind, err: Error & { code?: string }, where: string): string {
  switch (kind) {
    case 'NoSuchBucket':
      return `the bucket does not exist (${where})`;
    case 'InvalidCredentials':
      return err.name === 'CredentialsProviderError'
        ? 'no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE'
        : `the credentials were refused (${err.name}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`;
    case 'AccessDenied':
      return `access denied by ${where}`;
    case 'Unreachable':
      return `cannot reach ${where} (${err.code ?? err.message})`;
    default:
      return err instanceof S3ServiceException ? `${err.name}: ${err.message}` : err.message || err.name;
  }
}
