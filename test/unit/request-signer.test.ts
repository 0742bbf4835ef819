/** The lean signer signs as the reference SigV4 implementation (@smithy/signature-v4) does. */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import type { SourceData } from '@smithy/types';
import t from 'tap';
import { RequestSigner, type SigningCredentials } from '../../src/store/request-signer';

function bytesOf(data: SourceData): string | Uint8Array {
  if (typeof data === 'string') return data;
  return data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** SHA-256 (and its HMAC) in the shape the reference signer takes. */
class NodeSha256 {
  private hash: Hash | Hmac;
  private readonly secret: string | Uint8Array | undefined;
  constructor(secret?: SourceData) {
    this.secret = secret === undefined ? undefined : bytesOf(secret);
    this.hash = this.make();
  }
  private make(): Hash | Hmac {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', this.secret);
  }
  update(data: SourceData): void {
    this.hash.update(bytesOf(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    this.hash = this.make();
  }
}

const cases: Array<{ what: string; method: 'GET' | 'HEAD'; path: string; headers: Record<string, string>; credentials: SigningCredentials; region: string }> = [
  { what: 'a ranged GET at an ETag', method: 'GET', path: '/bucket/vm/disk.img', headers: { host: '127.0.0.1:7480', range: 'bytes=0-1048575', 'if-match': '"0123456789abcdef0123456789abcdef"' }, credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' }, region: 'us-east-1' },
  { what: 'a HEAD asking for checksums, with a session token', method: 'HEAD', path: '/b/dir/with%20space%2Bplus%26amp', headers: { host: 's3.eu-west-3.amazonaws.com', 'x-amz-checksum-mode': 'ENABLED' }, credentials: { accessKeyId: 'ASIAEXAMPLE', secretAccessKey: 'secret', sessionToken: 'FwoGZXIvYXdzE//token==' }, region: 'eu-west-3' },
  { what: 'a virtual-hosted key of odd bytes', method: 'GET', path: '/%E2%82%AC/%21%27%28%29%2A/a~b_c.d-e', headers: { host: 'bucket.s3.amazonaws.com', range: 'bytes=5-9', 'if-match': '"etag-3"' }, credentials: { accessKeyId: 'AK', secretAccessKey: 's' }, region: 'ap-southeast-2' },
];

for (const c of cases) {
  t.test(c.what, async (t) => {
    const date = new Date('2026-12-04T02:13:06.123Z');
    const reference = new SignatureV4({ credentials: c.credentials, region: c.region, service: 's3', sha256: NodeSha256, uriEscapePath: false, applyChecksum: false });
    const expected = await reference.sign(
      { method: c.method, protocol: 'https:', hostname: c.headers.host, path: c.path, query: {}, headers: { ...c.headers, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } },
      { signingDate: date },
    );
    const signer = new RequestSigner(async () => c.credentials, c.region);
    const signed = await signer.sign(c.method, c.path, c.headers, date);
    t.same(signed, expected.headers, 'the same headers, signature included');
    t.same(await signer.sign(c.method, c.path, c.headers, date), signed, 'and again with the signing key kept');
  });
}

t.test('a new day or a new secret signs with a new key', async (t) => {
  let credentials: SigningCredentials = { accessKeyId: 'AK', secretAccessKey: 'one' };
  const signer = new RequestSigner(async () => credentials, 'us-east-1');
  const headers = { host: 'h' };
  const first = await signer.sign('GET', '/b/k', headers, new Date('2026-12-04T23:59:59Z'));
  const nextDay = await signer.sign('GET', '/b/k', headers, new Date('2026-12-05T00:00:00Z'));
  t.match(nextDay.authorization, /Credential=AK\/20261205\/us-east-1\/s3\/aws4_request/, 'the scope is the new day\'s');
  credentials = { accessKeyId: 'AK', secretAccessKey: 'two' };
  const rotated = await signer.sign('GET', '/b/k', headers, new Date('2026-12-04T23:59:59Z'));
  t.not(rotated.authorization, first.authorization, 'a rotated secret changes the signature');
});
