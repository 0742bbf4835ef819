/**
 * An in-memory ObjectStore for unit tests of pure logic (namespace, cache bookkeeping). Mount
 * tests use the real S3 server instead. It lists like S3 (sorted keys, delimiter, pages, no user
 * metadata) and counts the requests it serves.
 */
import { createHash } from 'node:crypto';
import { StoreError } from '../../src/errors';
import type { CopySource, ListOptions, ListPage, ObjectInfo, ObjectStore } from '../../src/store/object-store';

interface Stored {
  body: Buffer;
  info: ObjectInfo;
}

export class MemoryStore implements ObjectStore {
  readonly description = 'memory';
  readonly objects = new Map<string, Stored>();
  getCount = 0;
  /** The [start, end) of every GET, in order. */
  rangesGot: Array<[number, number]> = [];
  listCount = 0;
  headCount = 0;
  /** When set, GETs fail with this error. */
  failGets: StoreError | undefined;
  /** Delay before each GET answers, to let concurrent readers pile up. */
  getDelayMs = 0;

  async checkAccess(): Promise<void> {}

  private readonly uploads = new Map<string, Buffer[]>();
  private nextUpload = 1;

  async put(key: string, body: Uint8Array, metadata: Record<string, string> = {}): Promise<ObjectInfo> {
    const buffer = Buffer.from(body);
    const info = { key, size: buffer.length, etag: `"${createHash('md5').update(buffer).digest('hex')}"`, mtime: new Date(), metadata };
    this.objects.set(key, { body: buffer, info });
    return info;
  }

  private readonly uploadMetadata = new Map<string, Record<string, string>>();

  async createMultipart(_key: string, metadata: Record<string, string> = {}): Promise<string> {
    const id = String(this.nextUpload++);
    this.uploads.set(id, []);
    this.uploadMetadata.set(id, metadata);
    return id;
  }

  async uploadPart(_key: string, uploadId: string, partNumber: number, body: Uint8Array): Promise<string> {
    const parts = this.uploads.get(uploadId);
    if (!parts) throw new StoreError('NotFound', `no such upload ${uploadId}`);
    parts[partNumber - 1] = Buffer.from(body);
    return `"part${partNumber}"`;
  }

  async uploadPartCopy(_key: string, uploadId: string, partNumber: number, source: { key: string; etag: string }, start: number, end: number): Promise<string> {
    const stored = this.objects.get(source.key);
    if (!stored) throw new StoreError('NotFound', `no such key ${source.key}`);
    if (stored.info.etag !== source.etag) throw new StoreError('PreconditionFailed', `${source.key} changed`);
    const parts = this.uploads.get(uploadId);
    if (!parts) throw new StoreError('NotFound', `no such upload ${uploadId}`);
    parts[partNumber - 1] = Buffer.from(stored.body.subarray(start, end));
    return `"copy${partNumber}"`;
  }

  async completeMultipart(key: string, uploadId: string, partEtags: string[]): Promise<ObjectInfo> {
    const parts = this.uploads.get(uploadId);
    if (!parts) throw new StoreError('NotFound', `no such upload ${uploadId}`);
    if (parts.length !== partEtags.length || Array.from(parts).some((part) => part === undefined)) throw new StoreError('Server', `upload ${uploadId}: parts missing`);
    this.uploads.delete(uploadId);
    return this.put(key, Buffer.concat(parts), this.uploadMetadata.get(uploadId));
  }

  async abortMultipart(_key: string, uploadId: string): Promise<void> {
    this.uploads.delete(uploadId);
  }

  async copy(from: CopySource, to: string, metadata?: Record<string, string>): Promise<ObjectInfo> {
    const source = this.objects.get(from.key);
    if (!source) throw new StoreError('NotFound', `no such key ${from.key}`);
    if (source.info.etag !== from.etag) throw new StoreError('PreconditionFailed', `${from.key} changed`);
    return this.put(to, source.body, metadata ?? source.info.metadata);
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async deleteMany(keys: string[]): Promise<void> {
    for (const key of keys) this.objects.delete(key);
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    this.listCount++;
    const maxKeys = options.maxKeys ?? 1000;
    const delimiter = options.delimiter ?? '';
    // The token is the last name returned; a prefix returned covers every key under it.
    const after = options.continuationToken ?? '';
    const coveredByToken = (key: string) => key <= after || (delimiter !== '' && after.endsWith(delimiter) && key.startsWith(after));
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix) && !coveredByToken(k)).sort();
    const page: ListPage = { objects: [], prefixes: [], continuationToken: undefined };
    let last = '';
    for (const key of keys) {
      const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
      const name = cut >= 0 ? key.slice(0, cut + delimiter.length) : key;
      if (name === last) continue;
      if (page.objects.length + page.prefixes.length >= maxKeys) {
        page.continuationToken = last;
        break;
      }
      if (cut >= 0) page.prefixes.push(name);
      else page.objects.push(listedInfo(this.objects.get(key)!.info));
      last = name;
    }
    return page;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.headCount++;
    return this.objects.get(key)?.info;
  }

  async getRange(key: string, start: number, end: number, etag: string): Promise<AsyncIterable<Uint8Array>> {
    this.getCount++;
    this.rangesGot.push([start, end]);
    if (this.getDelayMs) await new Promise((resolve) => setTimeout(resolve, this.getDelayMs));
    if (this.failGets) throw this.failGets;
    const stored = this.objects.get(key);
    if (!stored) throw new StoreError('NotFound', `no such key ${key}`);
    if (stored.info.etag !== etag) throw new StoreError('PreconditionFailed', `${key} changed`);
    const bytes = stored.body.subarray(start, end);
    return (async function* () {
      // Chunks of odd sizes, as a network delivers them.
      for (let offset = 0; offset < bytes.length; offset += 7919) yield bytes.subarray(offset, offset + 7919);
    })();
  }
}

/** What a listing tells of an object: as S3, no user metadata. */
function listedInfo(info: ObjectInfo): ObjectInfo {
  return { key: info.key, size: info.size, etag: info.etag, mtime: info.mtime };
}
