/**
 * Where the parts of a file's multipart upload begin and end. The layout depends on a part's
 * index only, never on the file's final size, so a file can be uploaded part by part while it
 * is still being written. Parts are 8 MiB for the first thousand, then double every thousand up
 * to 512 MiB: S3's 10,000 parts then reach about 2.4 TiB, every part but the last is above S3's
 * 5 MiB minimum, and a small file is a few small parts.
 */
const MiB = 1024 * 1024;
export const FIRST_PART_SIZE = 8 * MiB;
const PARTS_PER_TIER = 1000;
const LAST_TIER = 6;
export const MAX_PARTS = 10_000;

function tierOf(index: number): number {
  return Math.min(LAST_TIER, Math.floor(index / PARTS_PER_TIER));
}

export function partSize(index: number): number {
  return FIRST_PART_SIZE * 2 ** tierOf(index);
}

/** Where the tier of part `index` begins. */
function tierStart(tier: number): number {
  return PARTS_PER_TIER * FIRST_PART_SIZE * (2 ** tier - 1);
}

export function partStart(index: number): number {
  const tier = tierOf(index);
  return tierStart(tier) + (index - tier * PARTS_PER_TIER) * partSize(index);
}

/** The largest file the layout can upload. */
export const MAX_FILE_SIZE = partStart(MAX_PARTS);

/** The part holding byte `offset`. */
export function partIndexOf(offset: number): number {
  let tier = 0;
  while (tier < LAST_TIER && offset >= tierStart(tier + 1)) tier++;
  return tier * PARTS_PER_TIER + Math.floor((offset - tierStart(tier)) / (FIRST_PART_SIZE * 2 ** tier));
}

/** How many parts a file of `size` bytes has. */
export function partCount(size: number): number {
  return size === 0 ? 0 : partIndexOf(size - 1) + 1;
}

/** Part `index`'s byte range [start, end) in a file of `size` bytes. */
export function partRange(index: number, size: number): { start: number; end: number } {
  const start = partStart(index);
  return { start, end: Math.min(size, start + partSize(index)) };
}
