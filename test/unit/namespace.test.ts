import t from 'tap';
import { Namespace } from '../../src/namespace/namespace';
import { MemoryStore } from '../helpers/memory-store';

function setup(keys: string[], ttlMs = 60_000) {
  const store = new MemoryStore();
  for (const key of keys) void store.put(key, Buffer.from(key));
  let clock = 1_000_000;
  const namespace = new Namespace({ store, prefix: '', ttlMs, now: () => clock });
  return { store, namespace, advance: (ms: number) => (clock += ms) };
}

const names = async (ns: Namespace, path: string) => (await ns.readdir(path)).map((n) => n.path.slice(n.path.lastIndexOf('/') + 1));

t.test('keys split on / into directories, markers make empty directories', async (t) => {
  const { namespace } = setup(['a/b/c.txt', 'a/d.txt', 'e/', 'top']);
  t.same(await names(namespace, '/'), ['a', 'e', 'top']);
  t.same(await names(namespace, '/a'), ['b', 'd.txt']);
  t.same(await names(namespace, '/e'), []);
  t.equal((await namespace.lookup('/a/b')).kind, 'dir');
  t.equal((await namespace.lookup('/a/b/c.txt')).kind, 'file');
});

t.test('a name that is a file and a prefix shows as the directory in listings', async (t) => {
  const { namespace } = setup(['x', 'x/child']);
  t.same(await names(namespace, '/'), ['x']);
  t.equal((await namespace.lookup('/x')).kind, 'dir', 'and to a lookup the listing answers');
  const fresh = setup(['x', 'x/child']).namespace;
  t.equal((await fresh.lookup('/x')).kind, 'file', 'a lookup without a listing finds the object with its one HEAD');
});

t.test('keys that cannot be file names are skipped', async (t) => {
  const { namespace } = setup(['ok', 'a//b', 'dot/./x', 'dots/../y', 'n'.repeat(300), 'fine/z']);
  t.same(await names(namespace, '/'), ['a', 'dot', 'dots', 'fine', 'ok']);
  t.same(await names(namespace, '/a'), [], 'an empty segment is not a name');
  t.same(await names(namespace, '/dot'), []);
  await t.rejects(namespace.lookup('/' + 'n'.repeat(300)), { code: 'ENAMETOOLONG' });
});

t.test('listings page through the store', async (t) => {
  const keys = Array.from({ length: 2500 }, (_, i) => `d/${String(i).padStart(4, '0')}`);
  const { namespace, store } = setup(keys);
  t.equal((await namespace.readdir('/d')).length, 2500);
  t.ok(store.listCount >= 3, 'several pages were asked for');
});

t.test('answers are cached for the TTL, then fetched anew', async (t) => {
  const { namespace, store, advance } = setup(['f'], 1000);
  const first = await namespace.lookup('/f');
  const heads = store.headCount;
  await namespace.lookup('/f');
  t.equal(store.headCount, heads, 'no request within the TTL');
  await store.put('f', Buffer.from('changed content'));
  t.equal(await namespace.lookup('/f'), first, 'the cached node until the TTL passes');
  advance(1001);
  const after = await namespace.lookup('/f');
  t.ok(after.kind === 'file' && after.size === 15, 'the new object after the TTL');
  await t.rejects(namespace.lookup('/missing'), { code: 'ENOENT' });
  const lists = store.listCount;
  await t.rejects(namespace.lookup('/missing'), { code: 'ENOENT' });
  t.equal(store.listCount, lists, 'a missing name is cached too');
});

t.test('inode numbers are stable across namespaces', async (t) => {
  const a = setup(['p/q']).namespace;
  const b = setup(['p/q']).namespace;
  t.equal((await a.lookup('/p/q')).ino, (await b.lookup('/p/q')).ino);
  t.not((await a.lookup('/p/q')).ino, (await a.lookup('/p')).ino);
});

t.test('concurrent lookups of one name share one request', async (t) => {
  const { namespace, store } = setup(['shared']);
  await Promise.all(Array.from({ length: 10 }, () => namespace.lookup('/shared')));
  t.equal(store.headCount, 1);
});

const requests = (store: MemoryStore) => ({ heads: store.headCount, lists: store.listCount });

