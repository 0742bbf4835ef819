/** `stagefs demo`: an embedded S3 server with sample secondary-storage data, mounted. */
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { buildMountConfig } from '../config';
import { startMount } from '../daemon/mount-service';
import { enableLogging } from '../log';
import { EmbeddedS3 } from '../s3server/embedded-s3';
import { seedDemoData } from '../s3server/demo-data';
import { S3Store } from '../store/s3-store';
import { formatBytes } from '../units';
import { expectPositionals, parseCommandArgs } from './args';
import { serveUntilSignalled } from './mount-command';
import { HELP } from './usage';

const BUCKET = 'demo';

export async function demoCommand(args: string[]): Promise<number> {
  const { positionals, help } = parseCommandArgs<Record<string, never>>(args, {});
  if (help) {
    console.log(HELP.demo);
    return 0;
  }
  expectPositionals(positionals, ['MOUNTPOINT'], 1);
  const mountpoint = resolve(positionals[0] ?? 'mnt');
  const createdMountpoint = !existsSync(mountpoint);
  mkdirSync(mountpoint, { recursive: true });
  enableLogging();
  const workDir = mkdtempSync(join(tmpdir(), 'stagefs-demo-'));
  const cacheDir = join(workDir, 'cache');
  console.error('stagefs demo: starting the embedded S3 server on 127.0.0.1');
  const s3 = await EmbeddedS3.start({ buckets: [BUCKET] });
  try {
    // The demo talks only to its own server, whatever credentials the shell holds.
    Object.assign(process.env, s3.clientEnv());
    const config = buildMountConfig(`s3://${BUCKET}`, mountpoint, {
      endpoint: s3.endpoint,
      'cache-dir': cacheDir,
      'cache-size': '256MiB',
      foreground: true,
    });
    const seeded = await seedDemoData(new S3Store(config.store));
    const total = seeded.reduce((sum, o) => sum + o.size, 0);
    console.error(`stagefs demo: seeded s3://${BUCKET} with ${seeded.length} objects (${formatBytes(total)})`);
    const mount = await startMount(config);
    const shown = relative(process.cwd(), mountpoint) || '.';
    const image = seeded.find((o) => o.key.endsWith('.qcow2'))?.key ?? '';
    console.error(
      [
        '',
        `stagefs demo: s3://${BUCKET} (S3 at ${s3.endpoint}) is mounted at ${mountpoint}`,
        '',
        'Try, in another terminal:',
        `  ls -lR ${shown}`,
        `  cat ${shown}/template/tmpl/2/201/template.properties`,
        `  stat ${shown}/${image}`,
        `  time sha256sum ${shown}/${image}    # first read faults from S3,`,
        `  time sha256sum ${shown}/${image}    # the second comes from the local cache`,
        `  df -h ${shown}`,
        `  ls -l ${cacheDir}/staged/*          # the staged sparse files`,
        '',
        'Ctrl-C unmounts and removes everything the demo made.',
      ].join('\n'),
    );
    await serveUntilSignalled(mount);
  } finally {
    await s3.stop();
    rmSync(workDir, { recursive: true, force: true });
    if (createdMountpoint) rmdirSync(mountpoint);
  }
  return 0;
}
