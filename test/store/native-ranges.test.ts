/**
 * writeRange on the addon's libcurl threads, against the embedded S3 server (its own process)
 * through the fault proxy: the bytes in the file, the CRC32C reported for each block (also
 * across a resume mid-block), the errors, and a reader's early wake-up.
 */
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { StoreError } from '../../src/errors';
import type { ObjectStore, RangeWrite } from '../../src/store/object-store';
import { S3Store } from '../../src/store/s3-store';
import { crc32c } from '../../src/util/crc32c';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy';
import { randomData } from '../helpers/files';
import { tempDir } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
const BLOCK = MiB;

function storeThrough(t: Test, proxy: FaultProxy, fetcher: 'native' | 'js' = 'native'): S3Store {
  const store = new S3Store({ bucket: 'test', prefix: '', endpoint: proxy.endpoint, region: 'us-east-1', pathStyle: true, profile: undefined, caBundle: undefined, fetcher });
  t.teardown(() => store.close());
  return store;
}

interface Written {
  file: Buffer;
  crcs: Map<number, number>;
  reports: number[];
}

/** Runs writeRange of [start, end) of `key` into a fresh file; what it wrote and reported. */
async function writeInto(t: Test, store: ObjectStore, key: string, etag: string, start: number, end: number, size: number, onWrite?: (write: RangeWrite) => void): Promise<Written> {
  const path = join(tempDir(t, 'file'), 'staged');
  writeFileSync(path, Buffer.alloc(0));
  const fd = openSync(path, 'r+');
  const crcs = new Map<number, number>();
  const reports: number[] = [];
  try {
    const write = store.writeRange!(key, start, end, etag, {
      fd,
      blockSize: BLOCK,
      progress: (written, firstBlock, blockCrcs) => {
        reports.push(written);
        blockCrcs?.forEach((crc, i) => {
          if (crcs.has(firstBlock + i)) throw new Error(`block ${firstBlock + i} reported twice`);
          crcs.set(firstBlock + i, crc);
        });
      },
    });
    onWrite?.(write);
    await write.done;
  } finally {
    closeSync(fd);
  }
  const file = readFileSync(path);
  return { file: Buffer.concat([file, Buffer.alloc(Math.max(0, size - file.length))]), crcs, reports };
}

function expectedCrcs(data: Buffer, start: number, end: number): Map<number, number> {
  const crcs = new Map<number, number>();
  for (let block = start / BLOCK; block * BLOCK < end; block++) {
    crcs.set(block, crc32c(data.subarray(block * BLOCK, Math.min(end, (block + 1) * BLOCK))));
  }
  return crcs;
}

t.test('the bytes land at their offsets, with each block CRC once; a broken body resumes mid-block', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(6 * MiB + 12345);
  const info = await s3.store.put('vm/disk.img', data);
  const store = storeThrough(t, proxy);
  t.ok(store.writeRange, 'the store writes ranges natively where the addon loads');

  const whole = await writeInto(t, store, 'vm/disk.img', info.etag, 0, data.length, data.length);
  t.ok(whole.file.equals(data), 'the whole object is in the file');
  t.same([...whole.crcs], [...expectedCrcs(data, 0, data.length)], 'one CRC32C per block, the last one short');
  t.same(whole.reports, [...whole.reports].sort((a, b) => a - b), 'progress only moves forward');

  // Cut at 0.45 of 4 MiB: mid-block, so the resumed GET goes on with the CRC of a block half written.
  await proxy.set([{ fault: { kind: 'truncate', at: 0.45, declared: 'full' }, count: 1 }]);
  const resumed = await writeInto(t, store, 'vm/disk.img', info.etag, 2 * MiB, 6 * MiB, data.length);
  t.equal(await proxy.injected('truncate'), 1, 'the body was cut');
  t.ok(resumed.file.subarray(2 * MiB, 6 * MiB).equals(data.subarray(2 * MiB, 6 * MiB)), 'the range is whole after the resume');
  t.ok(resumed.file.subarray(0, 2 * MiB).equals(Buffer.alloc(2 * MiB)), 'nothing is written outside it');
  t.same([...resumed.crcs], [...expectedCrcs(data, 2 * MiB, 6 * MiB)], 'the CRC of the block cut in half is right');
  const starts = s3.gets('vm/disk.img').slice(-2).map((get) => Number(/^bytes=(\d+)-/.exec(get.range ?? '')?.[1]));
  t.ok(starts[1] > 2 * MiB && starts[1] % BLOCK !== 0, `the second GET starts at the first byte not written (${starts.join(', ')})`);
});

