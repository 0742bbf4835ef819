/**
 * A running mount: checks what can be checked before mounting (mountpoint, cache dir, bucket,
 * credentials), wires store, namespace, cache, filesystem and engine together, and takes them
 * down in order.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import createDebug from 'debug';
import { StagingCache } from '../cache/staging-cache';
import { cacheRoot, linkStateDir, writeDirOf, type MountConfig } from '../config';
import { CommandError, StoreError, errorMessage } from '../errors';
import { Filesystem } from '../fs/filesystem';
import type { Engine, EngineOptions } from '../fuse/engine';
import { FuseNativeEngine } from '../fuse/fuse-native-engine';
import { loadNativeAddon } from '../native/addon';
import { NativeEngine } from '../fuse/native-engine';
import { Namespace } from '../namespace/namespace';
import { S3Store } from '../store/s3-store';
import { formatBytes } from '../units';
import { checkCacheFits, preparePrivateDir } from './cache-dir';
import { ControlServer } from './control-server';
import { MetricsServer, MountMetrics } from './mount-metrics';
import { fuseUnmount, mountAt } from './mount-table';
import { controlSocketPath, lockCacheDir, register, unregister } from './runtime-registry';
import { NO_SERVICE_MANAGER, type ServiceManager } from './service-manager';

const debug = createDebug('stagefs:mount');
const info = createDebug('stagefs:info');
const warn = createDebug('stagefs:warn');

/** How often files open on the mount are marked in use (their reads may never reach the daemon). */
const TOUCH_OPEN_FILES_MS = 5_000;

export interface RunningMount {
  readonly config: MountConfig;
  readonly cache: StagingCache;
  /** Where the metrics are served, when asked for. */
  readonly metricsUrl: string | undefined;
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
    readMemoryBytes: config.readMemoryBytes,
  };
  const native = config.engine === 'fuse-native' ? undefined : loadNativeAddon();
  if (native && 'addon' in native) return new NativeEngine(fs, options, native.addon);
  if (config.engine === 'native') {
    throw new CommandError(`the native engine cannot load (${native && 'error' in native ? native.error : 'unknown'}); use --engine fuse-native`);
  }
  if (native) debug('native engine unavailable (%s); using fuse-native', 'error' in native ? native.error : '');
  return new FuseNativeEngine(fs, options);
}

/** A cache of the single-cache layout of earlier versions, which may hold files not uploaded yet. */
function warnOfLegacyCache(config: MountConfig): void {
  const root = cacheRoot();
  if (config.cache.dir === root || !existsSync(join(root, 'index'))) return;
  warn('%s holds a cache of an earlier stagefs (one cache for all mounts); mount with --cache-dir %s to use it (and upload what it holds), or remove it', root, root);
}

/** Mounts and serves; `manager` hears of progress (systemd's sd_notify for Type=notify units). */
export async function startMount(config: MountConfig, manager: ServiceManager = NO_SERVICE_MANAGER): Promise<RunningMount> {
  // Everything the daemon writes (staged bytes, written files, index, logs) is its user's alone.
  process.umask(0o077);
  manager.status(`mounting ${sourceUrl(config)} at ${config.mountpoint}`);
  await checkMountpoint(config.mountpoint);
  preparePrivateDir(config.cache.dir, 'cache dir', '--cache-dir');
  preparePrivateDir(config.stateDir, 'state dir', '--state-dir');
  linkStateDir(config.cache.dir, config.stateDir);
  warnOfLegacyCache(config);
  checkCacheFits(config.cache);
  const unlock = lockCacheDir(config.cache.dir, config.mountpoint);
  const cleanups: Array<() => unknown> = [unlock];
  const undo = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  };
  try {
    const metrics = new MountMetrics();
    const store = new S3Store(config.store, metrics);
    cleanups.push(() => store.close());
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
      writeDir: writeDirOf(config.stateDir),
      punchHole: punchHole(),
    });
    // What a previous run left unuploaded goes up before anything is served.
    manager.status('uploading what the previous run left');
    await fs.recover();
    cleanups.push(() => fs.drain());
    const engine = createEngine(config, fs);
    const controlSocket = controlSocketPath(config.mountpoint);
    const control = await ControlServer.listen(controlSocket, fs, cache);
    cleanups.push(() => control.close());
    metrics.attach({
      source: sourceUrl(config),
      mountpoint: config.mountpoint,
      cache,
      engine,
      pendingUploads: () => fs.pendingUploads(),
    });
    const metricsServer = config.metrics ? await MetricsServer.listen(config.metrics, () => metrics.registry.render()) : undefined;
    if (metricsServer) cleanups.push(() => metricsServer.close());
    await engine.mount();
    register({
      pid: process.pid,
      mountpoint: config.mountpoint,
      source: sourceUrl(config),
      cacheDir: config.cache.dir,
      controlSocket,
      engine: engine.name,
      startedAt: new Date().toISOString(),
      metrics: metricsServer?.url,
      logFile: config.logFile,
    });
    cleanups.push(() => unregister(config.mountpoint));
    info(
      'mounted %s at %s (engine %s, cache %s%s)',
      sourceUrl(config),
      config.mountpoint,
      engine.name,
      config.cache.dir,
      metricsServer ? `, metrics at ${metricsServer.url}` : '',
    );
    return serve(config, { cache, fs, engine, metricsUrl: metricsServer?.url, manager }, undo);
  } catch (err) {
    manager.status(`mount failed: ${errorMessage(err)}`);
    await undo();
    throw err;
  }
}

interface Served {
  cache: StagingCache;
  fs: Filesystem;
  engine: Engine;
  metricsUrl: string | undefined;
  manager: ServiceManager;
}

/**
 * Serves until `stop`, or until the kernel ends the connection: after umount(8), or after a lazy
 * unmount (umount -l) once the last open file is closed, so those files keep being served.
 */
function serve(config: MountConfig, served: Served, undo: () => Promise<void>): RunningMount {
  const { cache, fs, engine, manager } = served;
  let stopping: Promise<void> | undefined;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve));
  const stop = (stillMounted: boolean) => {
    stopping ??= (async () => {
      clearInterval(touch);
      const pending = fs.pendingUploads();
      manager.stopping(pending.count ? `unmounting; uploading ${pending.count} files (${formatBytes(pending.bytes)})` : 'unmounting');
      if (stillMounted) {
        try {
          await engine.unmount();
        } catch (err) {
          warn('unmounting %s: %s', config.mountpoint, errorMessage(err));
        }
      } else {
        info('%s was unmounted', config.mountpoint);
      }
      await undo();
      info('unmounted %s', config.mountpoint);
      resolveStopped();
    })();
    return stopping;
  };
  void engine.closed.then(() => stop(false));
  const touch = setInterval(() => fs.touchOpenFiles(), TOUCH_OPEN_FILES_MS);
  touch.unref();
  manager.ready(`serving ${sourceUrl(config)} at ${config.mountpoint} (cache ${formatBytes(config.cache.capacityBytes)} in ${config.cache.dir})`);
  return { config, cache, metricsUrl: served.metricsUrl, stopped, stop: () => stop(true) };
}
