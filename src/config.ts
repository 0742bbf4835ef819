/**
 * The one typed, validated configuration of a mount. Sizes and durations are parsed here, once,
 * and every error names the option it came from.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { UsageError } from './errors';
import { MAX_READ_BYTES } from './fuse/kernel-protocol';
import { profileName, profileSettings } from './store/aws-config';
import { formatBytes, parseDuration, parseSize, UnitParseError } from './units';

export interface BucketLocation {
  bucket: string;
  /** Key prefix the mount shows as its root: empty, or ending in '/'. */
  prefix: string;
}

export interface StoreConfig extends BucketLocation {
  endpoint: string | undefined;
  region: string;
  pathStyle: boolean;
  /** The shared-config profile asked for (--profile); the SDK otherwise follows AWS_PROFILE. */
  profile: string | undefined;
  /** CA certificates to trust instead of the built-in ones, and where that choice came from. */
  caBundle: { path: string; source: string } | undefined;
  /**
   * Who runs the read path's ranged GETs: the native addon's libcurl threads, writing bodies
   * straight into staging files (the default where the addon has them), or JavaScript.
   */
  fetcher?: FetcherName;
}

export type FetcherName = 'native' | 'js';

export interface CacheConfig {
  dir: string;
  capacityBytes: number;
  blockSize: number;
  /** Idle time after which an unused entry is evicted; 0 turns age eviction off. */
  maxAgeMs: number;
  sweepIntervalMs: number;
  /** Fractions of capacity: crossing the high mark evicts down to the low mark. */
  highWatermark: number;
  lowWatermark: number;
}

export type EngineName = 'native' | 'fuse-native';

/** Where the metrics endpoint listens. */
export interface MetricsAddress {
  host: string;
  port: number;
}

export interface MountConfig {
  store: StoreConfig;
  cache: CacheConfig;
  /**
   * Where this mount's durable state belongs (written data not uploaded yet, in `pending/`),
   * apart from the cache, which may be wiped.
   */
  stateDir: string;
  mountpoint: string;
  /** Log here instead of standard error; reopened on SIGHUP. */
  logFile: string | undefined;
  metrics: MetricsAddress | undefined;
  metadataTtlMs: number;
  /** Memory for the replies of reads being filled at once (native engine); a read past it waits. */
  readMemoryBytes: number;
  readOnly: boolean;
  foreground: boolean;
  allowOther: boolean;
  uid: number;
  gid: number;
  engine: EngineName | undefined;
}

/** Option values as the command line gives them: strings and booleans, not yet checked. */
export interface MountOptions {
  endpoint?: string;
  region?: string;
  'path-style'?: boolean;
  'cache-dir'?: string;
  'cache-size'?: string;
  'block-size'?: string;
  'metadata-ttl'?: string;
  'max-age'?: string;
  'sweep-interval'?: string;
  'high-watermark'?: string;
  'low-watermark'?: string;
  'read-memory'?: string;
  'read-only'?: boolean;
  foreground?: boolean;
  'allow-other'?: boolean;
  uid?: string;
  gid?: string;
  engine?: string;
  fetcher?: string;
  profile?: string;
  'ca-bundle'?: string;
  'log-file'?: string;
  metrics?: string;
  'state-dir'?: string;
}

export const DEFAULTS = {
  cacheSize: '10GiB',
  blockSize: '1MiB',
  metadataTtl: '60s',
  maxAge: '7d',
  sweepInterval: '1m',
  highWatermark: '95%',
  lowWatermark: '85%',
  readMemory: '16MiB',
  region: 'us-east-1',
} as const;

const MIN_BLOCK_SIZE = 4096;
const MAX_BLOCK_SIZE = 64 * 1024 * 1024;

const isRoot = () => process.getuid?.() === 0;

/** The directory under which each mount gets its own cache dir by default. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (isRoot()) return '/var/cache/stagefs';
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'stagefs');
}

/**
 * Where files written through a mount keep their data and records until uploaded: in the state
 * dir, which is not wiped as a cache is, and apart from the staged files, so reconciling or
 * evicting the cache never touches them.
 */
export function writeDirOf(stateDir: string): string {
  return join(stateDir, 'pending');
}

const STATE_DIR_LINK = 'state-dir';

