/** Reading objects straight from the test server, to check what the mount uploaded. */
import { createHash } from 'node:crypto';
import type { TestS3 } from './s3';

export async function objectBytes(s3: TestS3, key: string): Promise<Buffer | undefined> {
  const info = await s3.store.head(key);
  if (!info) return undefined;
  if (info.size === 0) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of await s3.store.getRange(key, 0, info.size, info.etag)) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

export async function objectSha256(s3: TestS3, key: string): Promise<string | undefined> {
  const info = await s3.store.head(key);
  if (!info) return undefined;
  const hash = createHash('sha256');
  if (info.size > 0) for await (const chunk of await s3.store.getRange(key, 0, info.size, info.etag)) hash.update(chunk);
  return hash.digest('hex');
}

export async function keys(s3: TestS3, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  let continuationToken: string | undefined;
  do {
    const page = await s3.store.list(prefix, { continuationToken });
    found.push(...page.objects.map((o) => o.key));
    continuationToken = page.continuationToken;
  } while (continuationToken);
  return found.sort();
}
