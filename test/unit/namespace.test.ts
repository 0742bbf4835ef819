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

t.test('a name that is a file and a prefix shows as the directory', async (t) => {
  const { namespace } = setup(['x', 'x/child']);
  t.same(await names(namespace, '/'), ['x']);
  t.equal((await namespace.lookup('/x')).kind, 'dir', 'by listing');
  const fresh = setup(['x', 'x/child']).namespace;
  t.equal((await fresh.lookup('/x')).kind, 'dir', 'and by lookup without a listing');
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