/** The cache dir names its mount's state dir, so admin tools reading a cache find its pending writes. */
export function linkStateDir(cacheDir: string, stateDir: string): void {
  writeFileSync(join(cacheDir, STATE_DIR_LINK), `${stateDir}\n`, { mode: 0o600 });
}

export function stateDirOf(cacheDir: string): string | undefined {
  try {
    return readFileSync(join(cacheDir, STATE_DIR_LINK), 'utf8').trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The directory under which each mount gets its own state dir by default. */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (isRoot()) return '/var/lib/stagefs';
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'stagefs');
}

function readable(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60);
}

/**
 * A directory name of its own for a mount of `location` at `mountpoint`, so mounts on one host
 * need no flags to keep apart: readable (bucket, prefix, mountpoint), and a hash of the three
 * so that names that read alike never collide.
 */
export function mountDirName(location: BucketLocation, mountpoint: string): string {
  const hash = createHash('sha256').update(`${location.bucket}\0${location.prefix}\0${mountpoint}`).digest('hex').slice(0, 10);
  const source = readable(`${location.bucket}-${location.prefix}`);
  return `${source}@${readable(mountpoint) || 'root'}.${hash}`;
}

/** "s3://bucket/some/prefix" -> { bucket, prefix: "some/prefix/" }. */
export function parseBucketUrl(url: string): BucketLocation {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(url);
  if (!match) throw new UsageError(`'${url}' is not an S3 location; expected s3://BUCKET[/PREFIX]`);
  const bucket = match[1];
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,254}$/.test(bucket)) {
    throw new UsageError(`'${bucket}' is not a valid bucket name`);
  }
  const segments = (match[2] ?? '').split('/').filter((s) => s.length > 0);
  if (segments.some((s) => s === '.' || s === '..')) {
    throw new UsageError(`prefix '${match[2]}' may not contain '.' or '..' segments`);
  }
  return { bucket, prefix: segments.length ? segments.join('/') + '/' : '' };
}

function option<T>(name: string, text: string, parse: (text: string) => T): T {
  try {
    return parse(text);
  } catch (err) {
    if (err instanceof UnitParseError) throw new UsageError(`--${name}: ${err.message}`);
    throw err;
  }
}

function watermark(name: string, text: string): number {
  const match = /^(\d+(?:\.\d+)?)%$/.exec(text.trim());
  const value = match ? Number(match[1]) / 100 : Number.NaN;
  if (!(value > 0 && value <= 1)) throw new UsageError(`--${name}: '${text}' is not a percentage between 1% and 100%`);
  return value;
}

function id(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) throw new UsageError(`--${name}: '${text}' is not a numeric id`);
  return Number(text);
}

function endpointUrl(text: string | undefined): string | undefined {
  if (!text) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--endpoint: '${text}' is not a URL (example: http://127.0.0.1:9000)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`--endpoint: '${text}' must start with http:// or https://`);
  }
  return text.replace(/\/+$/, '');
}

/** Path-style addressing is the only one that works against an IP or localhost endpoint. */
function needsPathStyle(endpoint: string | undefined): boolean {
  if (!endpoint) return false;
  const host = new URL(endpoint).hostname;
  return host === 'localhost' || /^[\d.]+$/.test(host) || host.startsWith('[');
}

export function buildCacheConfig(options: MountOptions, defaultDir?: string): CacheConfig {
  const blockSize = option('block-size', options['block-size'] ?? DEFAULTS.blockSize, parseSize);
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || blockSize % MIN_BLOCK_SIZE !== 0) {
    throw new UsageError('--block-size: must be a multiple of 4KiB between 4KiB and 64MiB');
  }
  const capacityBytes = option('cache-size', options['cache-size'] ?? DEFAULTS.cacheSize, parseSize);
  if (capacityBytes < blockSize) {
    throw new UsageError(`--cache-size: ${formatBytes(capacityBytes)} is less than one block (${formatBytes(blockSize)}, --block-size)`);
  }
  const dir = options['cache-dir'] ?? defaultDir;
  if (!dir) throw new UsageError('--cache-dir is required');
  const highWatermark = watermark('high-watermark', options['high-watermark'] ?? DEFAULTS.highWatermark);
  const lowWatermark = watermark('low-watermark', options['low-watermark'] ?? DEFAULTS.lowWatermark);
  if (lowWatermark > highWatermark) throw new UsageError('--low-watermark must not be above --high-watermark');
  const sweepIntervalMs = option('sweep-interval', options['sweep-interval'] ?? DEFAULTS.sweepInterval, parseDuration);
  if (sweepIntervalMs < 100) throw new UsageError('--sweep-interval: must be at least 100ms');
  return {
    dir: resolve(dir),
    capacityBytes,
    blockSize,
    maxAgeMs: option('max-age', options['max-age'] ?? DEFAULTS.maxAge, parseDuration),
    sweepIntervalMs,
    highWatermark,
    lowWatermark,
  };
}