t.test('bad answers are never written; errors are the store\'s', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(2 * MiB);
  const info = await s3.store.put('a.bin', data);
  const store = storeThrough(t, proxy);

  await proxy.set([{ fault: { kind: 'whole-object' }, count: 1 }, { fault: { kind: 'wrong-etag' }, count: 1 }]);
  const healed = await writeInto(t, store, 'a.bin', info.etag, 0, data.length, data.length);
  t.equal(await proxy.injected('whole-object'), 1, 'a 200 for the range was answered');
  t.equal(await proxy.injected('wrong-etag'), 1, 'an answer under another ETag was answered');
  t.ok(healed.file.equals(data), 'neither was written: the file holds the object');

  await proxy.set([{ fault: { kind: 'whole-object' } }]);
  const refused = await writeInto(t, store, 'a.bin', info.etag, 0, data.length, data.length).catch((err: unknown) => err);
  t.match(refused, { kind: 'BadResponse', message: /status 200/ }, 'a server that always ignores Range fails the read');
  t.ok(refused instanceof StoreError, 'as a StoreError');
  await proxy.set([]);

  await s3.store.put('a.bin', randomData(2 * MiB));
  const stale = await writeInto(t, store, 'a.bin', info.etag, 0, data.length, data.length).catch((err: unknown) => err);
  t.match(stale, { kind: 'PreconditionFailed' }, 'a version the store no longer holds is PreconditionFailed');
  const missing = await writeInto(t, store, 'nothing-here', info.etag, 0, 10, 10).catch((err: unknown) => err);
  t.match(missing, { kind: 'NotFound' }, 'a missing key is NotFound');

  await proxy.set([{ fault: { kind: 'status', status: 503, code: 'SlowDown' }, count: 2 }]);
  const fresh = await s3.store.head('a.bin');
  const retried = await writeInto(t, store, 'a.bin', fresh!.etag, 0, MiB, 2 * MiB);
  t.equal(await proxy.injected('status'), 2, 'SlowDown was answered twice');
  t.ok(retried.file.subarray(0, MiB).equals((await s3.store.getRange('a.bin', 0, MiB, fresh!.etag).then(collect))), 'and the read went on');
});

t.test('a reader waiting for bytes hears of them before their block is whole', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(2 * MiB);
  const info = await s3.store.put('b.bin', data);
  const store = storeThrough(t, proxy);
  // The body stops at a quarter of the first block for longer than the test waits.
  await proxy.set([{ fault: { kind: 'stall', at: 0.125, ms: 4000 }, count: 1 }]);
  let heard: number | undefined;
  const wanted = 64 * 1024;
  let write: RangeWrite | undefined;
  const path = join(tempDir(t, 'file'), 'staged');
  writeFileSync(path, Buffer.alloc(0));
  const fd = openSync(path, 'r+');
  t.teardown(() => closeSync(fd));
  const reached = new Promise<void>((resolve) => {
    write = store.writeRange!('b.bin', 0, data.length, info.etag, {
      fd,
      blockSize: BLOCK,
      progress: (written, _first, crcs) => {
        if (heard === undefined && written >= wanted && !crcs) {
          heard = written;
          resolve();
        }
      },
    });
  });
  write!.want(wanted);
  await reached;
  t.ok(heard! >= wanted && heard! < BLOCK, `told at ${heard} bytes, inside the first block`);
  t.ok(readFileSync(path).subarray(0, wanted).equals(data.subarray(0, wanted)), 'and those bytes are on disk');
  await write!.done;
  t.ok(readFileSync(path).equals(data), 'the rest follows once the stall ends');
});

t.test('a HEAD on the fetch pool reads what the JavaScript client reads; its failures are the store\'s', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const metadata = { mode: '33188', uid: '1000', note: 'a value, with; punctuation = "quoted"', empty: '' };
  await s3.store.put('dir/with meta+odd&name.img', randomData(12345), metadata);
  const native = storeThrough(t, proxy);
  const js = storeThrough(t, proxy, 'js');

  const viaPool = await native.head('dir/with meta+odd&name.img');
  const viaJs = await js.head('dir/with meta+odd&name.img');
  t.same(viaPool, viaJs, 'size, ETag, time and metadata as the JavaScript client reads them');
  t.same(viaPool?.metadata, metadata, 'every metadata entry, the empty one too');
  t.equal(viaPool?.size, 12345, 'the size');
  t.equal(await native.head('no/such/key'), undefined, 'a missing key is no object');

  await proxy.set([{ fault: { kind: 'header', name: 'x-amz-checksum-crc32c', value: 'AAAAAA==' }, match: { method: 'HEAD', ranged: false } }]);
  t.same((await native.head('dir/with meta+odd&name.img'))?.checksum, { algorithm: 'CRC32C', value: 'AAAAAA==' }, 'the store\'s checksum is read from the head');

  await proxy.set([
    { fault: { kind: 'status', status: 503, code: 'SlowDown' }, match: { method: 'HEAD', ranged: false }, count: 2 },
  ]);
  t.equal((await native.head('dir/with meta+odd&name.img'))?.etag, viaJs?.etag, 'SlowDown is retried');
  t.equal(await proxy.injected('status'), 2, 'twice');

  await proxy.set([{ fault: { kind: 'status', status: 500, code: 'InternalError' }, match: { method: 'HEAD', ranged: false } }]);
  const failed = await native.head('dir/with meta+odd&name.img').catch((err: unknown) => err);
  t.match(failed, { kind: 'Server' }, 'a store that keeps failing fails the HEAD as a server error');
  await proxy.set([]);
});

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}
