/**
 * Stable inode numbers: a hash of the path inside the mount, so the same file keeps its inode
 * across lookups and remounts. 32 bits, because fuse-native carries st_ino in 32 bits; a rare
 * collision probes to the next free number for the life of the mount.
 */

export const ROOT_INO = 1;

export function pathHash32(path: string): number {
  // FNV-1a over the UTF-8 bytes.
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(path, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export class InodeTable {
  private readonly byPath = new Map<string, number>([['/', ROOT_INO]]);
  private readonly byIno = new Map<number, string>([[ROOT_INO, '/']]);

  inoOf(path: string): number {
    const known = this.byPath.get(path);
    if (known !== undefined) return known;
    let ino = pathHash32(path);
    while (ino <= ROOT_INO || this.byIno.has(ino)) ino = (ino + 1) >>> 0;
    this.byPath.set(path, ino);
    this.byIno.set(ino, path);
    return ino;
  }

  pathOf(ino: number): string | undefined {
    return this.byIno.get(ino);
  }

  /** Moves the numbers of `from` and everything below it to `to` (a rename keeps inodes). */
  rename(from: string, to: string): void {
    for (const [path, ino] of [...this.byPath]) {
      if (path !== from && !path.startsWith(from + '/')) continue;
      const moved = to + path.slice(from.length);
      const displaced = this.byPath.get(moved);
      if (displaced !== undefined) this.byIno.delete(displaced);
      this.byPath.delete(path);
      this.byPath.set(moved, ino);
      this.byIno.set(ino, moved);
    }
  }
}
