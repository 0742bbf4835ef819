/**
 * The cold read path: a READ is answered once its own bytes are on disk, not when its block or
 * GET ends; an open to read fetches the first block (of a large object, its head) before any
 * read asks; a handle's first small read starts no readahead; small random reads that land
 * twice in one extent fetch the rest of it; GETs that readers wait for are capped.
 */
import { open, type FileHandle } from 'node:fs/promises';
import t, { type Test } from 'tap';
import { startFaultProxy } from '../helpers/fault-proxy';
import { cacheStatus, mountThrough, wrongBytes, type CacheStatus } from '../helpers/fault-reads';
import { randomData } from '../helpers/files';
import { dropPageCache } from '../helpers/cli';
import { engineTest, mountS3, tempDir, type TestMount } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
/** The head of its first block a large object's first open fetches. */
const HEAD = 128 * 1024;
/** Longer than any test runs: a stalled body stays stalled until the proxy stops. */
const HELD_MS = 15 * 60_000;
/** GETs readers may wait for at once in a cache under 256 MiB (see demandFetchLimit). */
const SMALL_CACHE_DEMAND_FETCHES = 4;

async function openFile(t: Test, path: string): Promise<FileHandle> {
  const file = await open(path, 'r');
  t.teardown(() => file.close().catch(() => undefined));
  return file;
}

async function readHead(file: FileHandle, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await file.read(buffer, 0, length, 0);
  return buffer.subarray(0, bytesRead);
}

/** The status the mount records, once at least `staged` bytes are staged and nothing is reserved (or after 20 s). */
async function stagedStatus(mount: TestMount, staged: number): Promise<CacheStatus> {
  for (let tries = 0; ; tries++) {
    const status = await cacheStatus(mount);
    if ((status.stagedBytes >= staged && status.reservedBytes === 0) || tries >= 200) return status;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

engineTest(t, 'a read of the first bytes of a block is answered while the rest of its GET is held back', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(4 * MiB);
  await s3.store.put('vm/boot.img', data);
  const mount = await mountThrough(t, s3, proxy, engine);
  await proxy.set([{ fault: { kind: 'stall', at: 0.5, ms: HELD_MS }, match: { keyPrefix: 'vm/' }, count: 1 }]);
  const file = await openFile(t, mount.path('vm/boot.img'));
  t.equal(wrongBytes(await readHead(file, 4096), data.subarray(0, 4096)), 0, 'the first 4 KiB read right');
  t.equal(await proxy.injected('stall'), 1, 'while the body of their GET stays stalled halfway through the block');
  t.equal((await cacheStatus(mount)).stagedBytes, 0, 'and that block is not staged');
});

engineTest(t, 'an open to read starts fetching the first block, and only it, before any read: of a large object, its head', async (t, engine) => {
  const s3 = await startS3(t);
  const large = randomData(8 * MiB);
  const small = randomData(MiB);
  await s3.store.put('vm/template.img', large);
  await s3.store.put('vm/seed.iso', small);
  const mount = await mountS3(t, s3, { engine, args: ['--block-size', '1MiB'] });
  const file = await openFile(t, mount.path('vm/template.img'));
  let status = await stagedStatus(mount, HEAD);
  t.equal(status.stagedBytes, HEAD, 'with the large file open and nothing read, the head of its first block is staged and nothing else');
  t.same(s3.gets('vm/template.img').map(({ range }) => range), [`bytes=0-${HEAD - 1}`], 'by one GET of that head');
  t.equal(wrongBytes(await readHead(file, 4096), large.subarray(0, 4096)), 0, 'the first read reads it right');
  const smallFile = await openFile(t, mount.path('vm/seed.iso'));
  status = await stagedStatus(mount, HEAD + MiB);
  t.equal(status.stagedBytes, HEAD + MiB, 'an object of one block has that block staged');
  t.same(s3.gets('vm/seed.iso').map(({ range }) => range), [`bytes=0-${MiB - 1}`], 'by one GET of it');
  t.equal(wrongBytes(await readHead(smallFile, 4096), small.subarray(0, 4096)), 0, 'and reads right');
});

engineTest(t, "probes of a large object's head read it from disk, after a remount too; a read past it fetches the rest of its block", async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(8 * MiB);
  await s3.store.put('vm/backing.qcow2', data);
  const cacheDir = tempDir(t, 'cache');
  const args = ['--block-size', '1MiB'];
  const readAt = async (mount: TestMount, position: number) => {
    const file = await open(mount.path('vm/backing.qcow2'), 'r');
    try {
      const buffer = Buffer.alloc(4096);
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      return wrongBytes(buffer.subarray(0, bytesRead), data.subarray(position, position + 4096));
    } finally {
      await file.close();
    }
  };
  const ranges = () => s3.gets('vm/backing.qcow2').map(({ range }) => range);

  const first = await mountS3(t, s3, { engine, cacheDir, args });
  t.equal(await readAt(first, 0), 0, 'a probe of the header reads right');
  t.same(ranges(), [`bytes=0-${HEAD - 1}`], 'by one GET, of the head');
  await stagedStatus(first, HEAD);
  dropPageCache();
  t.equal(await readAt(first, 64 * 1024), 0, 'another open reads in the head right');
  t.equal(ranges().length, 1, 'from disk');
  await first.unmount();

  const second = await mountS3(t, s3, { engine, cacheDir, args });
  t.equal(await readAt(second, 0), 0, 'after a remount, the probe reads right');
  t.equal(ranges().length, 1, 'from disk: the head is in the index');
  t.equal(await readAt(second, 512 * 1024), 0, 'a read past the head reads right');
  const status = await stagedStatus(second, MiB);
  t.equal(status.stagedBytes, MiB, 'its block is staged, the head in it counted once');
  t.same(ranges().slice(1), [`bytes=${HEAD}-${MiB - 1}`], 'by one GET of the rest of the block: no byte is fetched twice');
});

