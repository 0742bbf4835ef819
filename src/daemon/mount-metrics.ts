/**
 * The metrics of a running mount, served in the Prometheus text format on an address the admin
 * opts into (--metrics HOST:PORT, path /metrics). Store requests are counted as they happen;
 * the cache, the engine and pending uploads are read from their owners at each scrape.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StagingCache } from '../cache/staging-cache';
import type { MetricsAddress } from '../config';
import { CommandError } from '../errors';
import type { Engine } from '../fuse/engine';
import { Registry } from '../metrics/registry';
import type { RequestObserver } from '../store/s3-store';
import { VERSION } from '../version';

/** Upper bounds, in seconds, of the store latency buckets: 1 ms to 30 s. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface MountParts {
  source: string;
  mountpoint: string;
  cache: StagingCache;
  engine: Engine;
  /** Files written through the mount and not uploaded yet. */
  pendingUploads(): { count: number; bytes: number };
}

export class MountMetrics implements RequestObserver {
  readonly registry = new Registry();
  private readonly storeRequests = this.registry.counter('stagefs_s3_requests_total', 'Requests to the object store, by operation.');
  private readonly storeErrors = this.registry.counter(
    'stagefs_s3_request_errors_total',
    'Requests to the object store that failed (after the SDK retries), by operation.',
  );
  private readonly storeLatency = this.registry.histogram(
    'stagefs_s3_request_duration_seconds',
    'Time from sending a request to the object store to its response; for GET, to the response headers (the body streams after).',
    LATENCY_BUCKETS,
  );

  request(op: string, seconds: number, failed: boolean): void {
    this.storeRequests.inc({ op });
    if (failed) this.storeErrors.inc({ op });
    else this.storeLatency.observe({ op }, seconds);
  }

  /** Registers what is read from the running mount at each scrape. */
  attach(parts: MountParts): void {
    const r = this.registry;
    const cache = () => parts.cache.stats();
    r.gauge('stagefs_info', 'The mount: source, mountpoint, engine and stagefs version.', () => [
      { labels: { source: parts.source, mountpoint: parts.mountpoint, engine: parts.engine.name, version: VERSION }, value: 1 },
    ]);
    r.gauge('stagefs_cache_capacity_bytes', 'The cache size (--cache-size).', () => cache().capacityBytes);
    r.gauge('stagefs_cache_staged_bytes', 'Bytes staged in the cache.', () => cache().stagedBytes);
    r.gauge('stagefs_cache_reserved_bytes', 'Bytes promised to fetches in flight.', () => cache().reservedBytes);
    r.gauge('stagefs_cache_entries', 'Object versions in the cache.', () => cache().entryCount);
    // The cache's counters are kept in its index and grow across remounts of one cache dir.
    r.counterFrom('stagefs_cache_hits_total', 'Reads served from staged bytes (by JavaScript or, with the native engine, in C).', () => cache().counters.hits);
    r.counterFrom('stagefs_cache_misses_total', 'Reads that needed bytes from the object store.', () => cache().counters.misses);
    r.counterFrom('stagefs_cache_fetched_bytes_total', 'Bytes fetched from the object store.', () => cache().counters.bytesFetched);
    r.counterFrom('stagefs_cache_evictions_total', 'Entries evicted (age, capacity, admin).', () => cache().counters.evictions);
    r.counterFrom('stagefs_cache_bypassed_reads_total', 'Reads served straight from the store for want of cache space.', () => cache().counters.bypassedReads);
    r.counterFrom('stagefs_cache_bad_blocks_total', 'Staged blocks that failed their checksum and were dropped, to be fetched again.', () => cache().counters.badBlocks);
    r.counterFrom(
      'stagefs_cache_checksum_mismatches_total',
      'Objects whose fetched bytes did not match the checksum the store gives (the MD5 ETag); their staged blocks were dropped.',
      () => cache().counters.checksumMismatches,
    );
    r.gauge('stagefs_pending_uploads', 'Files written through the mount and not uploaded yet.', () => parts.pendingUploads().count);
    r.gauge('stagefs_pending_upload_bytes', 'Bytes of the files not uploaded yet.', () => parts.pendingUploads().bytes);
    const engine = () => parts.engine.stats();
    r.counterFrom('stagefs_fuse_requests_total', 'FUSE requests answered, by operation; reads answered in C included.', () =>
      [...engine().requests].map(([op, value]) => ({ labels: { op }, value })),
    );
    r.counterFrom('stagefs_fuse_native_reads_total', 'Reads the native engine answered in C from staged bytes.', () => engine().fastReads);
    r.counterFrom('stagefs_fuse_native_read_bytes_total', 'Bytes of the reads answered in C.', () => engine().fastReadBytes);
    r.counterFrom(
      'stagefs_fuse_passthrough_opens_total',
      'Opens handed to the kernel with FUSE passthrough; the kernel reads those files itself and does not tell how much.',
      () => engine().passthroughOpens,
    );
    r.gauge('stagefs_fuse_passthrough_open_files', 'Files open now through FUSE passthrough.', () => engine().passthroughOpenFiles);
  }
}

/** The HTTP endpoint: GET /metrics, nothing else. */
export class MetricsServer {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async listen(address: MetricsAddress, render: () => string): Promise<MetricsServer> {
    const server = createServer((request, response) => {
      if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('stagefs serves /metrics only\n');
        return;
      }
      response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(render());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new CommandError(`--metrics ${address.host}:${address.port}: cannot listen (${err.code ?? err.message})`)),
      );
      server.listen(address.port, address.host, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const host = address.host.includes(':') ? `[${address.host}]` : address.host;
    return new MetricsServer(server, `http://${host}:${port}/metrics`);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
