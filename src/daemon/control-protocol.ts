/**
 * The control socket's protocol: one JSON request line from an admin command, then JSON
 * reply lines from the mount until `end`.
 */
import type { ScrubReport } from '../cache/staging-cache';

export type ControlOp = 'prefetch' | 'pin' | 'unpin' | 'evict' | 'verify';

export interface ControlRequest {
  op: ControlOp;
  /** Paths inside the mount, each starting with '/'; none for `verify` checks the whole cache. */
  paths: string[];
}


export type ControlReply =
  /** The files the request covers, once directories are expanded. */
  | { type: 'plan'; files: Array<{ path: string; size: number }> }
  | { type: 'progress'; path: string; staged: number; size: number }
  | { type: 'done'; path: string; ok: true; detail?: string; scrub?: ScrubReport }
  | { type: 'done'; path: string; ok: false; error: string }
  | { type: 'end' };

export function encode(message: ControlRequest | ControlReply): string {
  return JSON.stringify(message) + '\n';
}

/** Splits a byte stream into JSON lines. */
export async function* decodeLines<T>(stream: AsyncIterable<Buffer | string>): AsyncGenerator<T> {
  let pending = '';
  for await (const chunk of stream) {
    pending += chunk.toString();
    let newline: number;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line.trim()) yield JSON.parse(line) as T;
    }
  }
}
