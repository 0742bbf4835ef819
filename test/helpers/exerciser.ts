/**
 * A model-based random exerciser of file contents, in the spirit of fsx: random writes,
 * truncates, reads, closes and reopens, fsyncs and remounts of a few files, each checked against
 * an in-memory shadow of what the files must hold, and the store checked against the shadow
 * after every successful close of a writer, fsync and remount. Seeded, so a failure repeats.
 * The same exerciser drives a real mount and the filesystem code without FUSE.
 */
import { seeded } from './files';

/** What the exerciser drives: a mount through the kernel, or the filesystem code directly. */
export interface ExerciseTarget {
  /** Opens `name` for reading and writing, creating it when missing; `truncate` empties it. */
  open(name: string, truncate: boolean): Promise<number>;
  read(handle: number, position: number, length: number): Promise<Buffer>;
  write(handle: number, position: number, data: Buffer): Promise<void>;
  truncate(handle: number, size: number): Promise<void>;
  fsync(handle: number): Promise<void>;
  close(handle: number): Promise<void>;
  /** Takes the mount down and up again (every handle is closed first). */
  remount(): Promise<void>;
  /** The object's bytes in the store, undefined when there is none. */
  stored(name: string): Promise<Buffer | undefined>;
}

export interface ExerciseOptions {
  seed: number;
  operations: number;
  files: number;
  maxSize: number;
  /** Largest single write. */
  maxWrite: number;
  /** One remount in this many operations (0: never). */
  remountEvery: number;
  /** Writes may fail with ENOSPC (a cache too small for the file): the file then reverts to what the store has. */
  allowNoSpace?: boolean;
  /** A read error that says the bytes are not readable yet (not wrong), which such a cache allows. */
  unreadable?: (err: unknown) => boolean;
}

export interface ExerciseReport {
  operations: number;
  writes: number;
  reads: number;
  truncates: number;
  reopens: number;
  fsyncs: number;
  remounts: number;
  storeChecks: number;
  noSpace: number;
  unreadable: number;
  /** Every mismatch, with the operation number; empty when the run is clean. */
  failures: string[];
}

/** A file's expected bytes: a buffer with room to grow, so appends do not copy the file each time. */
class Shadow {
  private bytes = Buffer.alloc(0);
  private length = 0;

  get content(): Buffer {
    return this.bytes.subarray(0, this.length);
  }

  get size(): number {
    return this.length;
  }

  set(content: Buffer): void {
    this.bytes = Buffer.from(content);
    this.length = content.length;
  }

  write(position: number, data: Buffer): void {
    this.resize(Math.max(this.length, position + data.length));
    data.copy(this.bytes, position);
  }

  resize(size: number): void {
    if (size > this.bytes.length) {
      const grown = Buffer.alloc(Math.max(size, this.bytes.length * 2));
      this.bytes.copy(grown, 0, 0, this.length);
      this.bytes = grown;
    } else if (size < this.length) {
      this.bytes.fill(0, size, this.length);
    }
    this.length = size;
  }
}

interface ModelFile {
  name: string;
  shadow: Shadow;
  /** What the store held after the last successful upload the exerciser saw. */
  stored: Buffer | undefined;
  handles: number[];
  /** A write failed with ENOSPC: the content is the store's again once every handle closed. */
  failed: boolean;
}

const MAX_MISMATCHES = 20;

