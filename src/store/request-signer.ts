/**
 * AWS Signature Version 4 for the read path's GETs and HEADs, which every lookup and every block
 * fetch signs: the signature @smithy/signature-v4 makes for the same request, without its
 * generality (any query, payload hashing, presigning) and the garbage it costs per request. The
 * requests are always the same shape: an object path already encoded as sent, no query, an
 * unsigned payload, a few headers. Credentials come from the SDK client's provider, so the whole
 * AWS chain (and its refresh of expiring credentials) stays the SDK's.
 */
import { canonicalHeaderLine, SIGV4_ALGORITHM, signatureOf, signingKey, stringToSign } from '../util/sigv4';

export interface SigningCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export type CredentialsProvider = () => Promise<SigningCredentials>;

const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

/** 20261204T021300Z */
function amzDate(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

export class RequestSigner {
  /** The signing key of the day (it depends on the date, the secret, the region and the service only). */
  private key: { scope: string; secret: string; key: Buffer } | undefined;

  constructor(
    private readonly credentials: CredentialsProvider,
    private readonly region: string,
    private readonly service = 's3',
  ) {}

  /**
   * The headers to send: `headers` (names in lower case, `host` among them) with x-amz-date,
   * x-amz-content-sha256, the session token if any, and authorization.
   */
  async sign(method: string, path: string, headers: Record<string, string>, date = new Date()): Promise<Record<string, string>> {
    const { accessKeyId, secretAccessKey, sessionToken } = await this.credentials();
    const stamp = amzDate(date);
    const scope = `${stamp.slice(0, 8)}/${this.region}/${this.service}/aws4_request`;
    const signed: Record<string, string> = { ...headers, 'x-amz-date': stamp, 'x-amz-content-sha256': UNSIGNED_PAYLOAD };
    if (sessionToken) signed['x-amz-security-token'] = sessionToken;
    const names = Object.keys(signed).sort();
    const canonicalHeaders = names.map((name) => canonicalHeaderLine(name, signed[name])).join('');
    const signedHeaders = names.join(';');
    const canonicalRequest = `${method}\n${path}\n\n${canonicalHeaders}\n${signedHeaders}\n${UNSIGNED_PAYLOAD}`;
    const signature = signatureOf(this.keyFor(scope, secretAccessKey), stringToSign(stamp, scope, canonicalRequest));
    signed.authorization = `${SIGV4_ALGORITHM} Credential=${accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return signed;
  }

  private keyFor(scope: string, secret: string): Buffer {
    if (this.key?.scope !== scope || this.key.secret !== secret) {
      this.key = { scope, secret, key: signingKey(secret, scope.slice(0, 8), this.region, this.service) };
    }
    return this.key.key;
  }
}
