/**
 * The portable engine: fuse-native (libfuse 2, high-level path API). It only translates FUSE
 * requests into Filesystem calls and errors into errno.
 *
 * libfuse 2's high-level library keeps its own node ids (per path) and answers LOOKUP of "." and
 * ".." itself; it asks the kernel for FUSE_EXPORT_SUPPORT at INIT. With `noforget` it keeps every
 * node id for the life of the mount, so file handles (an NFS server's) open again after the
 * kernel forgot their inodes. fuse-native does not tell who asks, so what this engine makes is
 * owned by the mount's uid and gid.
 */
import Fuse from 'fuse-native';
import { constants } from 'node:fs';
import createDebug from 'debug';
import { CommandError, FsError, errorMessage, negativeErrno, type ErrnoCode } from '../errors';
import type { Attr, Filesystem } from '../fs/filesystem';
import { mountAt } from '../daemon/mount-table';
import { Deferred } from '../util/deferred';
import { abortConnection, fuseDeviceFds, watchDeviceClose } from './connection';
import { RequestCounts, type Engine, type EngineOptions, type EngineStats } from './engine';
import { direntType } from './kernel-protocol';
import { logFailure } from './log';

const warn = createDebug('stagefs:warn');

/**
 * libfuse's loop ends when the kernel ends the connection (its read gets ENODEV) and then closes
 * the device; fuse-native tells JavaScript nothing, so the descriptor is watched this often.
 */
const DEVICE_WATCH_MS = 100;
const CLOSE_TIMEOUT_MS = 10_000;

type Reply = (result: number, ...values: unknown[]) => void;

async function unsupported(code: ErrnoCode): Promise<never> {
  throw new FsError(code);
}

/**
 * What a utimens from fuse-native can say: it hands over the access time in both arguments (in
 * ms), and libfuse 2 gives UTIME_NOW and UTIME_OMIT as 0 s and ~1073741822 ns, which that turns
 * into 1073 ms either way. So one time is known, and it sets both; 1073 means "now".
 */
const UTIME_SPECIAL_MS = 1073;

export function utimensChanges(time: number, now: number): { atime: number; mtime: number } {
  const value = time === UTIME_SPECIAL_MS ? now : time;
  return { atime: value, mtime: value };
}

function toStat(attr: Attr): object {
  return { ...attr };
}

/**
 * libfuse 2 keeps a file unlinked while open by renaming it to a hidden name and unlinking that
 * at the last close. Here that is an unlink that keeps the open handles (as the native engine
 * gets it from the kernel), and the hidden name answers for the open file until then.
 */
const HIDDEN_NAME = /(^|\/)\.fuse_hidden[0-9a-f]+$/;

export class FuseNativeEngine implements Engine {
  readonly name = 'fuse-native';
  private fuse: Fuse | undefined;
  /** Hidden names libfuse gave unlinked open files, and a handle of each. */
  private readonly hidden = new Map<string, number>();
  private device = '';
  private readonly connectionClosed = new Deferred<void>();
  private readonly requests = new RequestCounts();
  private stopWatching: (() => void) | undefined;

  constructor(
    private readonly fs: Filesystem,
    private readonly options: EngineOptions,
  ) {}

  async mount(): Promise<void> {
    const { options } = this;
    // fuse-native passes its options to libfuse as one -o list; libfuse options it has no name
    // for ride along after the fsname.
    const extra = ['use_ino', 'big_writes', 'noforget', `negative_timeout=${options.kernelCacheSeconds}`];
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
    // fuse-native turns on libfuse's own debug output whenever DEBUG holds a '*', as in
    // DEBUG=stagefs:*; it is wanted only when asked for by name.
    const debugSetting = process.env.DEBUG;
    if (!debugSetting?.includes('fuse-bindings')) delete process.env.DEBUG;
    const devicesBefore = fuseDeviceFds();
    try {
      await new Promise<void>((resolve, reject) =>
        fuse.mount((err) =>
          // libfuse writes its reason to stderr itself; a background mount's parent adds it to this message.
          err ? reject(new CommandError(`libfuse could not mount ${options.mountpoint} (${err.message})`)) : resolve(),
        ),
      );
    } finally {
      if (debugSetting !== undefined) process.env.DEBUG = debugSetting;
    }
    this.fuse = fuse;
    this.device = mountAt(options.mountpoint)?.device ?? '';
    const device = [...fuseDeviceFds()].find((fd) => !devicesBefore.has(fd));
    if (device === undefined) warn('cannot find the FUSE device of the mount; an outside unmount will not stop the daemon');
    else this.stopWatching = watchDeviceClose(device, DEVICE_WATCH_MS, () => this.connectionClosed.resolve());
  }

  get closed(): Promise<void> {
    return this.connectionClosed.promise;
  }

