/**
 * An object replaced in the store while a file of it is open: the open file keeps returning the
 * version it was opened on (its staged blocks) or fails with EIO, never bytes of the new one,
 * whether the server honours If-Match (412) or ignores it (206 under the new ETag).
 */
import { open } from 'node:fs/promises';
import t from 'tap';
import { startFaultProxy, type Fault } from '../helpers/fault-proxy';
import { mountThrough, wrongBytes } from '../helpers/fault-reads';
import { randomData } from '../helpers/files';
import { engineTest } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
/** Each read of a block not staged fails only after the store's attempts (about 2 s). */
const READS_AFTER_REPLACE = 4;

engineTest(t, 'an object replaced in the store mid-read: the open file returns its old bytes or EIO, never new ones', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const data = randomData(24 * MiB);
  await s3.store.put('replaced/honours-if-match', data);
  await s3.store.put('replaced/ignores-if-match', data);
  const mount = await mountThrough(t, s3, proxy, engine);
  const cases: Array<[string, Fault[]]> = [
    ['a server that honours If-Match (412)', [{ kind: 'replace' }]],
    ['a server that ignores If-Match (new ETag)', [{ kind: 'replace' }, { kind: 'unconditional' }]],
  ];
  for (const [what, faults] of cases) {
    const key = what.includes('honours') ? 'replaced/honours-if-match' : 'replaced/ignores-if-match';
    const file = await open(mount.path(key), 'r');
    let wrong = 0;
    let failed = 0;
    try {
      // Away from the start, so no sequential readahead stages the whole file before the change.
      const first = Buffer.alloc(64 * 1024);
      await file.read(first, 0, first.length, 5 * MiB);
      wrong += wrongBytes(first, data.subarray(5 * MiB, 5 * MiB + first.length));
      await proxy.set(faults.map((fault, i) => ({ fault, count: i === 0 ? 1 : undefined, match: { keyPrefix: key } })));
      // Blocks far from the one read: neither staged nor in flight when the object changed.
      for (let i = 0; i < READS_AFTER_REPLACE; i++) {
        const position = 12 * MiB + i * 2 * MiB + 4097 * i;
        const buffer = Buffer.alloc(64 * 1024);
        try {
          const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
          wrong += wrongBytes(buffer.subarray(0, bytesRead), data.subarray(position, position + buffer.length));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EIO') throw err;
          failed++;
        }
      }
    } finally {
      await file.close();
    }
    t.equal(wrong, 0, `${what}: no byte of the new version`);
    t.equal(failed, READS_AFTER_REPLACE, `${what}: reads of blocks not staged fail with EIO`);
    t.equal((await proxy.stats()).replaced.length, 1, `${what}: the object was replaced`);
  }
});
