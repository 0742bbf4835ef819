/** Running under systemd: readiness over a real notify socket, the unit file, logs, --version. */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { isStagefsMount, mountAt } from '../../src/daemon/mount-table';
import { isAlive, mountRecordFor } from '../../src/daemon/runtime-registry';
import { sleep } from '../../src/util/deferred';
import { runCli } from '../helpers/cli';
import { CLI, engineTest, mountpointDir, tempDir } from '../helpers/mount';
import { notifySocket } from '../helpers/notify';
import { BUCKET, startS3, type TestS3 } from '../helpers/s3';

const run = promisify(execFile);
const UNIT = join(__dirname, '..', '..', '..', 'systemd', 'stagefs@.service');

function startDaemon(t: Test, s3: TestS3, args: string[], env: Record<string, string>) {
  const daemon = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...s3.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  daemon.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  daemon.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (daemon.exitCode === null) daemon.kill('SIGTERM');
    await exited;
  });
  return { daemon, exited, output: () => output };
}

engineTest(t, 'Type=notify: READY=1 once the mount serves, STATUS= lines, STOPPING=1 on SIGTERM', async (t, engine) => {
  const s3 = await startS3(t);
  await s3.store.put('iso/boot.iso', Buffer.from('boot'));
  const notify = await notifySocket(t);
  const mountpoint = mountpointDir(t);
  const args = ['mount', `s3://${BUCKET}`, mountpoint, '--foreground', '--engine', engine, '--endpoint', s3.server.endpoint, '--cache-dir', tempDir(t, 'cache')];
  const { daemon, exited, output } = startDaemon(t, s3, args, { NOTIFY_SOCKET: notify.address });
  const ready = await notify.waitFor('READY=1');
  t.ok(isStagefsMount(mountAt(mountpoint)), 'the mount is up when READY=1 arrives');
  t.equal(await readFile(join(mountpoint, 'iso/boot.iso'), 'utf8'), 'boot', 'and serves');
  t.equal(ready.pid, daemon.pid, 'sent by the main process itself (NotifyAccess=main accepts it)');
  t.ok(ready.fields.some((f) => f.startsWith(`STATUS=serving s3://${BUCKET} at ${mountpoint}`)), `with a status: ${ready.fields.join(' | ')}`);
  const before = notify.messages().slice(0, notify.messages().indexOf(ready));
  t.ok(before.some((m) => m.fields.some((f) => f.startsWith('STATUS=mounting'))), 'after STATUS= lines on the way');
  daemon.kill('SIGTERM');
  const stopping = await notify.waitFor('STOPPING=1');
  t.ok(stopping.fields.some((f) => f.startsWith('STATUS=unmounting')), 'STOPPING=1 with a status');
  t.equal(await exited, 0, 'the daemon exits cleanly');
  t.match(output(), /stagefs:info mounted/, 'it logged to stderr (the journal)');
});

t.test('an abstract notify socket, and a failed mount tells its reason', async (t) => {
  const s3 = await startS3(t);
  const notify = await notifySocket(t, `@stagefs-test-${process.pid}-${Date.now()}`);
  const args = ['mount', 's3://no-such-bucket', mountpointDir(t), '--foreground', '--endpoint', s3.server.endpoint, '--cache-dir', tempDir(t, 'cache')];
  const { exited } = startDaemon(t, s3, args, { NOTIFY_SOCKET: notify.address });
  t.equal(await exited, 1, 'the mount fails');
  const failed = await notify.waitFor('STATUS=mount failed: cannot mount s3://no-such-bucket: the bucket does not exist (s3://no-such-bucket at ' + s3.server.endpoint + ')');
  t.ok(failed, 'the service manager hears why');
  t.notOk(notify.messages().some((m) => m.fields.includes('READY=1')), 'and no READY=1');
});

