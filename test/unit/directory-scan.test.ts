import t from 'tap';
import { DirectoryScans } from '../../src/fs/directory-scan';

t.test('two opens of neighbouring entries start a scan; each entry ahead is handed out once', async (t) => {
  const scans = new DirectoryScans(4);
  t.equal(scans.opened('/d', 0), undefined, 'one open is no scan');
  t.same(scans.opened('/d', 1), { from: 2, to: 5 }, 'the next entry makes one: the 4 after it');
  t.same(scans.opened('/d', 2), { from: 6, to: 6 }, 'each further open hands out one more');
  t.equal(scans.opened('/d', 2), undefined, 'a re-open of the same entry changes nothing');
  t.same(scans.opened('/d', 3), { from: 7, to: 7 }, 'and the scan goes on after it');
});

t.test('any other order starts the count again and hands out nothing', async (t) => {
  const scans = new DirectoryScans(4);
  scans.opened('/d', 10);
  t.equal(scans.opened('/d', 12), undefined, 'a skip is no scan');
  t.equal(scans.opened('/d', 11), undefined, 'nor is going back');
  t.same(scans.opened('/d', 12), { from: 13, to: 16 }, 'two neighbours again start one');
  t.equal(scans.opened('/d', 3), undefined, 'a jump back ends it');
  t.same(scans.opened('/d', 4), { from: 5, to: 8 }, 'and a new one starts where the opens are now');
});

t.test('directories are scanned apart, and only so many are remembered', async (t) => {
  const scans = new DirectoryScans(2);
  scans.opened('/a', 0);
  scans.opened('/b', 5);
  t.same(scans.opened('/a', 1), { from: 2, to: 3 }, 'an open elsewhere does not break a scan');
  for (let i = 0; i < 100; i++) scans.opened(`/other-${i}`, 0);
  t.equal(scans.opened('/b', 6), undefined, 'a directory not opened for long is forgotten');
});