export function buildMountConfig(
  source: string,
  mountpoint: string,
  options: MountOptions,
  env: NodeJS.ProcessEnv = process.env,
): MountConfig {
  const location = parseBucketUrl(source);
  const endpoint = endpointUrl(options.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL);
  const engine = options.engine;
  if (engine !== undefined && engine !== 'native' && engine !== 'fuse-native') {
    throw new UsageError(`--engine: '${engine}' is not an engine; choose native or fuse-native`);
  }
  const fetcher = options.fetcher;
  if (fetcher !== undefined && fetcher !== 'native' && fetcher !== 'js') {
    throw new UsageError(`--fetcher: '${fetcher}' is not a fetcher; choose native or js`);
  }
  const absoluteMountpoint = resolve(mountpoint);
  const dirName = mountDirName(location, absoluteMountpoint);
  const profile = profileName(options.profile, env);
  const settings = profileSettings(profile, env);
  return {
    store: {
      ...location,
      endpoint,
      region: options.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? settings.region ?? DEFAULTS.region,
      pathStyle: options['path-style'] ?? needsPathStyle(endpoint),
      profile: options.profile,
      caBundle: caBundle(options['ca-bundle'], env, profile, settings.ca_bundle),
      fetcher,
    },
    cache: buildCacheConfig(options, join(cacheRoot(env), dirName)),
    stateDir: resolve(options['state-dir'] ?? join(stateRoot(env), dirName)),
    mountpoint: absoluteMountpoint,
    logFile: options['log-file'] === undefined ? undefined : resolve(options['log-file']),
    metrics: options.metrics === undefined ? undefined : metricsAddress(options.metrics),
    metadataTtlMs: option('metadata-ttl', options['metadata-ttl'] ?? DEFAULTS.metadataTtl, parseDuration),
    readMemoryBytes: readMemory(options['read-memory'] ?? DEFAULTS.readMemory),
    readOnly: options['read-only'] ?? false,
    foreground: options.foreground ?? false,
    allowOther: options['allow-other'] ?? false,
    uid: id('uid', options.uid, process.getuid?.() ?? 0),
    gid: id('gid', options.gid, process.getgid?.() ?? 0),
    engine,
  };
}

function readMemory(text: string): number {
  const bytes = option('read-memory', text, parseSize);
  if (bytes < MAX_READ_BYTES) throw new UsageError(`--read-memory: ${formatBytes(bytes)} is less than one read (${formatBytes(MAX_READ_BYTES)})`);
  return bytes;
}

/** The CA bundle to trust, as the AWS CLI chooses it: the flag, AWS_CA_BUNDLE, the profile's ca_bundle. */
function caBundle(flag: string | undefined, env: NodeJS.ProcessEnv, profile: string, fromProfile: string | undefined): StoreConfig['caBundle'] {
  if (flag) return { path: resolve(flag), source: '--ca-bundle' };
  if (env.AWS_CA_BUNDLE) return { path: resolve(env.AWS_CA_BUNDLE), source: 'AWS_CA_BUNDLE' };
  if (fromProfile) return { path: resolve(fromProfile.replace(/^~(?=\/)/, env.HOME || homedir())), source: `ca_bundle of profile '${profile}'` };
  return undefined;
}

/** "127.0.0.1:9100", "[::1]:9100" or a bare port (loopback). */
export function metricsAddress(text: string): MetricsAddress {
  const match = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):)?(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) throw new UsageError(`--metrics: '${text}' is not an address; expected HOST:PORT, e.g. 127.0.0.1:9100`);
  const host = match[1] === undefined ? '127.0.0.1' : match[1].replace(/^\[|\]$/g, '');
  return { host: host || '0.0.0.0', port };
}
