import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import t from 'tap';
import { randomData, seeded, sha256 } from '../helpers/files';
import { engineTest, mountS3 } from '../helpers/mount';
import { startS3 } from '../helpers/s3';

const MiB = 1024 * 1024;
const run = promisify(execFile);

/**
 * With room for one reply at a time (--read-memory 1MiB), cold reads of several files at once
 * (the kernel sends readahead READs of each alongside) all finish, each with its own bytes.
 */
engineTest(t, 'many reads at once under the smallest read memory all complete with the right bytes', async (t, engine) => {
  const s3 = await startS3(t);
  const files = Array.from({ length: 6 }, (_, i) => ({ key: `images/disk-${i}.raw`, data: randomData((12 + i) * MiB + 12345 * i) }));
  for (const file of files) await s3.store.put(file.key, file.data);
  const mount = await mountS3(t, s3, { engine, args: ['--read-memory', '1MiB'] });

  // Whole files in other processes, all at once, with the kernel's readahead.
  const paths = files.slice(0, 4).map((file) => mount.path(file.key));
  const { stdout } = await run('sh', ['-c', 'for f in "$@"; do sha256sum "$f" & done; wait', 'sh', ...paths]);
  const sums = new Map(stdout.trim().split('\n').map((line) => line.split(/\s+/).reverse() as [string, string]));
  for (const [i, path] of paths.entries()) t.equal(sums.get(path), sha256(files[i].data), `${files[i].key} read whole`);

  // Random reads of various sizes over the other files, many in flight at once.
  const random = seeded(13);
  const handles = await Promise.all(files.slice(4).map((file) => open(mount.path(file.key), 'r')));
  try {
    const mismatches: string[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async (_, n) => {
        const index = n % handles.length;
        const data = files[4 + index].data;
        const length = [4096, 128 * 1024, MiB, 300_000][n % 4];
        const position = Math.floor(random() * (data.length - 1));
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handles[index].read(buffer, 0, length, position);
        if (!buffer.subarray(0, bytesRead).equals(data.subarray(position, position + length))) mismatches.push(`${length} at ${position}`);
      }),
    );
    t.same(mismatches, [], '64 concurrent reads at random offsets match the objects');
  } finally {
    await Promise.all(handles.map((handle) => handle.close()));
  }
});
