/**
 * A mix of store faults at random, over many files of random sizes through a cache smaller than
 * them all: no read returns a wrong byte, every reservation is given back, and staged bytes
 * stay within the cache size. (A read may fail when the store fails it again and again.)
 */
import t from 'tap';
import { startFaultProxy, type Fault } from '../helpers/fault-proxy';
import { mountThrough, noLedgerTrouble, readAll, seedFiles, settledStatus } from '../helpers/fault-reads';
import { seeded } from '../helpers/files';
import { engineTest } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
const FAULTS: Fault[] = [
  { kind: 'status', status: 500, code: 'InternalError' },
  { kind: 'status', status: 503, code: 'SlowDown' },
  { kind: 'reset' },
  { kind: 'truncate', declared: 'full' },
  { kind: 'truncate', declared: 'sent' },
  { kind: 'stall', ms: 300 },
  { kind: 'wrong-etag' },
  { kind: 'whole-object' },
];

engineTest(t, 'under a mix of faults at random, no read returns a wrong byte', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const random = seeded(7);
  const sizes = Array.from({ length: 32 }, () => 1 + Math.floor(random() * 5 * MiB));
  const files = await seedFiles(s3, 'soak', sizes);
  const mount = await mountThrough(t, s3, proxy, engine, ['--cache-size', '48MiB']);
  // Cut points drawn by each rule's generator.
  await proxy.set(FAULTS.map((fault, i) => ({ fault, rate: 0.03, seed: 100 + i })));
  const tally = await readAll(mount, files, 99);
  const injected = await proxy.injected();
  t.equal(tally.wrong, 0, `no wrong byte in ${tally.files} files of 1 B to 5 MiB (${injected} faults injected, ${tally.failed} reads failed)`);
  t.ok(injected > 0, 'faults were injected');
  if (tally.failed) t.comment(`failed reads (allowed: the store failed them repeatedly): ${tally.errors.join('; ')}`);
  await proxy.clear();
  const status = await settledStatus(mount);
  t.equal(status.reservedBytes, 0, 'every reservation was given back');
  t.ok(status.stagedBytes <= 48 * MiB, `staged bytes (${status.stagedBytes}) stay within --cache-size`);
  noLedgerTrouble(t, mount);
});
