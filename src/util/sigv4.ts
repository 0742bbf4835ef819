/** The parts of AWS Signature Version 4 that signing a request and checking one share. */
import { createHash, createHmac } from 'node:crypto';

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** The key a day's requests to `service` in `region` are signed with (`day`: YYYYMMDD). */
export function signingKey(secret: string, day: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
}

/** The string a request's signature is the HMAC of, from its canonical form. */
export function stringToSign(amzDate: string, scope: string, canonicalRequest: string): string {
  return `${SIGV4_ALGORITHM}\n${amzDate}\n${scope}\n${createHash('sha256').update(canonicalRequest).digest('hex')}`;
}

/** The hex signature of `text` under `key`. */
export function signatureOf(key: Buffer, text: string): string {
  return hmac(key, text).toString('hex');
}

/** A header's line in a canonical request: its value trimmed, runs of spaces made one. */
export function canonicalHeaderLine(name: string, value: string): string {
  return `${name}:${value.trim().replace(/\s+/g, ' ')}\n`;
}
