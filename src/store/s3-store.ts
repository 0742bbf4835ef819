/** ObjectStore over S3 (or any S3-compatible server) with @aws-sdk/client-s3. */
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import createDebug from 'debug';
import type { StoreConfig } from '../config';
import { CommandError, StoreError, errorMessage, type StoreErrorKind } from '../errors';
import { CHECKSUM_ALGORITHMS, type CopySource, type ListOptions, type ListPage, type ObjectInfo, type ObjectStore, type RangeTarget, type RangeWrite, type StoreChecksum } from './object-store';
import { NativeRanges, type AttemptEnd, type NativeAttempt } from './native-ranges';
import { RangeClient } from './range-client';
import { rangeResponseProblem, ResumePolicy, resumingRange, type RangeBody } from './range-read';

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
const METADATA_HEADER = 'x-amz-meta-';

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

/** Node's codes for a server certificate that does not verify against the trusted CAs. */
const UNTRUSTED_CERTIFICATE_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Told of every request to the store (operation name, seconds until the response, failure), for metrics. */
export interface RequestObserver {
  request(op: string, seconds: number, failed: boolean): void;
}

/** The certificates of a CA bundle file, checked to be PEM. */
function readCaBundle(bundle: NonNullable<StoreConfig['caBundle']>): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(bundle.path);
  } catch (err) {
    throw new CommandError(`${bundle.source}: cannot read ${bundle.path} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new CommandError(`${bundle.source}: ${bundle.path} holds no PEM certificate`);
  return pem;
}

/**
 * The checksum of the whole object among those HEAD gave, if any: a composite one (of a multipart
 * upload's parts, "value-N") needs the part sizes to be checked, and is left out.
 */
function fullObjectChecksum(headers: IncomingHttpHeaders): StoreChecksum | undefined {
  const type = headerValue(headers, 'x-amz-checksum-type');
  for (const algorithm of CHECKSUM_ALGORITHMS) {
    const value = headerValue(headers, `x-amz-checksum-${algorithm.toLowerCase()}`);
    if (!value) continue;
    const composite = type === 'COMPOSITE' || (type === undefined && value.includes('-'));
    if (!composite) return { algorithm, value };
  }
  return undefined;
}

/** The object a HEAD describes, from its response headers; a size that is not a number is no answer. */
function objectInfoOf(key: string, headers: IncomingHttpHeaders): ObjectInfo {
  const length = headerValue(headers, 'content-length');
  if (length === undefined || !/^\d+$/.test(length)) throw new StoreError('BadResponse', `head ${key}: Content-Length ${length ?? 'missing'}`);
  const modified = headerValue(headers, 'last-modified');
  const mtime = modified === undefined ? new Date(0) : new Date(modified);
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(METADATA_HEADER) && typeof value === 'string') metadata[name.slice(METADATA_HEADER.length)] = value;
  }
  return {
    key,
    size: Number(length),
    etag: headerValue(headers, 'etag') ?? '',
    mtime: Number.isNaN(mtime.getTime()) ? new Date(0) : mtime,
    metadata,
    checksum: fullObjectChecksum(headers),
  };
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

export class S3Store implements ObjectStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly caBundle: StoreConfig['caBundle'];
  private askForChecksums = true;
  /** The data of ranged GETs, without the SDK's per-request cost (see range-client.ts). */
  private readonly ranges: RangeClient;
  /** Ranged GETs into files off the JavaScript thread (native-ranges.ts), where the addon has them. */
  private readonly native: NativeRanges | undefined;
  readonly writeRange?: ObjectStore['writeRange'];

  constructor(
    config: StoreConfig,
    private readonly observer?: RequestObserver,
  ) {
    this.bucket = config.bucket;
    this.caBundle = config.caBundle;
    this.description = `s3://${config.bucket} at ${config.endpoint ?? `AWS ${config.region}`}`;
    const agentOptions = { keepAlive: true, maxSockets: MAX_SOCKETS };
    // As the AWS CLI does with a CA bundle: its certificates replace the built-in ones.
    const ca = config.caBundle ? readCaBundle(config.caBundle) : undefined;
    const httpAgent = new HttpAgent(agentOptions);
    const httpsAgent = new HttpsAgent({ ...agentOptions, ca });
    this.client = new S3Client({
      profile: config.profile,
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.pathStyle,
      maxAttempts: MAX_ATTEMPTS,
      // Checksums the SDK adds by default are not understood by every S3-compatible server.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent,
        httpsAgent,
        connectionTimeout: CONNECT_TIMEOUT_MS,
        socketTimeout: IDLE_TIMEOUT_MS,
      },
    });
    this.ranges = new RangeClient(this.client, {
      bucket: config.bucket,
      endpoint: config.endpoint,
      forcePathStyle: config.pathStyle,
      httpAgent,
      httpsAgent,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
    });
    if (config.fetcher !== 'js') {
      this.native = NativeRanges.create({ connectTimeoutMs: CONNECT_TIMEOUT_MS, idleTimeoutMs: IDLE_TIMEOUT_MS, caFile: config.caBundle?.path });
      if (this.native) this.writeRange = (key, start, end, etag, target) => this.writeRangeNatively(this.native!, key, start, end, etag, target);
    }
  }

  /** Stops the threads of native GETs; transfers under way fail. */
  close(): void {
    this.native?.close();
  }

  /**
   * Lists the prefix: whether the mount may read it. Meanwhile one HEAD (of the prefix, whatever
   * it answers) warms what every lookup takes, so the first one does not wait for it: a fetch
   * thread with its connection, the signing and the head's reading.
   */
  async checkAccess(prefix: string): Promise<void> {
    const warming = this.sendHead(prefix, this.askForChecksums).catch((err: unknown) => debug('warming the HEAD path: %s', errorMessage(err)));
    await this.list(prefix, { maxKeys: 1, delimiter: '/' });
    await warming;
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const output = await this.call('list', `list ${prefix}`, () =>
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
      return objectInfoOf(key, await this.headObject(key));
    } catch (err) {
      if (err instanceof StoreError && err.kind === 'NotFound') return undefined;
      throw err;
    }
  }

  /**
   * HEAD on the lean client (every lookup waits on one), asking for the object's checksums, and
   * retried as ranged GETs are. S3 refuses the checksums to a user who may not decrypt the
   * object's KMS key (kms:Decrypt), where a plain HEAD would do: then the mount stops asking.
   */
  private async headObject(key: string): Promise<IncomingHttpHeaders> {
    const what = `head ${key}`;
    const send = async (withChecksums: boolean) => {
      const policy = new ResumePolicy(what, 0, this.native?.closed);
      for (;;) {
        try {
          return await this.call('head', what, () => this.sendHead(key, withChecksums));
        } catch (err) {
          await policy.failed(err, 0, 0);
        }
      }
    };
    if (!this.askForChecksums) return send(false);
    try {
      return await send(true);
    } catch (err) {
      if (!(err instanceof StoreError && err.kind === 'AccessDenied')) throw err;
      const output = await send(false);
      this.askForChecksums = false;
      debug('HEAD with x-amz-checksum-mode is refused where a plain HEAD is not: objects are not checked against the store\'s checksums');
      return output;
    }
  }

  /** On the addon's fetch pool where there is one: its warm connections, and no HTTP parsing on this thread. */
  private async sendHead(key: string, withChecksums: boolean): Promise<IncomingHttpHeaders> {
    if (!this.native) return this.ranges.head(key, withChecksums);
    return this.native.head(await this.ranges.signedHead(key, withChecksums));
  }

  getRange(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const open = (from: number, to: number) => this.openRange(key, from, to, etag, signal);
    return Promise.resolve(resumingRange(open, start, end, `get ${key} [${start}, ${end})`, signal));
  }

  /** One GET of [start, end), refused unless the response is exactly that range of that version. */
  private async openRange(key: string, start: number, end: number, etag: string, signal?: AbortSignal): Promise<RangeBody> {
    const what = `get ${key} [${start}, ${end})`;
    const response = await this.call('get', what, () => this.ranges.get(key, start, end, etag, signal));
    // Servers that ignore Range or If-Match answer with other bytes; those are never data.
    const problem = rangeResponseProblem(response, start, end, etag);
    if (problem) {
      response.body.destroy?.();
      throw new StoreError('BadResponse', `${what}: ${problem}`);
    }
    return response.body;
  }

  /**
   * writeRange on the addon's fetch pool: one native transfer per attempt, the head judged here
   * before its body is written, failures classified and retried as getRange's, a broken body
   * resumed from its first unwritten byte with the CRC of its block so far.
   */
  private writeRangeNatively(native: NativeRanges, key: string, start: number, end: number, etag: string, target: RangeTarget): RangeWrite {
    const what = `get ${key} [${start}, ${end})`;
    let attempt: NativeAttempt | undefined;
    let wanted = 0;
    const want = (offset: number) => {
      wanted = Math.max(wanted, offset);
      const written = attempt?.watch(offset);
      if (written !== undefined && written >= offset) queueMicrotask(() => target.progress(written, 0, undefined));
    };
    const run = async () => {
      const policy = new ResumePolicy(what, start, native.closed);
      let from = start;
      let crc = target.crcBefore ?? 0;
      let crcFilled = start % target.blockSize;
      while (from < end) {
        let ended: Promise<AttemptEnd> | undefined;
        try {
          await this.call('get', what, async () => {
            const signed = await this.ranges.signedGet(key, from, end, etag);
            const current = native.start({
              signed,
              fd: target.fd,
              start: from,
              end,
              blockSize: target.blockSize,
              crc,
              crcFilled,
              judge: (head) => rangeResponseProblem(head, from, end, etag),
              progress: (written, firstBlock, crcs) => target.progress(written, firstBlock, crcs),
            });
            attempt = current;
            ended = current.end;
            if (wanted > from) want(wanted);
            await current.head;
          });
          const result = await ended!;
          if (result.error === undefined) return;
          // A failure of the cache disk is thrown as it is by the catch below: never retried.
          throw result.error instanceof StoreError ? new StoreError(result.error.kind, `${what}: ${result.error.message}`, result.error) : result.error;
        } catch (err) {
          const result = ended ? await ended : undefined;
          if (result?.localFailure) throw result.error;
          const delivered = result?.written ?? from;
          await policy.failed(err, from, delivered);
          from = delivered;
          crc = result?.crc ?? crc;
          crcFilled = result?.crcFilled ?? crcFilled;
        }
      }
    };
    return { done: run(), want };
  }

  async put(key: string, body: Uint8Array, metadata: Record<string, string> = {}): Promise<ObjectInfo> {
    const output = await this.call('put', `put ${key}`, () =>
      this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, Metadata: metadata }),
      ),
    );
    return this.infoAfterWrite(key, output.ETag, body.length);
  }

  async createMultipart(key: string, metadata: Record<string, string> = {}): Promise<string> {
    const output = await this.call('create_multipart', `create multipart ${key}`, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key, Metadata: metadata })),
    );
    if (!output.UploadId) throw new StoreError('Server', `create multipart ${key}: no upload id`);
    return output.UploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string> {
    const output = await this.call('upload_part', `upload part ${partNumber} of ${key}`, () =>
      this.client.send(
        new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber, Body: body, ContentLength: body.length }),
      ),
    );
    return output.ETag ?? '';
  }

  async uploadPartCopy(key: string, uploadId: string, partNumber: number, source: { key: string; etag: string }, start: number, end: number): Promise<string> {
    const output = await this.call('upload_part_copy', `copy part ${partNumber} of ${key} from ${source.key}`, () =>
      this.client.send(
        new UploadPartCopyCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: partNumber,
          CopySource: copySource(this.bucket, source.key),
          CopySourceIfMatch: source.etag,
          CopySourceRange: `bytes=${start}-${end - 1}`,
        }),
      ),
    );
    return output.CopyPartResult?.ETag ?? '';
  }

  async completeMultipart(key: string, uploadId: string, partEtags: string[]): Promise<ObjectInfo> {
    const output = await this.call('complete_multipart', `complete multipart ${key}`, () =>
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
    await this.call('abort_multipart', `abort multipart ${key}`, () =>
      this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId })),
    );
  }

  async copy(from: CopySource, to: string, metadata?: Record<string, string>): Promise<ObjectInfo> {
    const directive = metadata ? 'REPLACE' : 'COPY';
    const what = `copy ${from.key} (${from.etag}) to ${to}`;
    if (from.size <= MAX_SINGLE_COPY) {
      const output = await this.call('copy', what, () =>
        this.client.send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key: to,
            CopySource: copySource(this.bucket, from.key),
            CopySourceIfMatch: from.etag,
            MetadataDirective: directive,
            Metadata: metadata,
          }),
        ),
      );
      return this.infoAfterWrite(to, output.CopyObjectResult?.ETag, from.size);
    }
    const uploadId = await this.createMultipart(to, metadata ?? (await this.sourceMetadata(from)));
    try {
      const etags: string[] = [];
      for (let start = 0; start < from.size; start += COPY_PART_SIZE) {
        etags.push(await this.uploadPartCopy(to, uploadId, etags.length + 1, from, start, Math.min(from.size, start + COPY_PART_SIZE)));
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
    await this.call('delete', `delete ${key}`, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  async deleteMany(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      const output = await this.call('delete_objects', `delete ${batch.length} objects`, () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } })),
      );
      const failed = output.Errors?.[0];
      if (failed) throw new StoreError('Server', `delete ${failed.Key}: ${failed.Code} ${failed.Message ?? ''}`.trim());
    }
  }

  /**
   * What a write left: the store's word on size and time, which later listings will repeat.
   * The version is the one written (its ETag and, where known, size), never another: a HEAD that
   * finds someone else's write since, or a size other than the one written, is not believed.
   */
  private async infoAfterWrite(key: string, etag: string | undefined, size?: number): Promise<ObjectInfo> {
    const info = await this.head(key);
    if (!info) throw new StoreError('Server', `${key} is missing right after it was written`);
    // Ceph RGW 16.2 returns a copy's ETag without the quotes its HEAD has.
    if (etag && unquoted(info.etag) !== unquoted(etag)) {
      debug('%s changed again right after it was written', key);
      return { key, etag: `"${unquoted(etag)}"`, size: size ?? info.size, mtime: new Date() };
    }
    if (size !== undefined && info.size !== size) {
      throw new StoreError('Server', `${key}: the store reports ${info.size} bytes for the ${size} just written`);
    }
    return info;
  }

  /** One request: `op` names it for metrics, `what` for messages. */
  private async call<T>(op: string, what: string, request: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const result = await request();
      this.observer?.request(op, (performance.now() - started) / 1000, false);
      return result;
    } catch (err) {
      this.observer?.request(op, (performance.now() - started) / 1000, true);
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
    if (!kind && e.code && (UNREACHABLE_CODES.has(e.code) || UNTRUSTED_CERTIFICATE_CODES.has(e.code))) kind = 'Unreachable';
    if (!kind && status === 404) kind = 'NotFound';
    if (!kind && status === 403) kind = 'AccessDenied';
    if (!kind && status === 412) kind = 'PreconditionFailed';
    if (!kind && e.name === 'AbortError') kind = 'Timeout';
    kind ??= 'Server';
    return new StoreError(kind, `${what}: ${describe(kind, e, this.description, this.caBundle)}`, err);
  }
}

function unquoted(etag: string): string {
  return etag.replace(/"/g, '');
}

/** x-amz-copy-source: URL-encoded, but with the characters s3rver's decodeURI leaves alone kept as they are. */
function copySource(bucket: string, key: string): string {
  return encodeURI(`${bucket}/${key}`).replace(/\?/g, '%3F').replace(/#/g, '%23');
}

function describe(kind: StoreErrorKind, err: Error & { code?: string }, where: string, caBundle: StoreConfig['caBundle']): string {
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
      if (err.code && UNTRUSTED_CERTIFICATE_CODES.has(err.code)) {
        const trusted = caBundle ? `the CAs of ${caBundle.path} (${caBundle.source})` : 'the built-in CAs; give yours with AWS_CA_BUNDLE or ca_bundle in the profile';
        return `the TLS certificate of ${where} does not verify against ${trusted} (${err.code}: ${err.message})`;
      }
      return `cannot reach ${where} (${err.code ?? err.message})`;
    default:
      return err instanceof S3ServiceException ? `${err.name}: ${err.message}` : err.message || err.name;
  }
}
