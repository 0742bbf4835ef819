/**
 * The mount's control socket: admin commands ask it to prefetch, pin, unpin, evict or verify
 * files by their paths inside the mount. Each request gets progress and one result per file.
 */
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import createDebug from 'debug';
import { CacheRefusal, type CacheHandle, type StagingCache } from '../cache/staging-cache';
import { errorMessage, FsError } from '../errors';
import type { Filesystem } from '../fs/filesystem';
import type { FileNode } from '../namespace/namespace';
import { decodeLines, encode, type ControlReply, type ControlRequest } from './control-protocol';

const debug = createDebug('stagefs:control');

/** Progress replies at most this often per file, so a fast prefetch does not flood the socket. */
const PROGRESS_INTERVAL_MS = 100;

export class ControlServer {
  private constructor(
    private readonly server: Server,
    private readonly path: string,
  ) {}

  static async listen(path: string, fs: Filesystem, cache: StagingCache): Promise<ControlServer> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    try {
      unlinkSync(path); // left by a daemon that died; the registry lock says none is alive
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const server = createServer((socket) => void serve(socket, fs, cache));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
    return new ControlServer(server, path);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

async function serve(socket: Socket, fs: Filesystem, cache: StagingCache): Promise<void> {
  const reply = (message: ControlReply) => {
    if (!socket.destroyed) socket.write(encode(message));
  };
  socket.on('error', (err) => debug('control connection: %s', err.message));
  try {
    for await (const request of decodeLines<ControlRequest>(socket)) {
      debug('%s %j', request.op, request.paths);
      await handle(request, fs, cache, reply);
      reply({ type: 'end' });
      break;
    }
  } catch (err) {
    debug('control request failed: %s', errorMessage(err));
    reply({ type: 'end' });
  }
  socket.end();
}

async function handle(request: ControlRequest, fs: Filesystem, cache: StagingCache, reply: (m: ControlReply) => void): Promise<void> {
  if (request.op === 'verify' && request.paths.length === 0) {
    reply({ type: 'plan', files: [] });
    reply({ type: 'done', path: '/', ok: true, scrub: await cache.scrub() });
    return;
  }
  const files: FileNode[] = [];
  for (const path of request.paths) {
    try {
      files.push(...(await fs.filesUnder(path)));
    } catch (err) {
      reply({ type: 'done', path, ok: false, error: err instanceof FsError && err.code === 'ENOENT' ? 'no such file or directory' : errorMessage(err) });
    }
  }
  reply({ type: 'plan', files: files.map((f) => ({ path: f.path, size: f.size })) });
  // Files one request prefetched stay open until it ends, so a later file cannot evict them: a
  // request larger than the cache reports what did not fit instead of keeping only its tail.
  const held: CacheHandle[] = [];
  try {
    for (const file of files) await apply(request, file, fs, cache, reply, held);
  } finally {
    for (const handle of held) cache.release(handle);
  }
}

async function apply(
  request: ControlRequest,
  file: FileNode,
  fs: Filesystem,
  cache: StagingCache,
  reply: (m: ControlReply) => void,
  held: CacheHandle[],
): Promise<void> {
  const version = fs.versionOf(file);
  try {
    switch (request.op) {
      case 'prefetch': {
        held.push(await cache.open(version));
        let lastReport = 0;
        await cache.prefetch(version, (staged, size) => {
          const now = Date.now();
          if (staged < size && now - lastReport < PROGRESS_INTERVAL_MS) return;
          lastReport = now;
          reply({ type: 'progress', path: file.path, staged, size });
        });
        reply({ type: 'done', path: file.path, ok: true });
        break;
      }
      case 'pin':
      case 'unpin':
        await cache.setPinned(version, request.op === 'pin');
        reply({ type: 'done', path: file.path, ok: true });
        break;
      case 'verify':
        reply({ type: 'done', path: file.path, ok: true, scrub: await cache.scrub(version) });
        break;
      case 'evict': {
        const evicted = cache.evictKey(file.key);
        reply({ type: 'done', path: file.path, ok: true, detail: evicted ? 'evicted' : 'not in the cache' });
        break;
      }
    }
  } catch (err) {
    if (!(err instanceof CacheRefusal)) debug('%s %s: %s', request.op, file.path, errorMessage(err));
    reply({ type: 'done', path: file.path, ok: false, error: errorMessage(err) });
  }
}
