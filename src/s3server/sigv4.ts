/**
 * Verification of AWS Signature Version 4 on the Authorization header. s3rver checks only that
 * the access key exists; the embedded server checks the signature too, so a wrong secret is
 * refused as real S3 refuses it.
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { canonicalHeaderLine, signatureOf, signingKey, stringToSign } from '../util/sigv4';

export type SignatureCheck = { ok: true } | { ok: false; code: 'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | 'AuthorizationHeaderMalformed'; accessKeyId?: string };

const AUTH_PATTERN = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/;

function encodeRfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function canonicalQuery(query: string): string {
  if (!query) return '';
  return query
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const eq = pair.indexOf('=');
      const key = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, ' '));
      const value = eq < 0 ? '' : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, ' '));
      return [encodeRfc3986(key), encodeRfc3986(value)] as const;
    })
    .sort(([ak, av], [bk, bv]) => (ak === bk ? (av < bv ? -1 : av > bv ? 1 : 0) : ak < bk ? -1 : 1))
    .map(([key, value]) => `${key}=${value}`)
    .join('&');
}

/** Checks a request signed in its Authorization header; other requests are left to s3rver. */
export function checkSignature(
  method: string,
  url: string,
  headers: IncomingHttpHeaders,
  secretFor: (accessKeyId: string) => string | undefined,
): SignatureCheck | undefined {
  const authorization = headers.authorization;
  if (!authorization?.startsWith('AWS4-HMAC-SHA256')) return undefined;
  const match = AUTH_PATTERN.exec(authorization);
  if (!match) return { ok: false, code: 'AuthorizationHeaderMalformed' };
  const [, accessKeyId, date, region, service, signedHeaders, signature] = match;
  const secret = secretFor(accessKeyId);
  if (secret === undefined) return { ok: false, code: 'InvalidAccessKeyId', accessKeyId };
  const queryStart = url.indexOf('?');
  const path = queryStart < 0 ? url : url.slice(0, queryStart);
  const query = queryStart < 0 ? '' : url.slice(queryStart + 1);
  const headerLines = signedHeaders
    .split(';')
    .map((name) => {
      const value = headers[name];
      return canonicalHeaderLine(name, Array.isArray(value) ? value.join(',') : (value ?? ''));
    })
    .join('');
  const payloadHash = String(headers['x-amz-content-sha256'] ?? 'UNSIGNED-PAYLOAD');
  const canonicalRequest = [method, path, canonicalQuery(query), headerLines, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const text = stringToSign(String(headers['x-amz-date'] ?? ''), scope, canonicalRequest);
  const expected = Buffer.from(signatureOf(signingKey(secret, date, region, service), text));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given) ? { ok: true } : { ok: false, code: 'SignatureDoesNotMatch', accessKeyId };
}
