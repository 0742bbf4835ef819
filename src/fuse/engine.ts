/** What the daemon needs of a FUSE engine: mount the filesystem, and take it down. */
export interface EngineOptions {
  mountpoint: string;
  /** Shown as the mount's source in /proc/mounts and df. */
  source: string;
  allowOther: boolean;
  readOnly: boolean;
  /** How long the kernel may cache attributes and names. */
  kernelCacheSeconds: number;
  /** Memory for the replies of reads being filled at once, where the engine fills them itself. */
  readMemoryBytes: number;
}

/** What an engine has served since it mounted, for metrics. */
export interface EngineStats {
  /** FUSE requests answered, by operation name (reads answered in C included). */
  requests: ReadonlyMap<string, number>;
  /** Reads the native engine answered in C from staged bytes, and their bytes. */
  fastReads: number;
  fastReadBytes: number;
  /**
   * Opens handed to the kernel with FUSE passthrough, and those open now. The kernel reads such
   * files itself and tells nobody, so their reads cannot be counted; their opens can.
   */
  passthroughOpens: number;
  passthroughOpenFiles: number;
}

/** Counts requests by operation name. */
export class RequestCounts {
  readonly byOp = new Map<string, number>();

  add(op: string, count = 1): void {
    this.byOp.set(op, (this.byOp.get(op) ?? 0) + count);
  }
}

export interface Engine {
  readonly name: string;
  /**
   * Resolves once the kernel has ended the FUSE connection: after umount(8) or fusermount -u, or,
   * after a lazy unmount (umount -l), once the last file left open on the mount is closed.
   */
  readonly closed: Promise<void>;
  mount(): Promise<void>;
  /** Detaches the mount and stops serving. */
  unmount(): Promise<void>;
  stats(): EngineStats;
}