  async unmount(): Promise<void> {
    const fuse = this.fuse;
    if (!fuse) return;
    this.fuse = undefined;
    try {
      await new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())));
    } catch (err) {
      warn('unmounting %s: %s', this.options.mountpoint, errorMessage(err));
    }
    if (!this.stopWatching) return;
    // A busy mount, detached lazily, keeps its connection until its files are closed.
    const timer = setTimeout(() => {
      warn('the mount is still busy %ds after unmount; cutting it off', CLOSE_TIMEOUT_MS / 1000);
      abortConnection(this.device);
      this.connectionClosed.resolve();
    }, CLOSE_TIMEOUT_MS);
    await this.connectionClosed.promise;
    clearTimeout(timer);
    this.stopWatching();
  }

  stats(): EngineStats {
    return { requests: new Map(this.requests.byOp), fastReads: 0, fastReadBytes: 0, passthroughOpens: 0, passthroughOpenFiles: 0 };
  }

  private operations(): Record<string, (...args: any[]) => void> {
    const fs = this.fs;
    return {
      init: (cb: Reply) => cb(0),
      getattr: (path: string, cb: Reply) => this.call('getattr', path, cb, () => this.getattr(path), (attr) => cb(0, toStat(attr))),
      readdir: (path: string, cb: Reply) =>
        this.call('readdir', path, cb, () => fs.readdir(path), (entries) =>
          // libfuse takes d_type from the mode's type bits: none where the type is not known yet.
          cb(0, entries.map((e) => e.name), entries.map((e) => toStat({ ...e.attr, mode: (direntType(e.attr, e.partial) << 12) | (e.attr.mode & 0o7777) }))),
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
      create: (path: string, mode: number, cb: Reply) =>
        // fuse-native does not pass the open flags of a create.
        this.call('create', path, cb, () => fs.create(path, mode, constants.O_CREAT | constants.O_RDWR), ({ fh }) => cb(0, fh)),
      write: (path: string, fh: number, buffer: Buffer, length: number, position: number, cb: Reply) =>
        this.call('write', path, cb, () => fs.write(fh, buffer.subarray(0, length), position), (n) => cb(n)),
      truncate: (path: string, size: number, cb: Reply) => this.call('truncate', path, cb, () => fs.setattr(path, { size }), () => cb(0)),
      ftruncate: (path: string, fh: number, size: number, cb: Reply) =>
        this.call('ftruncate', path, cb, () => fs.setattr(path, { size }, fh), () => cb(0)),
      flush: (path: string, fh: number, cb: Reply) => this.call('flush', path, cb, () => fs.flush(fh), () => cb(0)),
      fsync: (path: string, _datasync: number, fh: number, cb: Reply) => this.call('fsync', path, cb, () => fs.fsync(fh), () => cb(0)),
      unlink: (path: string, cb: Reply) => this.call('unlink', path, cb, () => this.unlink(path), () => cb(0)),
      mkdir: (path: string, mode: number, cb: Reply) => this.call('mkdir', path, cb, () => fs.mkdir(path, mode), () => cb(0)),
      rmdir: (path: string, cb: Reply) => this.call('rmdir', path, cb, () => fs.rmdir(path), () => cb(0)),
      rename: (from: string, to: string, cb: Reply) => this.call('rename', from, cb, () => this.rename(from, to), () => cb(0)),
      chmod: (path: string, mode: number, cb: Reply) => this.call('chmod', path, cb, () => fs.setattr(path, { mode }), () => cb(0)),
      chown: (path: string, uid: number, gid: number, cb: Reply) =>
        this.call('chown', path, cb, () => fs.setattr(path, { uid, gid }), () => cb(0)),
      utimens: (path: string, atime: number, _mtime: number, cb: Reply) =>
        this.call('utimens', path, cb, () => fs.setattr(path, utimensChanges(atime, Date.now())), () => cb(0)),
      readlink: (path: string, cb: Reply) => this.call('readlink', path, cb, () => fs.readlink(path), (target) => cb(0, target)),
      symlink: (target: string, path: string, cb: Reply) => this.call('symlink', path, cb, () => fs.symlink(target, path), () => cb(0)),
      link: (_target: string, path: string, cb: Reply) => this.call('link', path, cb, () => fs.link(path), () => cb(0)),
      mknod: (path: string, mode: number, _dev: number, cb: Reply) => this.call('mknod', path, cb, () => fs.mknod(path, mode), () => cb(0)),
      setxattr: (path: string, ...args: unknown[]) => {
        const cb = args[args.length - 1] as Reply;
        this.call('setxattr', path, cb, () => unsupported('ENOTSUP'), () => cb(0));
      },
    };
  }

  private async getattr(path: string) {
    const fh = this.hidden.get(path);
    return fh === undefined ? this.fs.getattr(path) : this.fs.getattrOpen(fh);
  }

  private async rename(from: string, to: string): Promise<void> {
    if (!HIDDEN_NAME.test(to)) return this.fs.rename(from, to);
    const fh = this.fs.openHandleOf(from);
    if (fh === undefined) throw new FsError('ENOENT', `no open handle of ${from} to keep`);
    await this.fs.unlink(from);
    this.hidden.set(to, fh);
  }

  private async unlink(path: string): Promise<void> {
    if (this.hidden.delete(path)) return; // deleted when it was hidden
    return this.fs.unlink(path);
  }

  private call<T>(op: string, path: string, cb: Reply, work: () => Promise<T>, done: (value: T) => void): void {
    this.requests.add(op);
    work().then(done, (err: unknown) => {
      logFailure(op, path, err);
      cb(negativeErrno(err));
    });
  }
}
