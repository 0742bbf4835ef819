/** The part of fuse-native (which ships no types) that stagefs uses. */
declare module 'fuse-native' {
  type Callback = (result: number, ...values: unknown[]) => void;

  interface FuseStat {
    mode: number;
    uid: number;
    gid: number;
    size: number;
    nlink: number;
    ino: number;
    blocks: number;
    blksize: number;
    atime: Date;
    mtime: Date;
    ctime: Date;
  }

  interface FuseStatfs {
    bsize: number;
    frsize: number;
    blocks: number;
    bfree: number;
    bavail: number;
    files: number;
    ffree: number;
    favail: number;
    fsid: number;
    flag: number;
    namemax: number;
  }

  type Operations = Record<string, (...args: any[]) => void>;

  interface FuseOptions {
    force?: boolean;
    mkdir?: boolean;
    timeout?: number | false;
    fsname?: string;
    subtype?: string;
    allowOther?: boolean;
    defaultPermissions?: boolean;
    autoCache?: boolean;
    entryTimeout?: number;
    attrTimeout?: number;
    maxRead?: number;
    debug?: boolean;
  }

  class Fuse {
    constructor(mountpoint: string, ops: Operations, options?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
  }

  export = Fuse;
}
