/** What the daemon needs of a FUSE engine: mount the filesystem, and take it down. */
export interface EngineOptions {
  mountpoint: string;
  /** Shown as the mount's source in /proc/mounts and df. */
  source: string;
  allowOther: boolean;
  readOnly: boolean;
  /** How long the kernel may cache attributes and names. */
  kernelCacheSeconds: number;
}

export interface Engine {
  readonly name: string;
  mount(): Promise<void>;
  /** Detaches the mount and stops serving. */
  unmount(): Promise<void>;
}
