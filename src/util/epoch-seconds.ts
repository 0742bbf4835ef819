/**
 * Times as s3fs writes them in x-amz-meta-mtime, -ctime and -atime: whole seconds since the
 * epoch, followed by nine digits of nanoseconds when there are any ("1700000000.250000000").
 */

/** `ms` since the epoch as s3fs's text. */
export function formatEpochSeconds(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  return nanos === 0 ? String(seconds) : `${seconds}.${String(nanos).padStart(9, '0')}`;
}

/** ms since the epoch of such a text (also of older forms such as "1700000000.250"), or undefined. */
export function parseEpochSeconds(text: string | undefined): number | undefined {
  const match = text === undefined ? null : /^(-?\d+)(\.\d+)?$/.exec(text.trim());
  if (!match) return undefined;
  // Whole seconds, then a fraction that adds to them (also after negative seconds, as s3fs reads it).
  const value = Number(match[1]) * 1000 + Math.round(Number(match[2] ?? 0) * 1000);
  return Number.isFinite(value) ? value : undefined;
}
