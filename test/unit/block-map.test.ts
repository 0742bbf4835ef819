import t from 'tap';
import { BlockMap } from '../../src/cache/block-map';
import { Readahead } from '../../src/cache/readahead';
import { SpaceLedger } from '../../src/cache/space-ledger';

t.test('block map', async (t) => {
  const map = BlockMap.forSize(10 * 1024 + 1, 1024);
  t.equal(map.blockCount, 11);
  map.set(0);
  map.set(10);
  map.set(10);
  t.equal(map.count, 2, 'setting twice counts once');
  t.ok(map.has(10));
  t.notOk(map.hasAll(0, 10));
  for (let b = 0; b < 11; b++) map.set(b);
  t.ok(map.complete);
  const copy = new BlockMap(11, map.toBytes());
  t.equal(copy.count, 11, 'round-trips through bytes');
  t.throws(() => map.set(11), RangeError);
  const noisy = new BlockMap(3, Uint8Array.of(0xff));
  t.equal(noisy.count, 3, 'bits past the last block are ignored');
  map.clear(4);
  map.clear(4);
  t.equal(map.count, 10, 'clearing twice counts once');
  t.notOk(map.has(4) || map.complete, 'a cleared block is no longer there');
  t.equal(map.liveBits[0], 0xef, 'and its bit is off for readers in other threads');
});

t.test('readahead grows on sequential reads and collapses on random ones', async (t) => {
  const ra = new Readahead({ initialBytes: 2048, maxBytes: 16384 });
  t.equal(ra.onRead(0, 1024), 0, 'a small first read starts no readahead');
  t.equal(ra.onRead(1024, 2048), 2048, 'the next read after it starts the stream');
  t.equal(ra.onRead(2048, 3072), 8192, 'and it grows fast');
  t.equal(ra.onRead(3072, 4096), 16384, 'capped');
  t.equal(ra.onRead(4096, 5120), 16384, 'capped');
  t.equal(ra.onRead(50_000_000, 50_001_024), 0, 'a far jump is random');
  t.equal(ra.onRead(50_001_024, 50_002_048), 2048, 'and a new stream starts from there');
  t.equal(new Readahead({ initialBytes: 2048, maxBytes: 16384 }).onRead(0, 128 * 1024), 2048, 'a first read of 128 KiB at 0 starts a stream');
});

t.test('space ledger', async (t) => {
  const ledger = new SpaceLedger(100);
  const reservation = ledger.reserve(60);
  t.ok(reservation);
  t.notOk(ledger.reserve(41), 'cannot overcommit');
  t.equal(reservation!.commit(50), 50);
  reservation!.release();
  t.equal(ledger.staged, 50);
  t.equal(ledger.reserved, 0);
  t.equal(ledger.free, 50);
  reservation!.release();
  t.equal(reservation!.commit(5), 0, 'a reservation gives each byte back once: nothing is left to commit');
  t.equal(ledger.staged, 50, 'a second release or commit changes nothing');
  t.equal(ledger.reserved, 0);
});
