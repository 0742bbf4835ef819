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
  if (text === undefined || !/^-?\d+(\.\d+)?$/.test(text.trim())) return undefined;
  const value = Math.round(Number(text.trim()) * 1000);
  return Number.isFinite(value) ? value : undefined;
}
