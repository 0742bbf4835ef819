/**
 * Readahead across the files of a directory: a reader that opens a directory's entries one after
 * another in listing order (a copy of a tree, a scan of small files, an image store walked by a
 * backup) waits on one GET per file, each a round trip to the store. Once two opens in a row
 * were neighbours in the listing, the next few entries are worth fetching before they are
 * opened; any other order (a random pick, a re-open) starts the count again, so random access
 * across a directory fetches nothing it did not ask for.
 */

/** Opens of consecutive entries that make a scan. */
const SCAN_RUN = 2;
/** Directories whose scans are remembered; the least recently opened goes first. */
const MAX_SCANS = 64;

interface Scan {
  position: number;
  run: number;
  /** Entries up to this position were handed out for fetching. */
  scheduledUntil: number;
}

export class DirectoryScans {
  private readonly scans = new Map<string, Scan>();

  /** @param ahead entries past the one opened that a scan keeps fetched or on their way */
  constructor(private readonly ahead: number) {}

  /**
   * An entry at `position` of the listing of `dir` was opened. Returns the positions
   * [from, to] whose entries to fetch now, none handed out before; undefined when none.
   */
  opened(dir: string, position: number): { from: number; to: number } | undefined {
    const scan = this.scans.get(dir) ?? { position: -2, run: 0, scheduledUntil: -1 };
    this.scans.delete(dir);
    this.scans.set(dir, scan);
    if (this.scans.size > MAX_SCANS) this.scans.delete(this.scans.keys().next().value as string);
    if (position === scan.position) return undefined;
    if (position === scan.position + 1) {
      scan.run++;
    } else {
      scan.run = 1;
      scan.scheduledUntil = position;
    }
    scan.position = position;
    if (scan.run < SCAN_RUN) return undefined;
    const from = Math.max(scan.scheduledUntil, position) + 1;
    const to = position + this.ahead;
    if (from > to) return undefined;
    scan.scheduledUntil = to;
    return { from, to };
  }
}
