/**
 * Reads a cache index from end to end, in a process of its own: a damaged LMDB file can end the
 * process that maps it (SIGBUS, SIGSEGV), so the mount and admin tools run this first and open
 * the index themselves only once it came through. Usage: index-probe.js CACHE_DIR [--read-only]
 * Exit 0: readable. Exit 1, with the error as JSON on standard output: the index could not be read.
 */
import { CacheIndex } from './cache-index';

async function probe(cacheDir: string, readOnly: boolean): Promise<void> {
  const index = CacheIndex.open(cacheDir, { readOnly });
  try {
    index.entries();
    index.legacyWrites();
    index.counters();
    const space = index.space();
    // The mount writes at once: a damaged free list or page tree shows in a write transaction.
    if (!readOnly && space) {
      await index.putSpace(space);
      await index.flushed();
    }
  } finally {
    await index.close();
  }
}

const [cacheDir, mode] = process.argv.slice(2);
probe(cacheDir, mode === '--read-only').then(
  () => process.exit(0),
  (err: Error & { code?: unknown }) => {
    process.stdout.write(JSON.stringify({ code: err.code, message: err.message }));
    process.exit(1);
  },
);