t.test('a lookup costs one request, a LIST only when HEAD misses', async (t) => {
  const { namespace, store } = setup(['file', 'marked/', 'marked/inner', 'implicit/inner']);
  await namespace.lookup('/file');
  t.same(requests(store), { heads: 1, lists: 0 }, 'an object: one HEAD');
  await namespace.lookup('/implicit');
  t.same(requests(store), { heads: 2, lists: 1 }, 'an implicit directory: HEAD, then one LIST');
  const marked = await namespace.lookup('/marked');
  t.same(requests(store), { heads: 4, lists: 2 }, 'a directory marker: and a HEAD of the marker for its metadata');
  t.same(marked.metadata, {});
  await t.rejects(namespace.lookup('/none'), { code: 'ENOENT' });
  t.same(requests(store), { heads: 5, lists: 3 }, 'a missing name: HEAD and LIST');
});

t.test('a name in a fresh listing costs no LIST, only the HEADs of metadata, each once', async (t) => {
  const { namespace, store } = setup(['d/a', 'd/b', 'd/sub/c']);
  await namespace.readdir('/d');
  const before = requests(store);
  t.equal((await namespace.lookup('/d/a')).kind, 'file');
  t.equal((await namespace.lookup('/d/sub')).kind, 'dir');
  await t.rejects(namespace.lookup('/d/none'), { code: 'ENOENT' });
  t.equal((await namespace.lookup('/d/b')).kind, 'file');
  t.same(requests(store), { lists: before.lists, heads: before.heads + 3 }, 'a, b and the marker of sub: the first lookup read the others ahead');
});

t.test('expired entries of a listed directory are revalidated by one listing of it', async (t) => {
  const keys = Array.from({ length: 1500 }, (_, i) => `small/f${String(i).padStart(4, '0')}`);
  const { namespace, store, advance } = setup(['small/', ...keys], 1000);
  await namespace.lookup('/small');
  await namespace.readdir('/small');
  const inodes = new Map<string, number>();
  for (const key of keys) inodes.set(key, (await namespace.lookup('/' + key)).ino);
  advance(1001);
  await namespace.lookup('/small'); // the kernel looks up the directory first
  const before = requests(store);
  await Promise.all(keys.slice(0, 10).map((key) => namespace.lookup('/' + key)));
  for (const key of keys) {
    const node = await namespace.lookup('/' + key);
    t.equal(node.ino, inodes.get(key), `${key} keeps its inode`);
    t.ok(node.metadata, `and its metadata`);
  }
  t.same(requests(store), { heads: before.heads, lists: before.lists + 2 }, 'two pages of listing, no HEAD');
  t.equal((await namespace.readdir('/small')).length, keys.length, 'the directory reads as before');
  t.same(requests(store), { heads: before.heads, lists: before.lists + 2 }, 'from the same listing');
});

t.test('after the TTL, a replaced object is a new version and its metadata is read again', async (t) => {
  const { namespace, store, advance } = setup(['d/same', 'd/changed', 'd/chmodded'], 1000);
  await store.put('d/chmodded', Buffer.from('d/chmodded'), { mode: '0100600' });
  await namespace.readdir('/d');
  const old = await namespace.lookupFile('/d/changed');
  const same = await namespace.lookupFile('/d/same');
  t.same((await namespace.lookup('/d/chmodded')).metadata, { mode: '0100600' });
  await store.put('d/changed', Buffer.from('new bytes'), { mode: '0100640' });
  const chmodded = store.objects.get('d/chmodded')!;
  // A copy onto itself with new metadata: same ETag, a later LastModified.
  chmodded.info = { ...chmodded.info, mtime: new Date(chmodded.info.mtime.getTime() + 2000), metadata: { mode: '0100755' } };
  advance(1001);
  const heads = store.headCount;
  const changed = await namespace.lookupFile('/d/changed');
  t.equal(changed.size, 9, 'the new size');
  t.not(changed.etag, old.etag, 'the new ETag');
  t.not(changed.ino, old.ino, 'a new inode');
  t.same(changed.metadata, { mode: '0100640' }, "the new version's metadata");
  t.equal(store.headCount, heads + 2, 'read with one HEAD, and that of the entry after it ahead of its lookup');
  t.same((await namespace.lookup('/d/chmodded')).metadata, { mode: '0100755' }, 'metadata changed in place is read again');
  t.equal(store.headCount, heads + 2, 'by that HEAD');
  t.equal((await namespace.lookup('/d/same')).ino, same.ino, 'an unchanged object keeps its inode');
  t.equal(store.headCount, heads + 2, 'without a HEAD');
  const listed = await namespace.readdir('/d');
  t.same(listed.map((n) => n.ino), [changed.ino, (await namespace.lookup('/d/chmodded')).ino, same.ino], 'the listing shows the same nodes');
});

