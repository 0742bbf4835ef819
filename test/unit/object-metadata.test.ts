import { constants } from 'node:fs';
import t from 'tap';
import { nodeAttrs } from '../../src/fs/attrs';
import { parseMetadata, withAttrs, withoutTimes } from '../../src/fs/object-metadata';
import { InodeTable, hash32 } from '../../src/namespace/inode-table';
import { formatEpochSeconds, parseEpochSeconds } from '../../src/util/epoch-seconds';

t.test('times are written as s3fs writes them and read in every form it or stagefs wrote', async (t) => {
  t.equal(formatEpochSeconds(1_700_000_000_000), '1700000000');
  t.equal(formatEpochSeconds(1_700_000_000_250), '1700000000.250000000');
  t.equal(formatEpochSeconds(-1500), '-2.500000000');
  t.equal(parseEpochSeconds('1700000000'), 1_700_000_000_000);
  t.equal(parseEpochSeconds('1700000000.250000000'), 1_700_000_000_250);
  t.equal(parseEpochSeconds('1700000000.250'), 1_700_000_000_250, "stagefs's older three digits");
  t.equal(parseEpochSeconds('-2.500000000'), -1500);
  t.equal(parseEpochSeconds('soon'), undefined);
  t.equal(parseEpochSeconds(undefined), undefined);
});

t.test('metadata: the type lives in the mode, a change writes every field and keeps other metadata', async (t) => {
  const stored = parseMetadata({ mode: String(constants.S_IFLNK | 0o777), uid: '5', gid: '6', mtime: '10', ctime: '11', atime: '12' });
  t.same(stored, { type: constants.S_IFLNK, mode: 0o777, uid: 5, gid: 6, mtime: 10_000, ctime: 11_000, atime: 12_000 });
  t.same(parseMetadata({ mode: '420' }).type, undefined, 'permission bits alone: no type');
  const written = withAttrs({ mode: '1', other: 'kept' }, { type: constants.S_IFREG, mode: 0o640, uid: 1, gid: 2, mtime: 3000, ctime: 4000, atime: 5500 });
  t.same(written, { other: 'kept', mode: String(constants.S_IFREG | 0o640), uid: '1', gid: '2', mtime: '3', ctime: '4', atime: '5.500000000' });
  t.same(withoutTimes(written), { other: 'kept', mode: String(constants.S_IFREG | 0o640), uid: '1', gid: '2' });
});

t.test('attributes: stored ones win, defaults fill in, a directory changed through the mount moves its times', async (t) => {
  const owner = { uid: 1000, gid: 1000 };
  const mtime = new Date(1_600_000_000_000);
  const file = { kind: 'file' as const, path: '/f', ino: 9, key: 'f', size: 1, etag: '"e"', mtime };
  const bare = nodeAttrs(file, owner);
  t.same([bare.type, bare.mode, bare.uid, bare.gid], [constants.S_IFREG, 0o644, 1000, 1000], 'no metadata: defaults');
  t.equal(bare.ctime, bare.mtime, 'ctime defaults to mtime');
  const fifo = nodeAttrs({ ...file, metadata: { mode: String(constants.S_IFIFO | 0o600), uid: '0' } }, owner);
  t.same([fifo.type, fifo.mode, fifo.uid], [constants.S_IFIFO, 0o600, 0]);
  const dirType = nodeAttrs({ ...file, metadata: { mode: String(constants.S_IFDIR | 0o755) } }, owner).type;
  t.equal(dirType, constants.S_IFREG, 'an object never claims to be a directory');
  const dir = { kind: 'dir' as const, path: '/d', ino: 3, mtime, metadata: { mtime: '1600000000' }, entriesChangedAt: 1_700_000_000_000 };
  const changed = nodeAttrs(dir, owner);
  t.same([changed.mtime, changed.ctime, changed.atime], [1_700_000_000_000, 1_700_000_000_000, 1_600_000_000_000]);
});

t.test('inodes: generation 0 for a path\'s hash, the mount\'s otherwise; the inode follows a rename', async (t) => {
  const inodes = new InodeTable(77);
  const first = inodes.fileIno('/a', '"1"');
  t.equal(first, hash32('/a'));
  t.equal(inodes.generationOf(first), 0);
  const replaced = inodes.fileIno('/a', '"2"');
  t.not(replaced, first, 'a version made behind the mount is a new inode');
  t.equal(inodes.generationOf(replaced), 77);
  inodes.rename('/a', '/b');
  t.equal(inodes.pathOf(replaced), '/b');
  t.equal(inodes.inoOf('/b'), replaced, 'the inode follows the rename');
});
