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
});

t.test('readahead grows on sequential reads and collapses on random ones', async (t) => {
  const ra = new Readahead({ initialBytes: 2048, maxBytes: 16384 });
  t.equal(ra.onRead(0, 1024), 2048, 'a read at 0 starts a stream');
  t.equal(ra.onRead(1024, 2048), 4096);
  t.equal(ra.onRead(2048, 3072), 8192);
  t.equal(ra.onRead(3072, 4096), 16384);
  t.equal(ra.onRead(4096, 5120), 16384, 'capped');
  t.equal(ra.onRead(50_000_000, 50_001_024), 0, 'a far jump is random');
  t.equal(ra.onRead(50_001_024, 50_002_048), 2048, 'and a new stream starts from there');
});

t.test('space ledger', async (t) => {
  const ledger = new SpaceLedger(100);
  const reservation = ledger.tryReserve(60)!;
  t.ok(reservation);
  t.notOk(ledger.tryReserve(41), 'cannot overcommit');
  reservation.commit(30);
  reservation.commit(20);
  t.equal(reservation.bytes, 10, 'the reservation knows what it still holds');
  t.throws(() => reservation.commit(11), /holding 10/, 'and commits no more than that');
  reservation.release();
  t.equal(ledger.staged, 50);
  t.equal(ledger.reserved, 0);
  t.equal(ledger.free, 50);
  reservation.release();
  t.equal(ledger.reserved, 0, 'a second release gives back nothing');
  t.equal(ledger.staged, 50);
  const other = ledger.tryReserve(50)!;
  other.release();
  other.release();
  t.equal(ledger.free, 50, 'releases of another reservation do not touch this one');
});
