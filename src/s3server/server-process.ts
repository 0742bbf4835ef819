/**
 * The embedded S3 server's own process: s3rver on loopback. It runs apart from any mount so a
 * reader of the mount never shares an event loop with the server, and under
 * --openssl-legacy-provider, which s3rver's DES continuation tokens need past 1,000 keys.
 * Optionally logs every request as a JSON line, which tests use to count GETs.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import S3rver from 's3rver';
import FilesystemStore from 's3rver/lib/stores/filesystem';
import S3Object from 's3rver/lib/models/object';
import { listKeys, type ListRequest } from './list-objects';

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
  const { port } = await server.run();
  const logPath = values['request-log'];
  if (logPath) {
    const fd = openSync(logPath, 'a');
    server.httpServer.on('request', (req, res) => {
      res.on('close', () => {
        const line: RequestLogLine = { method: req.method ?? '', url: req.url ?? '', range: req.headers.range, status: res.statusCode };
        writeSync(fd, JSON.stringify(line) + '\n');
      });
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
