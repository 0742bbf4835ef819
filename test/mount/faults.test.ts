/**
 * Reads through a faulty store (the fault proxy between the mount and the S3 server): every byte
 * a read returns is the object's byte. A read may fail (EIO) when the store keeps failing; it
 * never returns other bytes, short or long.
 */
import t from 'tap';
import { startFaultProxy, type Fault } from '../helpers/fault-proxy';
import { mountThrough, noLedgerTrouble, readAll, seedFiles } from '../helpers/fault-reads';
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
