/**
 * POSIX metadata through the mount (item by item of issue 12): modes, owners and times that
 * stick on files, directories and the root, through listings and remounts; ctime and atime;
 * symbolic links and fifos stored as s3fs stores them; inode numbers across rename; file
 * handles that open again after the kernel forgot their inodes.
 */
import { execFileSync } from 'node:child_process';
import { chmod, chown, lstat, mkdir, readdir, readFile, readlink, rename, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { uploadsSettled } from '../helpers/cli';
import { engineTest, ENGINES, mountS3, tempDir } from '../helpers/mount';
import { mountS3fs } from '../helpers/s3fs';
import { startS3 } from '../helpers/s3';
import { objectBytes } from '../helpers/s3-read';

const FILE_HANDLE_SOURCE = join(__dirname, '..', '..', '..', 'test', 'helpers', 'file-handle.c');
const Y2020 = new Date('2020-01-02T03:04:05Z');
const Y2021 = new Date('2021-06-07T08:09:10Z');
const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

engineTest(t, 'modes, owners and times stick on files and directories, through listings and a remount', async (t, engine) => {
  const s3 = await startS3(t);
  let mount = await mountS3(t, s3, { engine });
  await mkdir(mount.path('d'));
  await writeFile(mount.path('d/f'), 'data');
  for (const name of ['d', 'd/f']) {
    await chmod(mount.path(name), 0o750);
    await chown(mount.path(name), 65534, 65533);
    await utimes(mount.path(name), Y2020, Y2020);
  }
  const check = async (when: string) => {
    for (const [name, type] of [['d', constants.S_IFDIR], ['d/f', constants.S_IFREG]] as const) {
      const st = await stat(mount.path(name));
      t.equal(st.mode, type | 0o750, `${name}: mode ${when}`);
      t.same([st.uid, st.gid], [65534, 65533], `${name}: owner ${when}`);
      t.equal(seconds(st.mtime), seconds(Y2020), `${name}: mtime ${when}`);
    }
  };
  await check('right away');
  await readdir(mount.path('d'), { withFileTypes: true });
  await readdir(mount.path(''));
  await check('after listings');
  const marker = await s3.store.head('d/');
  t.match(marker?.metadata, { mode: String(constants.S_IFDIR | 0o750), uid: '65534', gid: '65533', mtime: String(seconds(Y2020)) }, 'every field on the marker');
  t.ok(marker?.metadata?.ctime && marker.metadata.atime, 'ctime and atime on the marker too');
  const object = await s3.store.head('d/f');
  t.match(object?.metadata, { mode: String(constants.S_IFREG | 0o750), uid: '65534', gid: '65533', mtime: String(seconds(Y2020)) }, 'every field on the object');
  await mount.unmount();
  mount = await mountS3(t, s3, { engine });
  await readdir(mount.path('d'));
  await check('after a remount');
});

engineTest(t, 'a listing never replaces metadata: objects known only from one are read with HEAD', async (t, engine) => {
  const s3 = await startS3(t);
  const metadata = { mode: String(constants.S_IFREG | 0o600), uid: '123', gid: '456', mtime: String(seconds(Y2020)) };
  for (let i = 0; i < 40; i++) await s3.store.put(`many/f${i}`, Buffer.from('x'), metadata);
  await s3.store.put('many/sub/', new Uint8Array(0), { mode: String(constants.S_IFDIR | 0o711), uid: '7', gid: '8' });
  const mount = await mountS3(t, s3, { engine });
  const entries = await readdir(mount.path('many'));
  t.equal(entries.length, 41, 'all listed');
  let right = 0;
  for (let i = 0; i < 40; i++) {
    const st = await stat(mount.path(`many/f${i}`));
    if (st.mode === (constants.S_IFREG | 0o600) && st.uid === 123 && st.gid === 456 && seconds(st.mtime) === seconds(Y2020)) right++;
  }
  t.equal(right, 40, 'every listed file shows its stored mode, owner and time');
  const sub = await stat(mount.path('many/sub'));
  t.same([sub.mode, sub.uid, sub.gid], [constants.S_IFDIR | 0o711, 7, 8], 'a listed directory shows its marker metadata');
  await chmod(mount.path('many/f0'), 0o640);
  await readdir(mount.path('many'));
  t.equal((await stat(mount.path('many/f0'))).mode, constants.S_IFREG | 0o640, 'a change made through the mount survives the next listing');
});

engineTest(t, 'ctime moves with every change, atime is settable, reads store nothing', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  const path = mount.path('f');
  await writeFile(path, 'one');
  await utimes(path, Y2020, Y2020);
  const before = await stat(path);
  t.ok(before.ctimeMs > Y2021.getTime(), 'setting the times is a change: ctime is now');
  t.equal(seconds(before.atime), seconds(Y2020), 'atime set');
  if (engine === 'native') {
    await utimes(path, Y2021, Y2020);
    const set = await stat(path);
    t.same([seconds(set.atime), seconds(set.mtime)], [seconds(Y2021), seconds(Y2020)], 'atime and mtime set apart');
    execFileSync('touch', ['-a', '-d', '2022-01-01T00:00:00Z', path]);
    const touched = await stat(path);
    t.same([touched.atime.toISOString(), seconds(touched.mtime)], ['2022-01-01T00:00:00.000Z', seconds(Y2020)], 'touch -a changes only atime');
  }
  await chmod(path, 0o600);
  const changed = await stat(path);
  t.equal(seconds(changed.mtime), seconds(Y2020), 'chmod keeps mtime');
  t.ok(changed.ctimeMs >= before.ctimeMs, 'chmod moves ctime');
  // A change that found the file still local (its release still on the way) goes up in the background.
  t.ok(await uploadsSettled(mount.cacheDir), 'the changes are in the store');
  const puts = () => s3.requests().filter((r) => r.method === 'PUT').length;
  const putsBefore = puts();
  await readFile(path);
  await readFile(path);
  t.equal(puts(), putsBefore, 'reading stores nothing (no atime update)');
  await writeFile(path, 'two');
  const written = await stat(path);
  t.ok(written.mtimeMs > Y2021.getTime() && written.ctimeMs >= written.mtimeMs, 'a write moves mtime and ctime');
  await mkdir(mount.path('d'));
  await utimes(mount.path('d'), Y2020, Y2020);
  await writeFile(mount.path('d/new'), 'x');
  const parent = await stat(mount.path('d'));
  t.ok(parent.mtimeMs > Y2021.getTime() && parent.ctimeMs > Y2021.getTime(), 'a new entry moves its directory\'s mtime and ctime');
});