t.test('a listing shows an entry it could not confirm without metadata; its lookup reads it with one HEAD', async (t) => {
  const { namespace, store, advance } = setup(['d/a', 'd/b'], 1000);
  await namespace.readdir('/d');
  await namespace.lookup('/d/a');
  await namespace.lookup('/d/b');
  await store.put('d/b', Buffer.from('other'), { mode: '0100600' });
  advance(1001);
  await namespace.lookup('/d');
  const heads = store.headCount;
  const listed = await namespace.readdir('/d');
  t.same(listed.map((n) => namespace.metadataKnown(n)), [true, false], 'the changed entry is not known from the listing');
  t.equal(store.headCount, heads, 'and the listing reads no metadata');
  t.same((await namespace.lookup('/d/b')).metadata, { mode: '0100600' }, 'its lookup does');
  t.equal(store.headCount, heads + 1, 'with one HEAD');
});

t.test('a listing costs no HEAD; lookups of its entries in order read the metadata ahead, once each', async (t) => {
  const keys = Array.from({ length: 100 }, (_, i) => `big/f${String(i).padStart(3, '0')}`);
  const { namespace, store } = setup(keys);
  await namespace.lookup('/big');
  const before = store.headCount;
  const listed = await namespace.readdir('/big');
  t.equal(listed.length, 100, 'all listed');
  t.equal(store.headCount, before, 'without a HEAD');
  t.notOk(listed.some((node) => namespace.metadataKnown(node)), 'so no metadata is known yet');
  const first = await namespace.lookup('/big/f000');
  t.same(first.metadata, {}, 'a lookup reads it');
  t.ok(store.headCount > 1, 'and that of the entries after it at once');
  for (const key of keys) await namespace.lookup(`/${key}`);
  t.ok(listed.every((node) => namespace.metadataKnown(node)), 'every entry looked up has its metadata');
  t.equal(store.headCount, before + 100, 'one HEAD per entry, none twice');
});

t.test('a directory too large to list again is revalidated per name', async (t) => {
  const keys = Array.from({ length: 20_001 }, (_, i) => `big/${i}`);
  const { namespace, store, advance } = setup(keys, 1000);
  await namespace.readdir('/big');
  advance(1001);
  await namespace.lookup('/big');
  const before = requests(store);
  await namespace.lookup('/big/7');
  t.same(requests(store), { heads: before.heads + 1, lists: before.lists }, 'one HEAD');
});

t.test('a listing again shows objects deleted and added in the store since', async (t) => {
  const { namespace, store, advance } = setup(['d/gone', 'd/stays'], 1000);
  await namespace.readdir('/d');
  await store.deleteMany(['d/gone']);
  await store.put('d/new', Buffer.from('new'));
  advance(1001);
  await namespace.lookup('/d');
  const lists = store.listCount;
  await t.rejects(namespace.lookup('/d/gone'), { code: 'ENOENT' }, 'a deleted object is gone');
  t.equal((await namespace.lookup('/d/new')).kind, 'file', 'an added one is found');
  t.equal(store.listCount, lists + 1, 'by one listing');
});

t.test('what the mount changes in a directory while it is being listed stays', async (t) => {
  const { namespace, store, advance } = setup(['d/gone', 'd/old'], 1000);
  await namespace.readdir('/d');
  advance(1001);
  await namespace.lookup('/d');
  // The store answers the listing before the changes below, the mount sees the answer after them.
  let answer = () => {};
  const answered = new Promise<void>((resolve) => (answer = resolve));
  const list = store.list.bind(store);
  store.list = async (...args) => {
    const page = await list(...args);
    await answered;
    return page;
  };
  const looking = namespace.lookup('/d/old');
  await new Promise((resolve) => setImmediate(resolve));
  await store.deleteMany(['d/gone']);
  namespace.remove('/d/gone');
  const info = await store.put('d/new', Buffer.from('new'), {});
  namespace.remember(namespace.fileNode('/d/new', info));
  answer();
  await looking;
  await t.rejects(namespace.lookup('/d/gone'), { code: 'ENOENT' }, 'a file removed meanwhile stays removed');
  t.equal((await namespace.lookup('/d/new')).kind, 'file', 'a file made meanwhile is there');
  t.same(await names(namespace, '/d'), ['new', 'old'], 'in the listing too');
});
