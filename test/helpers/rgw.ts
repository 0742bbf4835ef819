/**
 * A Ceph RGW for a whole test file (scripts/rgw.sh, ~3 s to start): the mount suites run
 * against it in child processes with STAGEFS_TEST_RGW naming its directory. It is stopped in
 * teardown, pass or fail, and when the test process exits.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import t, { type Test } from 'tap';
import { Rgw } from '../../src/s3server/rgw';
import { RGW_ENV } from './s3';

export async function startRgw(t: Test): Promise<Rgw> {
  const directory = mkdtempSync(join(tmpdir(), 'stagefs-test-rgw-'));
  const onExit = () => Rgw.stopNow(directory);
  process.on('exit', onExit);
  t.teardown(async () => {
    await Rgw.stopIn(directory);
    process.off('exit', onExit);
  });
  return Rgw.start({ directory });
}

/** Runs a compiled test file (dist/test/...) as a subtest, against an RGW of its own. */
export function suiteOnRgw(testFile: string): void {
  const name = basename(testFile, '.js');
  void t.test(`${name} on Ceph RGW`, async (t) => {
    const rgw = await startRgw(t);
    const env: Record<string, string> = { ...process.env, [RGW_ENV]: rgw.directory } as Record<string, string>;
    await t.spawn(process.execPath, [testFile], { env }, name);
  });
}