t.test('the unit file verifies and its command line mounts as systemd would run it', async (t) => {
  const unit = readFileSync(UNIT, 'utf8');
  t.match(unit, /^Type=notify$/m);
  t.match(unit, /^NotifyAccess=main$/m);
  const dir = tempDir(t, 'unit');
  const bin = join(dir, 'stagefs');
  writeFileSync(bin, `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`, { mode: 0o755 });
  const instance = join(dir, 'stagefs@mnt-s3.service');
  writeFileSync(instance, unit.replace('/usr/local/bin/stagefs', bin));
  const verify = await run('systemd-analyze', ['verify', instance]).catch((err: { code: number; stderr: string }) => ({ stderr: `exit ${err.code}: ${err.stderr}` }));
  t.equal(verify.stderr, '', 'systemd-analyze verify finds nothing to say');

  // ExecStart as systemd expands it: %f the mountpoint, ${SOURCE} one word, $OPTIONS split on spaces.
  const s3 = await startS3(t);
  await s3.store.put('f', Buffer.from('unit'));
  const mountpoint = mountpointDir(t);
  const environment = { SOURCE: `s3://${BUCKET}`, OPTIONS: `--endpoint ${s3.server.endpoint} --cache-dir ${tempDir(t, 'cache')} --cache-size 1GiB` };
  const execStart = /^ExecStart=(.*)$/m.exec(unit)![1];
  const words = execStart
    .split(' ')
    .flatMap((word) => (word === '$OPTIONS' ? environment.OPTIONS.split(' ') : [word.replace('${SOURCE}', environment.SOURCE).replace('%f', mountpoint)]));
  t.equal(words[0], '/usr/local/bin/stagefs');
  const notify = await notifySocket(t);
  const { exited } = startDaemon(t, s3, words.slice(1), { NOTIFY_SOCKET: notify.address });
  await notify.waitFor('READY=1');
  t.equal(await readFile(join(mountpoint, 'f'), 'utf8'), 'unit', 'the unit’s command mounts');
  const record = mountRecordFor(mountpoint)!;
  process.kill(record.pid, 'SIGTERM');
  t.equal(await exited, 0, 'and stops on SIGTERM, as systemctl stop sends');
});

t.test('--log-file for a daemon, reopened on SIGHUP (rotation by renaming)', async (t) => {
  const s3 = await startS3(t);
  await s3.store.put('f', Buffer.from('x'));
  const mountpoint = mountpointDir(t);
  const logs = tempDir(t, 'logs');
  const log = join(logs, 'stagefs.log');
  const mounted = await runCli(['mount', `s3://${BUCKET}`, mountpoint, '--endpoint', s3.server.endpoint, '--cache-dir', tempDir(t, 'cache'), '--log-file', log], s3.env);
  t.equal(mounted.code, 0, `mounted (${mounted.stderr.trim()})`);
  t.match(mounted.stderr, new RegExp(`\\(log: ${log}\\)`), 'the command names the log');
  const pid = mountRecordFor(mountpoint)!.pid;
  t.teardown(async () => {
    if (isAlive(pid)) await runCli(['unmount', mountpoint]);
  });
  t.match(readFileSync(log, 'utf8'), /stagefs:info mounted/, 'the daemon logs there');
  t.equal(readlinkSync(`/proc/${pid}/fd/2`), log, 'and its stderr is the log');
  renameSync(log, `${log}.1`);
  process.kill(pid, 'SIGHUP');
  // The new file exists a moment before its first line is written.
  const reopened = () => existsSync(log) && /log file .* reopened/.test(readFileSync(log, 'utf8'));
  for (let i = 0; i < 200 && !reopened(); i++) await sleep(50);
  t.match(readFileSync(log, 'utf8'), /log file .* reopened/, 'SIGHUP opens the log anew');
  t.equal(readlinkSync(`/proc/${pid}/fd/2`), log, 'stderr follows it');
  t.equal((await runCli(['unmount', mountpoint])).code, 0, 'unmount');
  t.match(readFileSync(log, 'utf8'), /unmounted/, 'later lines go to the new file');
  t.notMatch(readFileSync(`${log}.1`, 'utf8'), /unmounted/, 'not to the old one');
  t.equal(existsSync(log) && (await run('stat', ['-c', '%a', log])).stdout.trim(), '600', 'the log is private');
});

t.test('--version', async (t) => {
  const { version } = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const result = await runCli([flag]);
    t.equal(result.code, 0, `${flag} exits 0`);
    t.equal(result.stdout, `stagefs ${version}\n`);
  }
});
