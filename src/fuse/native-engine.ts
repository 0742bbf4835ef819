/**
 * The native engine: the addon in native/ speaks the kernel's FUSE protocol on /dev/fuse with
 * its own request threads. Reads of staged ranges are answered there with pread; files staged
 * whole at open are handed to the kernel with FUSE passthrough; everything else arrives here
 * and is translated into Filesystem calls.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import createDebug from 'debug';
import { CommandError, FsError, errnoOf, errorMessage } from '../errors';
import type { Attr, Filesystem } from '../fs/filesystem';
import { HandleTable } from '../fs/handle-table';
import { fuseUnmount, mountAt } from '../daemon/mount-table';
import { joinPath, parentOf } from '../namespace/paths';
import { BoundedBuffers } from '../util/bounded-buffers';
import { Deferred } from '../util/deferred';
import { abortConnection } from './connection';
import { RequestCounts, type Engine, type EngineOptions, type EngineStats } from './engine';
import {
  attrOut,
  entryOut,
  FOPEN_KEEP_CACHE,
  FOPEN_PASSTHROUGH,
  IN_HEADER_SIZE,
  MAX_READ_BYTES,
  Op,
  openOut,
  packDirectory,
  parseFh,
  parseGetattrFh,
  parseHeader,
  parseName,
  parseCreateIn,
  parseMkdirIn,
  parseMknodIn,
  parseOpenFlags,
  parseReadIn,
  parseRenameIn,
  parseSetattrIn,
  parseSymlinkIn,
  parseWriteIn,
  statfsOut,
  writeOut,
  type DirectoryEntry,
  type ReadIn,
  type RequestHeader,
} from './kernel-protocol';
import { logFailure } from './log';
import {
  EVENT_CLOSED,
  EVENT_HIT,
  EVENT_INIT,
  EVENT_REQUEST,
  type NativeAddon,
  type NegotiatedInfo,
  type Session,
  type SessionStats,
} from '../native/addon';

const debug = createDebug('stagefs:native');
const warn = createDebug('stagefs:warn');

const INIT_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 10_000;
/** Kernel readahead for the mount; the default (128 KiB) starves a sequential reader. */
const READ_AHEAD_KB = 4096;
/** Replies up to this size are allocated each time (cheap); larger ones get pooled buffers of the largest READ's size. */
const SMALL_REPLY_BYTES = 64 * 1024;

type IoMode = 'passthrough' | 'cached';

/**
 * The kernel puts an inode either in cached mode or in passthrough mode (on one backing file);
 * an open that would mix them fails with EIO. Opens of one inode are counted to choose
 * compatibly. An inode is one version of an object, so its backing file never changes.
 */
interface InodeIo {
  cached: number;
  passthrough: number;
  /** The backing id passthrough opens of the inode share. */
  backing: number | undefined;
}

interface OpenFile {
  ino: number;
  mode: IoMode;
  fastPath: boolean;
}

/** A reply's data; nothing for replies that carry none. */
type Reply = Buffer | Buffer[] | void;

export class NativeEngine implements Engine {
  readonly name = 'native';
  private session: Session | undefined;
  private negotiated: NegotiatedInfo | undefined;
  private device = '';
  private readonly initialized = new Deferred<void>();
  private readonly connectionClosed = new Deferred<void>();
  private readonly requests = new RequestCounts();
  private passthroughOpens = 0;
  private passthroughOpenFiles = 0;
  /** What the C side served, as of the session's end. */
  private finalStats: SessionStats = { fastReads: 0, fastReadBytes: 0 };
  private readonly directories = new HandleTable<DirectoryEntry[]>();
  private readonly openFiles = new Map<number, OpenFile>();
  private readonly inodeIo = new Map<number, InodeIo>();
  /** Buffers of the READ replies being filled; a READ past the budget waits (before it holds anything). */
  private readonly replies: BoundedBuffers;

  constructor(
    private readonly fs: Filesystem,
    private readonly options: EngineOptions,
    private readonly addon: NativeAddon,
  ) {
    this.replies = new BoundedBuffers(options.readMemoryBytes, MAX_READ_BYTES, SMALL_REPLY_BYTES);
    fs.onDirectAccessRevoked((fh) => this.revokeFastPath(fh));
  }

  get info(): NegotiatedInfo | undefined {
    return this.negotiated;
  }

  get closed(): Promise<void> {
    return this.connectionClosed.promise;
  }

