/**
 * The embedded S3 server's own process: s3rver on loopback. It runs apart from any mount so a
 * reader of the mount never shares an event loop with the server, and under
 * --openssl-legacy-provider, which s3rver's DES continuation tokens need past 1,000 keys.
 * It checks V4 signatures and the conditions real S3 honours (If-Match on GET and HEAD,
 * x-amz-copy-source-if-match on copies), which s3rver ignores.
 * Optionally logs every request as a JSON line, which tests use to count GETs.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import S3rver from 's3rver';
import FilesystemStore from 's3rver/lib/stores/filesystem';
import S3Object from 's3rver/lib/models/object';
import S3Error from 's3rver/lib/models/error';
import AWSAccount from 's3rver/lib/models/account';
import { makeWritesAtomic } from './atomic-writes';
import { listKeys, type ListRequest } from './list-objects';
import { objectOfUrl } from './object-url';
import { checkSignature } from './sigv4';

export interface RequestLogLine {
  method: string;
  url: string;
  range: string | undefined;
  status: number;
}

FilesystemStore.prototype.listObjects = async function listObjects(this: FilesystemStore, bucket: string, options: ListRequest) {
  const { keys, commonPrefixes, isTruncated } = listKeys(this.getBucketPath(bucket), options);
  const metadata = await Promise.all(
    keys.map((key) =>
      this.getMetadata(bucket, key).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined; // deleted while listing
        throw err;
      }),
    ),
  );
  const objects = keys.flatMap((key, i) => (metadata[i] ? [new S3Object(bucket, key, null, metadata[i])] : []));
  return { objects, commonPrefixes, isTruncated };
};

makeWritesAtomic();

interface SignedContext {
  method: string;
  url: string;
  headers: import('node:http').IncomingHttpHeaders;
}

function unquote(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

/** The ETag of a stored object, or undefined when there is none (s3rver then answers NoSuchKey). */
async function etagOf(store: FilesystemStore, bucket: string, key: string): Promise<string | undefined> {
  try {
    return (await store.getMetadata(bucket, key)).etag;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** If-Match on reads and x-amz-copy-source-if-match on copies: 412 PreconditionFailed when the ETag differs. */
async function checkConditions(store: FilesystemStore, ctx: SignedContext): Promise<void> {
  const ifMatch = ctx.headers['if-match'];
  const copySource = ctx.headers['x-amz-copy-source'];
  const copyIfMatch = ctx.headers['x-amz-copy-source-if-match'];
  let target: { bucket: string; key: string } | undefined;
  let wanted: string | undefined;
  let condition = '';
  if ((ctx.method === 'GET' || ctx.method === 'HEAD') && typeof ifMatch === 'string') {
    target = objectOfUrl(ctx.url);
    wanted = ifMatch;
    condition = 'If-Match';
  } else if (ctx.method === 'PUT' && typeof copySource === 'string' && typeof copyIfMatch === 'string') {
    // As s3rver itself reads x-amz-copy-source.
    const source = decodeURI(copySource).replace(/^\//, '');
    const slash = source.indexOf('/');
    target = slash < 0 ? undefined : { bucket: source.slice(0, slash), key: source.slice(slash + 1) };
    wanted = copyIfMatch;
    condition = 'x-amz-copy-source-If-Match';
  }
  if (!target || wanted === undefined) return;
  const etag = await etagOf(store, target.bucket, target.key);
  if (etag !== undefined && wanted !== '*' && unquote(wanted) !== unquote(etag)) {
    throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: condition });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      directory: { type: 'string' },
      address: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      bucket: { type: 'string', multiple: true, default: [] },
      'request-log': { type: 'string' },
    },
  });
  if (!values.directory) throw new Error('--directory is required');
  const server = new S3rver({
    address: values.address,
    port: Number(values.port),
    directory: values.directory,
    silent: true,
    configureBuckets: (values.bucket ?? []).map((name) => ({ name })),
  });
  // Runs before s3rver's own middleware, which does not check V4 signatures.
  (server as unknown as { middleware: Array<(ctx: SignedContext, next: () => Promise<void>) => Promise<void>> }).middleware.unshift(
    async (ctx, next) => {
      const check = checkSignature(ctx.method, ctx.url, ctx.headers, (id) => AWSAccount.registry.get(id)?.accessKeys.get(id));
      if (check && !check.ok) {
        const messages = {
          InvalidAccessKeyId: 'The AWS Access Key Id you provided does not exist in our records.',
          SignatureDoesNotMatch: 'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
          AuthorizationHeaderMalformed: 'The authorization header is malformed.',
        };
        throw new S3Error(check.code, messages[check.code], check.accessKeyId ? { AWSAccessKeyId: check.accessKeyId } : {});
      }
      await next();
    },
  );
  (server as unknown as { middleware: Array<(ctx: SignedContext, next: () => Promise<void>) => Promise<void>> }).middleware.splice(
    1,
    0,
    async (ctx, next) => {
      await checkConditions(server.store, ctx);
      await next();
    },
  );
  const { port } = await server.run();
  const logPath = values['request-log'];
  if (logPath) {
    const fd = openSync(logPath, 'a');
    // A request is logged as its response ends, before the client can see it whole, so a client
    // that has its answer finds the request in the log; one cut off is logged when it closes.
    server.httpServer.prependListener('request', (req, res) => {
      let logged = false;
      const log = () => {
        if (logged) return;
        logged = true;
        const line: RequestLogLine = { method: req.method ?? '', url: req.url ?? '', range: req.headers.range, status: res.statusCode };
        writeSync(fd, JSON.stringify(line) + '\n');
      };
      const end = res.end.bind(res) as (...args: unknown[]) => typeof res;
      res.end = ((...args: unknown[]) => {
        log();
        return end(...args);
      }) as typeof res.end;
      res.on('close', log);
    });
    process.on('exit', () => closeSync(fd));
  }
  const stop = () => void server.close().finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The parent is gone: nobody will stop this server, so it stops itself.
  process.on('disconnect', stop);
  process.send?.({ port });
}

main().catch((err: unknown) => {
  console.error(`s3 server: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
