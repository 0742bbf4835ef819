/**
 * A running mount: checks what can be checked before mounting (mountpoint, cache dir, bucket,
 * credentials), wires store, namespace, cache, filesystem and engine together, and takes them
 * down in order.
 */
import { statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import createDebug from 'debug';
import { StagingCache } from '../cache/staging-cache';
import { writeDirOf, type MountConfig } from '../config';
import { CommandError, StoreError, errorMessage } from '../errors';
import { Filesystem } from '../fs/filesystem';
import type { Engine, EngineOptions } from '../fuse/engine';
import { FuseNativeEngine } from '../fuse/fuse-native-engine';
import { loadNativeAddon } from '../native/addon';
import { NativeEngine } from '../fuse/native-engine';
import { Namespace } from '../namespace/namespace';
import { S3Store } from '../store/s3-store';
import { ControlServer } from './control-server';
import { fuseUnmount, isStagefsMount, mountAt } from './mount-table';
import { controlSocketPath, lockCacheDir, register, unregister } from './runtime-registry';

const debug = createDebug('stagefs:mount');
const info = createDebug('stagefs:info');
const warn = createDebug('stagefs:warn');

const MOUNT_POLL_MS = 1000;

export interface RunningMount {
  readonly config: MountConfig;
  readonly cache: StagingCache;
  /** Resolves once the mount has been taken down, by `stop` or by an outside unmount. */
  readonly stopped: Promise<void>;
  stop(): Promise<void>;
}

export function sourceUrl(config: MountConfig): string {
  return `s3://${config.store.bucket}/${config.store.prefix}`.replace(/\/$/, '');
}

async function checkMountpoint(mountpoint: string): Promise<void> {
  let isDir: boolean;
  try {
    isDir = statSync(mountpoint).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN') {
      warn('%s is a FUSE mount whose daemon is gone; unmounting it', mountpoint);
      await fuseUnmount(mountpoint, true);
      return checkMountpoint(mountpoint);
    }
    if (code === 'ENOENT') throw new CommandError(`mountpoint ${mountpoint} does not exist`);
    throw new CommandError(`mountpoint ${mountpoint}: ${errorMessage(err)}`);
  }
  if (!isDir) throw new CommandError(`mountpoint ${mountpoint} is not a directory`);
  const existing = mountAt(mountpoint);
  if (existing && existing.fstype.startsWith('fuse')) {
    throw new CommandError(`${mountpoint} is already mounted (${existing.source}); run: stagefs unmount ${mountpoint}`);
  }
}

/** The addon's hole punching, which lets a file being written drop parts already uploaded. */
function punchHole(): ((fd: number, offset: number, length: number) => void) | undefined {
  const native = loadNativeAddon();
  if ('addon' in native) return (fd, offset, length) => native.addon.punchHole(fd, offset, length);
  warn('without the native addon (%s), files being written keep every part local until uploaded', native.error);
  return undefined;
}

/** The engine asked for, else native where its addon loads, else fuse-native. */
function createEngine(config: MountConfig, fs: Filesystem): Engine {
  const options: EngineOptions = {
    mountpoint: config.mountpoint,
    source: sourceUrl(config),
    allowOther: config.allowOther,
    readOnly: config.readOnly,
    kernelCacheSeconds: Math.min(1, config.metadataTtlMs / 1000),
  };
  const native = config.engine === 'fuse-native' ? undefined : loadNativeAddon();
  if (native && 'addon' in native) return new NativeEngine(fs, options, native.addon);
  if (config.engine === 'native') {
    throw new CommandError(`the native engine cannot load (${native && 'error' in native ? native.error : 'unknown'}); use --engine fuse-native`);
  }
  if (native) debug('native engine unavailable (%s); using fuse-native', 'error' in native ? native.error : '');
  return new FuseNativeEngine(fs, options);
}

export async function startMount(config: MountConfig): Promise<RunningMount> {
  await checkMountpoint(config.mountpoint);
  await mkdir(config.cache.dir, { recursive: true });
  const unlock = lockCacheDir(config.cache.dir, config.mountpoint);
  const cleanups: Array<() => unknown> = [unlock];
  const undo = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
  try {
    const store = new S3Store(config.store);
    try {
      await store.checkAccess(config.store.prefix);
    } catch (err) {
      if (err instanceof StoreError) throw new CommandError(`cannot mount ${sourceUrl(config)}: ${err.message.replace(/^list [^:]*: /, '')}`);
      throw err;
    }
    const cache = await StagingCache.open({ config: config.cache, store });
    cleanups.push(() => cache.close());
    const namespace = new Namespace({ store, prefix: config.store.prefix, ttlMs: config.metadataTtlMs });
    const fs = new Filesystem({
      namespace,
      cache,
      store,
      bucket: config.store.bucket,
      prefix: config.store.prefix,
      uid: config.uid,
      gid: config.gid,
      readOnly: config.readOnly,
      writeDir: writeDirOf(config.cache.dir),
      punchHole: punchHole(),
    });
    // What a previous run left unuploaded goes up before anything is served.
    await fs.recover();
    cleanups.push(() => fs.drain());
    const engine = createEngine(config, fs);
    const controlSocket = controlSocketPath(config.mountpoint);
    const control = await ControlServer.listen(controlSocket, fs, cache);
    cleanups.push(() => control.close());
    await engine.mount();
    register({
      pid: process.pid,
      mountpoint: config.mountpoint,
      source: sourceUrl(config),
      cacheDir: config.cache.dir,
      controlSocket,
      engine: engine.name,
      startedAt: new Date().toISOString(),
    });
    cleanups.push(() => unregister(config.mountpoint));
    info('mounted %s at %s (engine %s, cache %s)', sourceUrl(config), config.mountpoint, engine.name, config.cache.dir);
    return serve(config, cache, engine, undo);
  } catch (err) {
    await undo();
    throw err;
  }
}

function serve(config: MountConfig, cache: StagingCache, engine: Engine, undo: () => Promise<void>): RunningMount {
  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
  const stop = (stillMounted: boolean) => {
    stopping ??= (async () => {
      clearInterval(watch);
      if (stillMounted) {
        try {
          await engine.unmount();
        } catch (err) {
          warn('unmounting %s: %s', config.mountpoint, errorMessage(err));
        }
      }
      await undo();
      info('unmounted %s', config.mountpoint);
      resolveStopped();
    })();
    return stopping;
  };
  // An admin's umount(8) or fusermount -u ends the mount without telling the engine.
  const watch = setInterval(() => {
    if (!isStagefsMount(mountAt(config.mountpoint))) void stop(false);
  }, MOUNT_POLL_MS);
  watch.unref();
  return { config, cache, stopped, stop: () => stop(true) };
}
