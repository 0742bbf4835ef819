import { open } from 'node:fs/promises';
import t from 'tap';
import { randomData, readAt, sha256, sha256File } from '../helpers/files';
import { engineTest, mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const BLOCK = 1024 * 1024;
const MiB = 1024 * 1024;

engineTest(t, 'bytes read through the mount equal the object, at every size edge', async (t, engine) => {
  const s3 = await startS3(t);
  const sizes: Record<string, number> = {
    empty: 0,
    'one-byte': 1,
    'block-minus-one': BLOCK - 1,
    block: BLOCK,
    'block-plus-one': BLOCK + 1,
  };
  const sources = new Map<string, Buffer>();
  for (const [name, size] of Object.entries(sizes)) {
    const data = randomData(size);
    sources.set(name, data);
    await s3.store.put(`sizes/${name}`, data);
  }
  const mount = await mountS3(t, s3, { engine, args: ['--block-size', '1MiB'] });
  for (const [name, data] of sources) {
    t.equal(await sha256File(mount.path(`sizes/${name}`)), sha256(data), `${name} (${data.length} bytes)`);
  }
});

// Each fetcher once: the addon's libcurl threads under the native engine, JavaScript's GETs (what
// a mount falls back to without the addon) under fuse-native; the other tests use the default.
const FETCHER_OF = { native: 'native', 'fuse-native': 'js' } as const;

engineTest(t, 'a 300 MiB object reads back whole, and random-offset reads match it (native engine: native fetcher; fuse-native: js)', async (t, engine) => {
  const s3 = await startS3(t);
  const data = randomData(300 * MiB);
  await s3.store.put('images/big.qcow2', data);
  const mount = await mountS3(t, s3, { engine, args: ['--fetcher', FETCHER_OF[engine]] });
  const path = mount.path('images/big.qcow2');

  // Random reads first, while the file is cold: each faults only what it touches.
  const file = await open(path, 'r');
  try {
    for (let i = 0; i < 200; i++) {
      const length = 1 + Math.floor(Math.random() * 256 * 1024);
      const position = Math.floor(Math.random() * (data.length - 1));
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await file.read(buffer, 0, length, position);
      const expected = data.subarray(position, position + length);
      if (!buffer.subarray(0, bytesRead).equals(expected)) {
        t.fail(`read of ${length} bytes at ${position} differs`);
        return;
      }
    }
    t.pass('200 random-offset reads match the source');
  } finally {
    await file.close();
  }
  t.equal(await sha256File(path), sha256(data), 'sha256 of the whole 300 MiB');
  const tail = await readAt(path, data.length - 10, 100);
  t.same(tail, data.subarray(data.length - 10), 'a read past the end returns only the bytes that exist');
});