  stats(): EngineStats {
    const served = this.session ? this.addon.stats(this.session) : this.finalStats;
    const requests = new Map(this.requests.byOp);
    if (served.fastReads) requests.set('read', (requests.get('read') ?? 0) + served.fastReads);
    return {
      requests,
      fastReads: served.fastReads,
      fastReadBytes: served.fastReadBytes,
      passthroughOpens: this.passthroughOpens,
      passthroughOpenFiles: this.passthroughOpenFiles,
    };
  }

  async mount(): Promise<void> {
    const { options } = this;
    let fd: number;
    try {
      fd = this.addon.mount({ mountpoint: options.mountpoint, source: options.source, allowOther: options.allowOther, readOnly: options.readOnly });
    } catch (err) {
      // The reason, fusermount3's own words included: for the admin, not a crash to trace.
      throw new CommandError(errorMessage(err));
    }
    const threads = Math.max(4, availableParallelism());
    this.session = this.addon.open(fd, { threads, passthrough: true }, (kind, a, b, c) => this.onEvent(kind, a, b, c));
    const timer = setTimeout(() => this.initialized.reject(new Error('the kernel did not send INIT within 10s')), INIT_TIMEOUT_MS);
    try {
      await this.initialized.promise;
    } catch (err) {
      await this.unmount();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    this.negotiated = this.addon.info(this.session);
    this.device = mountAt(options.mountpoint)?.device ?? '';
    this.tuneReadahead();
    debug('mounted with protocol 7.%d, passthrough %s, %d threads', this.negotiated.protocolMinor, this.negotiated.passthrough, threads);
  }

  async unmount(): Promise<void> {
    if (!this.session) return;
    try {
      await fuseUnmount(this.options.mountpoint, true);
    } catch (err) {
      debug('unmount: %s', errorMessage(err));
    }
    const timer = setTimeout(() => this.abortConnection(), CLOSE_TIMEOUT_MS);
    await this.connectionClosed.promise;
    clearTimeout(timer);
  }

  /** Called by the addon on the JavaScript thread; a throw here would fail requests in C, so nothing throws. */
  private onEvent(kind: number, a: Buffer | number, b?: number, c?: number): void {
    try {
      this.dispatchEvent(kind, a, b, c);
    } catch (err) {
      warn('native event %d: %s', kind, errorMessage(err));
    }
  }

  private dispatchEvent(kind: number, a: Buffer | number, b?: number, c?: number): void {
    switch (kind) {
      case EVENT_REQUEST:
        void this.handle(a as Buffer);
        break;
      case EVENT_HIT:
        if (this.openFiles.has(a as number)) this.fs.noteRead(a as number, b!, c!);
        break;
      case EVENT_INIT:
        this.initialized.resolve();
        break;
      case EVENT_CLOSED:
        if (a) warn('the FUSE device failed: errno %d', a);
        if (this.session) {
          this.finalStats = this.addon.stats(this.session);
          this.addon.close(this.session);
        }
        this.session = undefined;
        this.connectionClosed.resolve();
        break;
    }
  }

  private async handle(message: Buffer): Promise<void> {
    const header = parseHeader(message);
    const body = message.subarray(IN_HEADER_SIZE);
    this.requests.add(opName(header.opcode));
    // A read fills a buffer of the reply budget, free again once the reply (written synchronously) is out.
    let buffer: Buffer | undefined;
    let reply: Reply = undefined;
    let errno = 0;
    try {
      if (header.opcode === Op.READ) {
        const request = parseReadIn(body);
        buffer = await this.replies.take(request.size);
        reply = await this.read(request, buffer);
      } else {
        reply = await this.dispatch(header, body);
      }
    } catch (err) {
      logFailure(opName(header.opcode), this.describe(header.nodeid), err);
      errno = errnoOf(err);
    }
    try {
      if (this.session) {
        const failed = this.addon.reply(this.session, header.unique, errno, errno || !reply ? undefined : reply);
        if (failed) warn('reply to %s failed: errno %d', opName(header.opcode), failed);
      }
    } catch (err) {
      warn('reply to %s failed: %s', opName(header.opcode), errorMessage(err));
    } finally {
      if (buffer) this.replies.give(buffer);
      // Answered: nothing uses the request's bytes any more (a WRITE's data went to disk before the reply).
      this.addon.releaseRequest(message);
    }
  }

  private async read(request: ReadIn, buffer: Buffer): Promise<Buffer> {
    const n = await this.fs.read(request.fh, buffer, request.size, request.offset);
    return buffer.subarray(0, n);
  }

  private async dispatch(header: RequestHeader, body: Buffer): Promise<Reply> {
    const ttl = this.options.kernelCacheSeconds;
    const generations = (ino: number) => this.fs.generationOf(ino);
    const entry = (attr: Attr | undefined) => entryOut(attr, ttl, generations);
    const caller = { uid: header.uid, gid: header.gid };
    switch (header.opcode) {
      case Op.LOOKUP: {
        const name = parseName(body);
        // "." and ".." by node id: the kernel finding an inode again from a file handle (exports).
        if (name === '.') return entry(await this.fs.getattrInode(header.nodeid));
        const base = this.fs.pathOf(header.nodeid);
        if (name === '..') return entry(await this.fs.getattr(parentOf(base)));
        try {
          return entry(await this.fs.getattr(joinPath(base, name)));
        } catch (err) {
          if (err instanceof FsError && err.code === 'ENOENT') return entry(undefined);
          throw err;
        }
      }
      case Op.GETATTR: {
        const fh = parseGetattrFh(body);
        return attrOut(fh === undefined ? await this.fs.getattr(this.fs.pathOf(header.nodeid)) : this.fs.getattrOpen(fh), ttl);
      }
      case Op.OPENDIR:
        return openOut(this.directories.add(await this.listing(this.fs.pathOf(header.nodeid))), 0);
      case Op.READDIR:
      case Op.READDIRPLUS: {
        const read = parseReadIn(body);
        return packDirectory(this.directories.get(read.fh), read.offset, read.size, header.opcode === Op.READDIRPLUS, ttl, generations);
      }
      case Op.RELEASEDIR:
        this.directories.remove(parseFh(body));
        return undefined;
      case Op.OPEN: {
        const fh = await this.fs.open(this.fs.pathOf(header.nodeid), parseOpenFlags(body));
        return this.opened(header.nodeid, fh);
      }
      case Op.CREATE: {
        const create = parseCreateIn(body);
        const { fh, attr } = await this.fs.create(joinPath(this.fs.pathOf(header.nodeid), create.name), create.mode, create.flags, caller);
        return [entry(attr), await this.opened(attr.ino, fh)];
      }
      case Op.MKNOD: {
        const mknod = parseMknodIn(body);
        return entry(await this.fs.mknod(joinPath(this.fs.pathOf(header.nodeid), mknod.name), mknod.mode, caller));
      }
      case Op.MKDIR: {
        const mkdir = parseMkdirIn(body);
        return entry(await this.fs.mkdir(joinPath(this.fs.pathOf(header.nodeid), mkdir.name), mkdir.mode, caller));
      }
      case Op.UNLINK:
        return this.fs.unlink(joinPath(this.fs.pathOf(header.nodeid), parseName(body)));
      case Op.RMDIR:
        return this.fs.rmdir(joinPath(this.fs.pathOf(header.nodeid), parseName(body)));
      case Op.RENAME:
      case Op.RENAME2: {
        const rename = parseRenameIn(body, header.opcode === Op.RENAME2);
        const from = joinPath(this.fs.pathOf(header.nodeid), rename.from);
        return this.fs.rename(from, joinPath(this.fs.pathOf(rename.newParent), rename.to), rename.flags);
      }
      case Op.SETATTR: {
        const { fh, ...changes } = parseSetattrIn(body, Date.now());
        return attrOut(await this.fs.setattr(this.fs.pathOf(header.nodeid), changes, fh), ttl);
      }
      case Op.WRITE: {
        const write = parseWriteIn(body);
        return writeOut(await this.fs.write(write.fh, write.data, write.offset));
      }
      case Op.FLUSH:
        return this.fs.flush(parseFh(body));
      case Op.FSYNC:
        return this.fs.fsync(parseFh(body));
      case Op.RELEASE:
        return this.release(parseFh(body));
      case Op.FSYNCDIR:
        return undefined;
      case Op.STATFS:
        return statfsOut(this.fs.statfs());
      case Op.LINK:
        return entry(await this.fs.link(this.fs.pathOf(header.nodeid)));
      case Op.SYMLINK: {
        const symlink = parseSymlinkIn(body);
        return entry(await this.fs.symlink(symlink.target, joinPath(this.fs.pathOf(header.nodeid), symlink.name), caller));
      }
      case Op.READLINK:
        return Buffer.from(await this.fs.readlink(this.fs.pathOf(header.nodeid)), 'utf8');
      default:
        // ENOSYS tells the kernel not to ask again (xattrs, access checks, locks, ...).
        throw new FsError('ENOSYS');
    }
  }

  private describe(ino: number): string {
    try {
      return this.fs.pathOf(ino);
    } catch {
      return `inode ${ino}`;
    }
  }

  /** A directory's entries, "." and ".." first, as one snapshot for the whole OPENDIR. */
  private async listing(path: string): Promise<DirectoryEntry[]> {
    const [self, parent, children] = await Promise.all([
      this.fs.getattr(path),
      this.fs.getattr(parentOf(path)),
      this.fs.readdir(path),
    ]);
    return [{ name: '.', attr: self }, { name: '..', attr: parent }, ...children];
  }

  /** Chooses how the kernel reads a new handle (passthrough, or through us) and answers OPEN. */
  private async opened(ino: number, fh: number): Promise<Buffer> {
    let registered = false;
    try {
      const io = this.inodeIo.get(ino) ?? { cached: 0, passthrough: 0, backing: undefined };
      this.inodeIo.set(ino, io);
      let mode: IoMode = 'cached';
      let backingId = 0;
      // The kernel keeps an inode in one mode: passthrough only while no open reads it cached.
      if (this.negotiated?.passthrough && io.cached === 0) {
        const access = await this.fs.directAccess(fh, 'kernel');
        if (access) {
          try {
            backingId = io.backing ?? this.addon.backingOpen(this.session!, access.fd);
            io.backing = backingId;
            mode = 'passthrough';
          } catch (err) {
            warn('passthrough refused for %s, serving reads here: %s', this.fs.pathOf(ino), errorMessage(err));
          }
        }
      }
      let fastPath = false;
      if (mode === 'cached') {
        const access = await this.fs.directAccess(fh, 'fast');
        if (access) {
          this.addon.registerHandle(this.session!, fh, access.fd, access.blocks, access.blockSize, access.size);
          registered = true;
          fastPath = true;
        }
      }
      if (mode === 'passthrough') {
        io.passthrough++;
        this.passthroughOpens++;
        this.passthroughOpenFiles++;
      } else io.cached++;
      this.openFiles.set(fh, { ino, mode, fastPath });
      // An inode is one version: whatever the kernel cached of it stays true.
      const openFlags = mode === 'passthrough' ? FOPEN_PASSTHROUGH : FOPEN_KEEP_CACHE;
      return openOut(fh, openFlags, backingId);
    } catch (err) {
      // The handle number goes back to the table: no registration of it may outlive it.
      if (registered && this.session) this.addon.unregisterHandle(this.session, fh);
      await this.fs.release(fh);
      throw err;
    }
  }

  /** A handle whose file is now being written: its reads come to JavaScript from now on. */
  private revokeFastPath(fh: number): void {
    const file = this.openFiles.get(fh);
    if (!file?.fastPath || !this.session) return;
    this.addon.unregisterHandle(this.session, fh);
    file.fastPath = false;
  }

  private async release(fh: number): Promise<undefined> {
    const file = this.openFiles.get(fh);
    try {
      if (file) {
        this.openFiles.delete(fh);
        const io = this.inodeIo.get(file.ino)!;
        if (file.mode === 'cached') io.cached--;
        else {
          io.passthrough--;
          this.passthroughOpenFiles--;
        }
        if (io.cached === 0 && io.passthrough === 0) this.inodeIo.delete(file.ino);
        if (file.fastPath) this.addon.unregisterHandle(this.session!, fh);
        if (file.mode === 'passthrough' && io.passthrough === 0 && io.backing !== undefined) {
          this.addon.backingClose(this.session!, io.backing);
          io.backing = undefined;
        }
      }
    } finally {
      // Whatever the addon said, the handle is released: its entry must not stay open for good.
      await this.fs.release(fh);
    }
    return undefined;
  }

  private tuneReadahead(): void {
    if (!this.device) return;
    try {
      writeFileSync(`/sys/class/bdi/${this.device}/read_ahead_kb`, String(READ_AHEAD_KB));
    } catch (err) {
      debug('kernel readahead left as it is: %s', errorMessage(err));
    }
  }

  /**
   * A mount still busy after a lazy unmount keeps our request threads waiting. Its connection is
   * aborted through fusectl where that is mounted; otherwise the daemon stops anyway, and the
   * kernel aborts the connection when the process closes /dev/fuse.
   */
  private abortConnection(): void {
    warn('the mount is still busy %ds after unmount; cutting it off', CLOSE_TIMEOUT_MS / 1000);
    abortConnection(this.device);
    if (this.session) this.finalStats = this.addon.stats(this.session);
    this.session = undefined;
    this.connectionClosed.resolve();
  }
}

const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([name, code]) => [code, name.toLowerCase()]));

function opName(opcode: number): string {
  return OP_NAMES.get(opcode) ?? `op${opcode}`;
}
