/**
 * Reads through a faulty store (the fault proxy between the mount and the S3 server): every byte
 * a read returns is the object's byte. A read may fail (EIO) when the store keeps failing; it
 * never returns other bytes, short or long.
 */
import t from 'tap';
import { startFaultProxy, type Fault } from '../helpers/fault-proxy';
import { mountThrough, noLedgerTrouble, readAll, seedFiles, settledStatus } from '../helpers/fault-reads';
import { seeded } from '../helpers/files';
import { engineTest } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
const SIZES = [1, 4097, MiB + 1, 2.5 * MiB, 9 * MiB + 7];

/** Faults the store recovers from: a few of each in a row must not fail a read. */
const TRANSIENT: Array<[string, Fault]> = [
  ['500 InternalError', { kind: 'status', status: 500, code: 'InternalError' }],
  ['503 SlowDown', { kind: 'status', status: 503, code: 'SlowDown' }],
  ['reset mid-body', { kind: 'reset', at: 0.5 }],
  ['reset right after the headers', { kind: 'reset', at: 0 }],
  ['body cut short, Content-Length of the whole', { kind: 'truncate', at: 0.3, declared: 'full' }],
  ['body cut short, Content-Length of what was sent', { kind: 'truncate', at: 0.7, declared: 'sent' }],
  ['stall of 1.5 s mid-body', { kind: 'stall', at: 0.4, ms: 1500 }],
  ['wrong ETag', { kind: 'wrong-etag' }],
  ['200 and the whole object for a range', { kind: 'whole-object' }],
];
/** Fewer than the store's attempts in a row, so even all of them on one read must not fail it. */
const FAULTS_PER_KIND = 3;

engineTest(t, 'with a few faults of each kind, every read returns exactly the object\'s bytes', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const phases = await Promise.all(TRANSIENT.map(async ([, fault], i) => [fault, await seedFiles(s3, `p${i}`, SIZES)] as const));
  const mount = await mountThrough(t, s3, proxy, engine);
  for (const [i, [fault, files]] of phases.entries()) {
    const name = TRANSIENT[i][0];
    await proxy.set([{ fault, count: FAULTS_PER_KIND }]);
    const tally = await readAll(mount, files, i + 1);
    t.equal(tally.wrong, 0, `${name}: no wrong byte in ${tally.files} files`);
    t.same(tally.errors, [], `${name}: no read failed`);
    t.equal(await proxy.injected(fault.kind), FAULTS_PER_KIND, `${name}: ${FAULTS_PER_KIND} faults were injected`);
  }
  noLedgerTrouble(t, mount);
});

engineTest(t, 'under a mix of faults at random, no read returns a wrong byte', async (t, engine) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const random = seeded(7);
  const sizes = Array.from({ length: 32 }, () => 1 + Math.floor(random() * 5 * MiB));
  const files = await seedFiles(s3, 'soak', sizes);
  const mount = await mountThrough(t, s3, proxy, engine, ['--cache-size', '48MiB']);
  await proxy.set(
    [
      ...TRANSIENT.filter(([, fault]) => fault.kind !== 'stall').map(([, fault]) => fault),
      { kind: 'reset' } as Fault,
      { kind: 'truncate', declared: 'sent' } as Fault,
      { kind: 'stall', ms: 300 } as Fault,
    ].map((fault, i) => ({ fault, rate: 0.03, seed: 100 + i })),
  );
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