engineTest(t, "a handle's first small read starts no readahead", async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(16 * MiB);
  await s3.store.put('vm/disk.img', data);
  const mount = await mountS3(t, s3, { engine, args: ['--block-size', '1MiB'] });
  const file = await openFile(t, mount.path('vm/disk.img'));
  t.equal(wrongBytes(await readHead(file, 4096), data.subarray(0, 4096)), 0, 'the first 4 KiB read right');
  const status = await stagedStatus(mount, HEAD);
  t.equal(status.stagedBytes, HEAD, 'once the head of its first block is staged and nothing is reserved, that head is all there is');
  t.equal(s3.gets('vm/disk.img').length, 1, 'one GET was sent');
});

engineTest(t, 'small random reads that land twice in an 8 MiB extent fetch the rest of it, and only of it', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(32 * MiB);
  await s3.store.put('vm/backing.qcow2', data);
  const mount = await mountS3(t, s3, { engine, args: ['--block-size', '1MiB'] });
  const file = await openFile(t, mount.path('vm/backing.qcow2'));
  // Offsets well inside their blocks, far apart: no read follows another, so none is sequential.
  const reads = [5 * MiB + 100 * 1024, 20 * MiB + 100 * 1024, 2 * MiB + 100 * 1024];
  for (const position of reads) {
    const buffer = Buffer.alloc(4096);
    const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
    t.equal(wrongBytes(buffer.subarray(0, bytesRead), data.subarray(position, position + 4096)), 0, `4 KiB at ${position} read right`);
  }
  const status = await stagedStatus(mount, 9 * MiB);
  t.equal(status.stagedBytes, 9 * MiB, 'staged: the whole first extent (its second read) and the one block read in the third extent');
  const outside = s3.gets('vm/backing.qcow2').filter(({ range }) => {
    const [, first, last] = /^bytes=(\d+)-(\d+)$/.exec(range ?? '') ?? [];
    const inBlock20 = Number(first) >= 20 * MiB && Number(last) < 21 * MiB;
    return !(Number(last) < 8 * MiB || inBlock20);
  });
  t.same(outside, [], 'every GET asked for bytes of the first extent or of the block read in the third');
  t.equal(wrongBytes(await readHead(file, 8 * MiB), data.subarray(0, 8 * MiB)), 0, 'the first extent reads right');
});

engineTest(t, 'GETs that readers wait for are capped; the rest wait their turn', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const files = Array.from({ length: SMALL_CACHE_DEMAND_FETCHES + 2 }, (_, i) => [`vm/f${i}.img`, randomData(2 * MiB)] as const);
  for (const [key, data] of files) await s3.store.put(key, data);
  const mount = await mountThrough(t, s3, proxy, engine, ['--cache-size', '100MiB', '--block-size', '1MiB']);
  // Every body stalls halfway through its first block: a GET holds its place until the proxy stops.
  await proxy.set([{ fault: { kind: 'stall', at: 0.5, ms: HELD_MS }, match: { keyPrefix: 'vm/' } }]);
  const handles = await Promise.all(files.map(([key]) => openFile(t, mount.path(key))));
  let answered = 0;
  let enough!: () => void;
  const capAnswered = new Promise<void>((resolve) => (enough = resolve));
  const reads = handles.map((file, i) =>
    readHead(file, 4096).then((head) => {
      if (++answered === SMALL_CACHE_DEMAND_FETCHES) enough();
      return wrongBytes(head, files[i][1].subarray(0, 4096));
    }),
  );
  await capAnswered;
  const fetched = new Set((await proxy.stats()).injected.map((fault) => fault.url)).size;
  t.equal(fetched, SMALL_CACHE_DEMAND_FETCHES, `${SMALL_CACHE_DEMAND_FETCHES} files were read: their GETs, stalled, hold every place; no other file's GET was sent`);
  // Stalled GETs end with the proxy; the reads that waited then fail or succeed, never with wrong bytes.
  await proxy.stop();
  const results = await Promise.allSettled(reads);
  const wrong = results.reduce((sum, r) => sum + (r.status === 'fulfilled' ? r.value : 0), 0);
  t.equal(wrong, 0, 'no wrong byte');
  t.ok(results.filter((r) => r.status === 'fulfilled').length >= SMALL_CACHE_DEMAND_FETCHES, 'the reads answered while the GETs stalled stay answered');
});