engineTest(t, 'the mount root keeps its attributes in memory: no bucket-level write', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  execFileSync('touch', [mount.mountpoint]);
  await chmod(mount.mountpoint, 0o751);
  await utimes(mount.mountpoint, Y2020, Y2020);
  const st = await stat(mount.mountpoint);
  t.same([st.mode, seconds(st.mtime)], [constants.S_IFDIR | 0o751, seconds(Y2020)], 'root mode and time');
  t.notOk(s3.requests().some((r) => r.method === 'PUT' && /^\/test\/?(\?.*)?$/.test(r.url)), 'no PUT on the bucket');
});

engineTest(t, 'symbolic links and fifos are stored as s3fs stores them', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  await writeFile(mount.path('target'), 'pointed at');
  await symlink('target', mount.path('link'));
  await symlink('../somewhere/else', mount.path('dangling'));
  execFileSync('mkfifo', ['-m', '0640', mount.path('pipe')]);
  t.equal(await readlink(mount.path('link')), 'target');
  t.equal(await readFile(mount.path('link'), 'utf8'), 'pointed at', 'the link is followed');
  t.ok((await lstat(mount.path('link'))).isSymbolicLink(), 'lstat: a symbolic link');
  t.ok((await lstat(mount.path('pipe'))).isFIFO(), 'lstat: a fifo');
  t.equal((await objectBytes(s3, 'dangling'))?.toString(), '../somewhere/else', 'the object body is the target');
  t.equal((await s3.store.head('link'))?.metadata?.mode, String(constants.S_IFLNK | 0o777), 'S_IFLNK in x-amz-meta-mode');
  t.equal((await s3.store.head('pipe'))?.metadata?.mode, String(constants.S_IFIFO | 0o640), 'S_IFIFO in x-amz-meta-mode');
  const types = Object.fromEntries((await readdir(mount.path(''), { withFileTypes: true })).map((e) => [e.name, e.isSymbolicLink() ? 'link' : e.isFIFO() ? 'fifo' : 'other']));
  t.match(types, { link: 'link', dangling: 'link', pipe: 'fifo' }, 'listed with their types');
  t.rejects(execFileSyncAsync('ln', [mount.path('target'), mount.path('hard')]), 'hard links stay refused');
});

