import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import t from 'tap';
import { listKeys } from '../../src/s3server/list-objects';

function bucketWith(t: any, keys: string[]): string {
  const root = t.testdir({});
  for (const key of keys) {
    const path = join(root, key + '._S3rver_object');
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '');
  }
  return root;
}

t.test('common prefixes holding only deeper keys are reported', async (t) => {
  const root = bucketWith(t, ['template/tmpl/2/a', 'iso/x', 'readme', 'vol/']);
  t.same(listKeys(root, { delimiter: '/' }), { keys: ['readme'], commonPrefixes: ['iso/', 'template/', 'vol/'], isTruncated: false });
  t.same(listKeys(root, { delimiter: '/', prefix: 'template/' }).commonPrefixes, ['template/tmpl/']);
  t.same(listKeys(root, { prefix: 'template/' }).keys, ['template/tmpl/2/a'], 'without a delimiter every key');
  t.same(listKeys(root, { delimiter: '/', prefix: 'vol/' }).keys, ['vol/'], 'a marker lists itself');
});

t.test('pages end on a key and resume after it', async (t) => {
  const root = bucketWith(t, ['a', 'b/1', 'c', 'd/1', 'e']);
  const first = listKeys(root, { delimiter: '/', maxKeys: 2 });
  t.same(first, { keys: ['a', 'c'], commonPrefixes: ['b/'], isTruncated: true });
  const second = listKeys(root, { delimiter: '/', maxKeys: 2, startAfter: 'c' });
  t.same(second, { keys: ['e'], commonPrefixes: ['d/'], isTruncated: false });
});
