/** Prometheus metrics on an opt-in address, and what the native engine serves without JavaScript. */
import { open, readFile, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import t from 'tap';
import { mountRecordFor } from '../../src/daemon/runtime-registry';
import { sleep } from '../../src/util/deferred';
import { dropPageCache, runCli, statusReport } from '../helpers/cli';
import { randomData } from '../helpers/files';
import { engineTest, mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;

function fetchText(url: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    get(url, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body, type: String(response.headers['content-type']) }));
    }).on('error', reject);
  });
}

/** Samples by name with labels, e.g. `stagefs_s3_requests_total{op="get"}`. */
async function scrape(url: string): Promise<Map<string, number>> {
  const { body } = await fetchText(url);
  const samples = new Map<string, number>();
  for (const line of body.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

engineTest(t, 'metrics: cache, store requests with latencies, FUSE requests, pending uploads', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(3 * MiB);
  await s3.store.put('vol/a.raw', data);
  const mount = await mountS3(t, s3, { engine, args: ['--metrics', '127.0.0.1:0', '--cache-size', '256MiB'] });
  const url = mountRecordFor(mount.mountpoint)?.metrics;
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'the registry names the endpoint');
  t.match((await runCli(['status', mount.mountpoint])).stdout, new RegExp(`metrics\\s+${url}`), 'status shows it');
  const response = await fetchText(url!);
  t.equal(response.status, 200);
  t.match(response.type, /^text\/plain; version=0\.0\.4/);
  t.match(response.body, /# TYPE stagefs_s3_request_duration_seconds histogram/);
  t.equal((await fetchText(url!.replace('/metrics', '/other'))).status, 404, 'only /metrics');

  t.same(await readFile(mount.path('vol/a.raw')), data, 'a cold read');
  await writeFile(mount.path('vol/new.txt'), 'written');
  await sleep(300);
  const m = await scrape(url!);
  t.equal(m.get('stagefs_cache_capacity_bytes'), 256 * MiB, 'capacity');
  t.ok(m.get('stagefs_cache_staged_bytes')! >= data.length, 'staged bytes');
  t.ok(m.get('stagefs_cache_misses_total')! >= 1, 'misses');
  t.ok(m.get('stagefs_cache_fetched_bytes_total')! >= data.length, 'bytes fetched');
  t.ok(m.get('stagefs_s3_requests_total{op="get"}')! >= 1, 'GETs');
  t.ok(m.get('stagefs_s3_requests_total{op="put"}')! >= 1, 'PUTs');
  const getCount = m.get('stagefs_s3_request_duration_seconds_count{op="get"}')!;
  t.ok(getCount >= 1, 'GET latencies');
  t.equal(m.get('stagefs_s3_request_duration_seconds_bucket{op="get",le="+Inf"}'), getCount, 'every GET is in the last bucket');
  t.ok(m.get('stagefs_s3_request_duration_seconds_bucket{op="get",le="30"}')! <= getCount, 'buckets are cumulative');
  t.ok(m.get('stagefs_fuse_requests_total{op="open"}')! >= 1, 'FUSE opens');
  t.ok(m.get('stagefs_fuse_requests_total{op="read"}')! >= 1, 'FUSE reads');
  t.equal(m.get('stagefs_pending_uploads'), 0, 'nothing left to upload');
  t.equal(m.get(`stagefs_info{source="s3://test",mountpoint="${mount.mountpoint}",engine="${engine}",version="0.1.0"}`), 1, 'stagefs_info');
});

t.test('native engine: reads answered in C count as hits and keep lastAccess current; passthrough opens are counted', async (t) => {
  const s3 = await startS3(t);
  const data = randomData(8 * MiB);
  await s3.store.put('vol/part.raw', data);
  await s3.store.put('iso/whole.iso', randomData(4 * MiB));
  const mount = await mountS3(t, s3, { engine: 'native', args: ['--metrics', '127.0.0.1:0', '--block-size', '1MiB'] });
  const url = mountRecordFor(mount.mountpoint)!.metrics!;

  const file = await open(mount.path('vol/part.raw'), 'r');
  t.teardown(() => file.close().catch(() => undefined));
  await file.read(Buffer.alloc(4096), 0, 4096, 5 * MiB);
  await sleep(600);
  const before = await scrape(url);
  const accessBefore = Date.parse((await statusReport(mount.cacheDir)).entries.find((e) => e.key === 'vol/part.raw')!.lastAccess);
  await sleep(1100);
  dropPageCache();
  const again = Buffer.alloc(4096);
  await file.read(again, 0, 4096, 5 * MiB + 8192);
  t.same(again, data.subarray(5 * MiB + 8192, 5 * MiB + 12288), 'a read of a staged block');
  await sleep(600);
  const after = await scrape(url);
  t.ok(after.get('stagefs_fuse_native_reads_total')! > before.get('stagefs_fuse_native_reads_total')!, 'is answered in C');
  t.ok(after.get('stagefs_fuse_native_read_bytes_total')! >= before.get('stagefs_fuse_native_read_bytes_total')! + 4096, 'with its bytes');
  t.ok(after.get('stagefs_cache_hits_total')! > before.get('stagefs_cache_hits_total')!, 'and counts as a cache hit');
  t.equal(after.get('stagefs_cache_misses_total'), before.get('stagefs_cache_misses_total'), 'not a miss');
  const accessAfter = Date.parse((await statusReport(mount.cacheDir)).entries.find((e) => e.key === 'vol/part.raw')!.lastAccess);
  t.ok(accessAfter > accessBefore, `lastAccess moved in the index (${accessBefore} -> ${accessAfter})`);

  t.equal((await runCli(['cache', 'prefetch', mount.path('iso/whole.iso')])).code, 0, 'a file staged whole');
  const whole = await open(mount.path('iso/whole.iso'), 'r');
  const opened = Date.now();
  await whole.read(Buffer.alloc(4096), 0, 4096, 0);
  const during = await scrape(url);
  t.equal(during.get('stagefs_fuse_passthrough_opens_total'), 1, 'its open is handed to the kernel (passthrough)');
  t.equal(during.get('stagefs_fuse_passthrough_open_files'), 1, 'and is open');
  // The kernel reads it without telling us; while it is open it counts as in use.
  let access = 0;
  for (let i = 0; i < 600 && access <= opened; i++) {
    await sleep(100);
    access = Date.parse((await statusReport(mount.cacheDir)).entries.find((e) => e.key === 'iso/whole.iso')!.lastAccess);
  }
  t.ok(access > opened, 'lastAccess keeps moving while a passthrough file is open');
  await whole.close();
  await sleep(300);
  t.equal((await scrape(url)).get('stagefs_fuse_passthrough_open_files'), 0, 'closed');
});
