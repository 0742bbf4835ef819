/**
 * The portable engine: fuse-native (libfuse 2, high-level path API). It only translates FUSE
 * requests into Filesystem calls and errors into errno.
 */
import Fuse from 'fuse-native';
import { negativeErrno } from '../errors';
import type { Attr, Filesystem } from '../fs/filesystem';
import type { Engine, EngineOptions } from './engine';
import { logFailure } from './log';

type Reply = (result: number, ...values: unknown[]) => void;

function toStat(attr: Attr): object {
  return { ...attr };
}

export class FuseNativeEngine implements Engine {
  readonly name = 'fuse-native';
  private fuse: Fuse | undefined;

  constructor(
    private readonly fs: Filesystem,
    private readonly options: EngineOptions,
  ) {}

  async mount(): Promise<void> {
    const { options } = this;
    // fuse-native passes its options to libfuse as one -o list; libfuse options it has no name
    // for ride along after the fsname.
    const extra = ['use_ino', 'big_writes', `negative_timeout=${options.kernelCacheSeconds}`];
    if (options.readOnly) extra.push('ro');
    const source = /^[^,\s]+$/.test(options.source) ? options.source : 'stagefs';
    const fuse = new Fuse(options.mountpoint, this.operations(), {
      timeout: false,
      fsname: [source, ...extra].join(','),
      subtype: 'stagefs',
      allowOther: options.allowOther,
      defaultPermissions: options.allowOther,
      autoCache: true,
      entryTimeout: options.kernelCacheSeconds,
      attrTimeout: options.kernelCacheSeconds,
    });
    await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
    this.fuse = fuse;
  }

  async unmount(): Promise<void> {
    const fuse = this.fuse;
    if (!fuse) return;
    this.fuse = undefined;
    await new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())));
  }

  private operations(): Record<string, (...args: any[]) => void> {
    const fs = this.fs;
    return {
      init: (cb: Reply) => cb(0),
      getattr: (path: string, cb: Reply) => this.call('getattr', path, cb, () => fs.getattr(path), (attr) => cb(0, toStat(attr))),
      readdir: (path: string, cb: Reply) =>
        this.call('readdir', path, cb, () => fs.readdir(path), (entries) =>
          cb(0, entries.map((e) => e.name), entries.map((e) => toStat(e.attr))),
        ),
      open: (path: string, flags: number, cb: Reply) => this.call('open', path, cb, () => fs.open(path, flags), (fh) => cb(0, fh)),
      read: (path: string, fh: number, buffer: Buffer, length: number, position: number, cb: Reply) =>
        this.call('read', path, cb, () => fs.read(fh, buffer, length, position), (n) => cb(n)),
      release: (path: string, fh: number, cb: Reply) => this.call('release', path, cb, () => fs.release(fh), () => cb(0)),
      statfs: (path: string, cb: Reply) =>
        this.call('statfs', path, cb, async () => fs.statfs(), (s) =>
          cb(0, {
            bsize: s.blockSize,
            frsize: s.blockSize,
            blocks: s.blocks,
            bfree: s.blocksFree,
            bavail: s.blocksFree,
            files: s.files,
            ffree: s.filesFree,
            favail: s.filesFree,
            fsid: 0,
            flag: 0,
            namemax: s.nameMax,
          }),
        ),
      ...Object.fromEntries(
        ['create', 'write', 'truncate', 'ftruncate', 'unlink', 'mkdir', 'rmdir', 'rename', 'chmod', 'chown', 'utimens', 'symlink', 'link', 'mknod', 'setxattr', 'removexattr'].map(
          (op) => [op, (path: string, ...args: unknown[]) => {
            const cb = args[args.length - 1] as Reply;
            this.call(op, path, cb, () => fs.refuseWrite(path), () => cb(0));
          }],
        ),
      ),
    };
  }

  private call<T>(op: string, path: string, cb: Reply, work: () => Promise<T>, done: (value: T) => void): void {
    work().then(done, (err: unknown) => {
      logFailure(op, path, err);
      cb(negativeErrno(err));
    });
  }
}
