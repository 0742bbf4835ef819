import { setImmediate as settled } from 'node:timers/promises';
import t from 'tap';
import { BoundedBuffers } from '../../src/util/bounded-buffers';
import { BufferPool } from '../../src/util/buffer-pool';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Takes a buffer, recording in `granted` once it is handed over. */
function taking(buffers: BoundedBuffers, size: number, granted: number[]): Promise<Buffer> {
  return buffers.take(size).then((buffer) => {
    granted.push(size);
    return buffer;
  });
}

t.test('takers past the budget wait, before holding anything, until buffers come back, in order', async (t) => {
  const buffers = new BoundedBuffers(2 * MiB, MiB, 64 * KiB);
  const granted: number[] = [];
  const first = taking(buffers, MiB, granted);
  const second = taking(buffers, 512 * KiB, granted); // pooled: held as a whole 1 MiB buffer
  const third = taking(buffers, MiB, granted);
  const fourth = taking(buffers, 4 * KiB, granted); // small, but behind the third in line
  await settled();
  t.same(granted, [MiB, 512 * KiB], 'two pooled buffers fill the 2 MiB budget; the rest wait');
  const a = await first;
  t.equal(a.length, MiB, 'a pooled buffer has the pooled size');
  buffers.give(a);
  await settled();
  t.same(granted, [MiB, 512 * KiB, MiB], 'a buffer given back lets the next in line go');
  t.equal(await third, a, 'and it is the same buffer, reused');
  buffers.give(await second);
  await settled();
  t.same(granted, [MiB, 512 * KiB, MiB, 4 * KiB]);
  t.equal((await fourth).length, 4 * KiB, 'a small reply is allocated for its own size');
});

t.test('a request larger than the whole budget runs alone rather than never', async (t) => {
  const buffers = new BoundedBuffers(MiB, MiB, 64 * KiB);
  const granted: number[] = [];
  const small = await buffers.take(8 * KiB);
  const huge = taking(buffers, 3 * MiB, granted);
  const after = taking(buffers, 8 * KiB, granted);
  await settled();
  t.same(granted, [], 'the oversized request waits for the budget to empty');
  buffers.give(small);
  await settled();
  t.same(granted, [3 * MiB], 'then runs alone');
  t.equal((await huge).length, 3 * MiB);
  buffers.give(await huge);
  await after;
  t.same(granted, [3 * MiB, 8 * KiB]);
});

t.test('many takers over a small budget all get their buffer, and never more than the budget is held', async (t) => {
  const buffers = new BoundedBuffers(4 * MiB, MiB, 64 * KiB);
  let held = 0;
  let most = 0;
  const overwritten: number[] = [];
  const sizes = Array.from({ length: 200 }, (_, i) => [4 * KiB, 128 * KiB, MiB, 100 * KiB][i % 4]);
  await Promise.all(
    sizes.map(async (size, i) => {
      const buffer = await buffers.take(size);
      held += buffer.length;
      most = Math.max(most, held);
      buffer.fill(i & 0xff, 0, size);
      for (let turn = 0; turn < i % 3; turn++) await settled();
      if (!buffer.subarray(0, size).every((byte) => byte === (i & 0xff))) overwritten.push(i);
      held -= buffer.length;
      buffers.give(buffer);
    }),
  );
  t.same(overwritten, [], 'no taker saw its bytes change while it held its buffer');
  t.ok(most <= 4 * MiB, `at most the budget held at once (${most} bytes)`);
});

t.test('a pool keeps free buffers up to its byte bound, and no more', async (t) => {
  const pool = new BufferPool(2 * MiB);
  const a = pool.take(MiB);
  const b = pool.take(MiB);
  const c = pool.take(MiB);
  pool.give(a);
  pool.give(b);
  pool.give(c); // past the bound: dropped
  const again = [pool.take(MiB), pool.take(MiB), pool.take(MiB)];
  t.ok(again.includes(a) && again.includes(b), 'the kept buffers are handed out again');
  t.notOk(again.includes(c), 'the buffer past the bound was not kept');
  t.ok(pool.take(4 * KiB).length >= 4 * KiB, 'a request is served whatever the pool holds');
});