export async function exercise(target: ExerciseTarget, options: ExerciseOptions): Promise<ExerciseReport> {
  const random = seeded(options.seed);
  const below = (n: number) => Math.floor(random() * n);
  const report: ExerciseReport = { operations: 0, writes: 0, reads: 0, truncates: 0, reopens: 0, fsyncs: 0, remounts: 0, storeChecks: 0, noSpace: 0, unreadable: 0, failures: [] };
  const files: ModelFile[] = Array.from({ length: options.files }, (_, i) => ({
    name: `fsx-${options.seed}-${i}.img`,
    shadow: new Shadow(),
    stored: undefined,
    handles: [],
    failed: false,
  }));
  let op = 0;
  const fail = (what: string) => {
    if (report.failures.length < MAX_MISMATCHES) report.failures.push(`op ${op}: ${what}`);
  };
  const noSpace = (err: unknown, file: ModelFile): boolean => {
    if (!options.allowNoSpace || (err as NodeJS.ErrnoException).code !== 'ENOSPC') return false;
    report.noSpace++;
    file.failed = true;
    return true;
  };
  const checkStore = async (file: ModelFile, when: string) => {
    report.storeChecks++;
    const stored = await target.stored(file.name);
    file.stored = stored;
    if (!stored) return fail(`${file.name}: not in the store after ${when}`);
    if (!stored.equals(file.shadow.content)) fail(`${file.name}: the store differs after ${when} (${describeDifference(stored, file.shadow.content)})`);
  };
  const closeHandle = async (file: ModelFile, handle: number) => {
    file.handles = file.handles.filter((h) => h !== handle);
    try {
      await target.close(handle);
      if (!file.failed) await checkStore(file, 'close');
    } catch (err) {
      if (!file.failed) fail(`${file.name}: close failed: ${(err as Error).message}`);
    }
    if (file.failed && file.handles.length === 0) {
      // Nothing of a failed file is published: it reads as the store has it.
      file.shadow.set((await target.stored(file.name)) ?? Buffer.alloc(0));
      if (file.stored && !file.shadow.content.equals(file.stored)) fail(`${file.name}: the store changed after a failed write`);
      file.failed = false;
    }
  };
  const openHandle = async (file: ModelFile, wantTruncate: boolean) => {
    // O_TRUNC on a failed file starts a new file beside it, which this model does not follow.
    const truncate = wantTruncate && !file.failed;
    try {
      file.handles.push(await target.open(file.name, truncate));
      if (truncate) file.shadow.resize(0);
    } catch (err) {
      if (!noSpace(err, file)) throw err;
    }
  };
  const checkRead = async (file: ModelFile, handle: number, position: number, length: number) => {
    report.reads++;
    let got: Buffer;
    try {
      got = await target.read(handle, position, length);
    } catch (err) {
      if (!options.unreadable?.(err)) throw err;
      report.unreadable++;
      return;
    }
    if (file.failed) return;
    const content = file.shadow.content;
    const want = content.subarray(Math.min(position, content.length), Math.min(content.length, position + length));
    if (!got.equals(want)) fail(`${file.name}: read ${position}+${length} differs (${describeDifference(got, want)})`);
  };

  for (op = 0; op < options.operations && report.failures.length < MAX_MISMATCHES; op++) {
    report.operations++;
    const file = files[below(files.length)];
    if (file.handles.length === 0) {
      await openHandle(file, random() < 0.1);
      if (file.handles.length === 0) continue;
    }
    const handle = file.handles[below(file.handles.length)];
    const size = file.shadow.size;
    const choice = random();
    try {
      if (options.remountEvery && below(options.remountEvery) === 0) {
        for (const f of files) for (const h of [...f.handles]) await closeHandle(f, h);
        await target.remount();
        report.remounts++;
        for (const f of files) {
          if (f.shadow.size === 0 && f.stored === undefined) continue;
          await checkStore(f, 'remount');
          const whole = await target.open(f.name, false);
          f.handles.push(whole);
          await checkRead(f, whole, 0, f.shadow.size + 1);
        }
      } else if (choice < 0.4) {
        // Mostly appends and overwrites near the end (sequential writers), some anywhere, some past the end.
        const where = random();
        const position = where < 0.5 ? Math.max(0, size - below(4096)) : where < 0.9 ? below(size + 1) : size + below(options.maxWrite);
        const length = 1 + below(random() < 0.8 ? Math.min(options.maxWrite, 65536) : options.maxWrite);
        if (position + length > options.maxSize) continue;
        const data = randomBytes(random, length);
        report.writes++;
        try {
          await target.write(handle, position, data);
          if (!file.failed) file.shadow.write(position, data);
        } catch (err) {
          if (!noSpace(err, file)) throw err;
        }
      } else if (choice < 0.65) {
        const position = below(size + 1);
        await checkRead(file, handle, position, 1 + below(Math.max(1, Math.min(size - position + 100, 256 * 1024))));
      } else if (choice < 0.7) {
        const newSize = random() < 0.5 ? below(size + 1) : Math.min(options.maxSize, size + below(options.maxWrite));
        report.truncates++;
        try {
          await target.truncate(handle, newSize);
          if (!file.failed) file.shadow.resize(newSize);
        } catch (err) {
          if (!noSpace(err, file)) throw err;
        }
      } else if (choice < 0.74) {
        report.fsyncs++;
        try {
          await target.fsync(handle);
          if (!file.failed) await checkStore(file, 'fsync');
        } catch (err) {
          if (!file.failed) fail(`${file.name}: fsync failed: ${(err as Error).message}`);
        }
      } else if (choice < 0.94) {
        // Close and reopen: one in five operations, as fsx-linux -c 5.
        report.reopens++;
        await closeHandle(file, handle);
        await openHandle(file, random() < 0.05);
      } else if (choice < 0.97) {
        await openHandle(file, false);
      } else {
        await checkRead(file, handle, 0, size + 1);
      }
    } catch (err) {
      fail(`${file.name}: ${(err as Error).message}`);
    }
  }
  for (const file of files) for (const handle of [...file.handles]) await closeHandle(file, handle);
  return report;
}

function randomBytes(random: () => number, length: number): Buffer {
  const data = Buffer.allocUnsafe(length);
  // A byte pattern that differs at every offset and from zeros, so misplaced or lost bytes show.
  const seed = Math.floor(random() * 256);
  for (let i = 0; i < length; i++) data[i] = (seed + i * 7 + (i >> 8)) & 0xff || 1;
  return data;
}

function describeDifference(got: Buffer, want: Buffer): string {
  if (got.length !== want.length) return `${got.length} bytes instead of ${want.length}`;
  const at = got.findIndex((byte, i) => byte !== want[i]);
  const zeros = got.subarray(at, Math.min(got.length, at + 64)).every((b) => b === 0);
  return `first difference at byte ${at}${zeros ? ', zeros' : ''}`;
}