engineTest(t, 'inode numbers stay across rename; file handles open again after the kernel drops its inodes', async (t, engine) => {
  const s3 = await startS3(t);
  const mount = await mountS3(t, s3, { engine });
  const dir = tempDir(t, 'handles');
  const tool = join(dir, 'file-handle');
  execFileSync('cc', ['-O1', '-Wall', '-o', tool, FILE_HANDLE_SOURCE]);
  await mkdir(mount.path('a'));
  await writeFile(mount.path('a/f'), 'first');
  const ino = (await stat(mount.path('a/f'))).ino;
  await rename(mount.path('a/f'), mount.path('a/g'));
  t.equal((await stat(mount.path('a/g'))).ino, ino, 'same inode after rename');
  await rename(mount.path('a'), mount.path('b'));
  t.equal((await stat(mount.path('b/g'))).ino, ino, 'same inode after its directory moved');
  const handle = execFileSync(tool, ['save', mount.path('b/g')], { encoding: 'utf8' }).trim();
  const dropAndOpen = () => {
    execFileSync('sh', ['-c', 'sync; echo 2 > /proc/sys/vm/drop_caches']);
    return execFileSync(tool, ['open', mount.mountpoint, handle], { encoding: 'utf8' });
  };
  t.equal(dropAndOpen(), 'first', 'the handle opens after the kernel dropped its inodes');
  await rename(mount.path('b/g'), mount.path('b/h'));
  t.equal(dropAndOpen(), 'first', 'and after a rename');
  await writeFile(mount.path('b/h'), 'rewritten');
  t.equal(dropAndOpen(), 'rewritten', 'and reads what the file holds now');
  await execFileSyncAsync('rm', [mount.path('b/h')]);
  t.throws(() => dropAndOpen(), 'a deleted file\'s handle is stale');
});

/** A tree of every kind, with modes, owners and times; then what it shows. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'dir'), { mode: 0o711 });
  await writeFile(join(root, 'dir/file'), 'file bytes');
  await chmod(join(root, 'dir/file'), 0o604);
  await chown(join(root, 'dir/file'), 11, 12);
  await utimes(join(root, 'dir/file'), Y2020, Y2020);
  await symlink('file', join(root, 'dir/link'));
  execFileSync('mkfifo', ['-m', '0620', join(root, 'dir/pipe')]);
  await chmod(join(root, 'dir'), 0o711);
  await chown(join(root, 'dir'), 21, 22);
}

async function describeTree(root: string): Promise<Record<string, unknown>> {
  const show = async (name: string) => {
    const st = await lstat(join(root, name));
    return { mode: st.mode.toString(8), uid: st.uid, gid: st.gid, ...(name === 'dir/file' ? { mtime: seconds(st.mtime) } : {}) };
  };
  return {
    dir: await show('dir'),
    file: await show('dir/file'),
    link: await show('dir/link'),
    pipe: await show('dir/pipe'),
    target: await readlink(join(root, 'dir/link')),
    bytes: await readFile(join(root, 'dir/link'), 'utf8'),
  };
}

const EXPECTED_TREE = {
  dir: { mode: (constants.S_IFDIR | 0o711).toString(8), uid: 21, gid: 22 },
  file: { mode: (constants.S_IFREG | 0o604).toString(8), uid: 11, gid: 12, mtime: seconds(Y2020) },
  link: { mode: (constants.S_IFLNK | 0o777).toString(8) },
  pipe: { mode: (constants.S_IFIFO | 0o620).toString(8) },
  target: 'file',
  bytes: 'file bytes',
};

t.test('buckets move between s3fs and stagefs both ways: types, modes, owners, times', async (t) => {
  await t.test('written by s3fs, read by stagefs', async (t) => {
    const s3 = await startS3(t);
    const s3fs = await mountS3fs(t, s3);
    await makeTree(s3fs.mountpoint);
    t.match(await describeTree(s3fs.mountpoint), EXPECTED_TREE, 's3fs shows what it wrote');
    for (const engine of ENGINES) {
      const mount = await mountS3(t, s3, { engine });
      t.match(await describeTree(mount.mountpoint), EXPECTED_TREE, `stagefs (${engine}) shows the same`);
      await mount.unmount();
    }
  });
  for (const engine of ENGINES) {
    await t.test(`written by stagefs (${engine}), read by s3fs`, async (t) => {
      const s3 = await startS3(t);
      const mount = await mountS3(t, s3, { engine });
      await makeTree(mount.mountpoint);
      t.match(await describeTree(mount.mountpoint), EXPECTED_TREE, 'stagefs shows what it wrote');
      await mount.unmount();
      const s3fs = await mountS3fs(t, s3);
      t.match(await describeTree(s3fs.mountpoint), EXPECTED_TREE, 's3fs shows the same');
    });
  }
});

async function execFileSyncAsync(file: string, args: string[]): Promise<void> {
  execFileSync(file, args, { stdio: 'ignore' });
}
