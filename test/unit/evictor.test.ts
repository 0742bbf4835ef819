import t from 'tap';
import { Evictor } from '../../src/cache/evictor';
import { SpaceLedger } from '../../src/cache/space-ledger';
import { StagedObject } from '../../src/cache/staged-object';

const KiB = 1024;

function entry(id: string, lastAccess: number, staged = 10 * KiB, flags: Partial<StagedObject> = {}): StagedObject {
  const object = new StagedObject({ bucket: 'b', key: id, etag: '"e"', size: staged, mtime: 0 }, KiB);
  for (let block = 0; block < staged / KiB; block++) object.markStaged(block);
  object.lastAccess = lastAccess;
  Object.assign(object, flags);
  return object;
}

function setup(objects: StagedObject[], capacity = 100 * KiB, maxAgeMs = 1000) {
  const ledger = new SpaceLedger(capacity);
  const live = new Set(objects);
  for (const o of objects) ledger.adjustStaged(o.stagedBytes);
  const evicted: string[] = [];
  const evictor = new Evictor({
    config: { maxAgeMs, highWatermark: 0.9, lowWatermark: 0.5 },
    ledger,
    entries: () => live,
    evict: (o) => {
      live.delete(o);
      o.removed = true;
      ledger.adjustStaged(-o.stagedBytes);
      evicted.push(o.key);
    },
    now: () => 10_000,
  });
  return { ledger, evictor, evicted };
}

t.test('age sweep evicts idle entries only', async (t) => {
  const { evictor, evicted } = setup([
    entry('old', 1000),
    entry('recent', 9500),
    entry('old-open', 1000, 10 * KiB, { openHandles: 1 }),
    entry('old-pinned', 1000, 10 * KiB, { pinned: true }),
    entry('old-fetching', 1000, 10 * KiB, { activeFetches: 1 }),
  ]);
  t.equal(evictor.sweepAged(), 1);
  t.same(evicted, ['old']);
});

t.test('making room evicts least recently used first, older versions before all', async (t) => {
  const objects = [entry('a', 5000, 30 * KiB), entry('b', 3000, 30 * KiB), entry('c', 4000, 30 * KiB), entry('old-version', 9000, 5 * KiB, { superseded: true })];
  const { evictor, evicted, ledger } = setup(objects);
  t.ok(evictor.makeRoom(20 * KiB));
  t.same(evicted.slice(0, 2), ['old-version', 'b'], 'superseded, then the least recently used');
  t.ok(ledger.used + 20 * KiB <= ledger.capacity);
  t.ok(ledger.used <= 50 * KiB, 'down to the low watermark, so the next fault need not evict');
});

t.test('making room fails when everything is in use', async (t) => {
  const { evictor, evicted } = setup([entry('open', 1, 50 * KiB, { openHandles: 1 }), entry('pinned', 1, 45 * KiB, { pinned: true })]);
  t.notOk(evictor.makeRoom(10 * KiB));
  t.same(evicted, []);
});

t.test('crossing the high watermark trims to the low one', async (t) => {
  const { evictor, ledger, evicted } = setup([entry('x', 1, 40 * KiB), entry('y', 2, 40 * KiB), entry('z', 3, 15 * KiB)]);
  evictor.enforceWatermarks();
  t.same(evicted, ['x', 'y']);
  t.equal(ledger.used, 15 * KiB);
});
