/**
 * Stable inode numbers: a hash of the path inside the mount and, for a file, of its version
 * (ETag), so the same object keeps its inode across lookups and remounts, and an object
 * replaced in the store becomes a new inode, as a file replaced by rename does. The kernel then
 * never has to mix two versions' cached pages or backing files in one inode. 32 bits, because
 * fuse-native carries st_ino in 32 bits; a rare collision probes to the next free number for the
 * life of the mount.
 */

export const ROOT_INO = 1;

export function hash32(text: string): number {
  // FNV-1a over the UTF-8 bytes.
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export class InodeTable {
  private readonly byIdentity = new Map<string, number>([['/', ROOT_INO]]);
  private readonly paths = new Map<number, string>([[ROOT_INO, '/']]);

  /** The inode of a directory (no version) or of one version of a file. */
  inoOf(path: string, version?: string): number {
    const identity = version === undefined ? path : `${path}\0${version}`;
    const known = this.byIdentity.get(identity);
    if (known !== undefined) return known;
    let ino = hash32(identity);
    while (ino <= ROOT_INO || this.paths.has(ino)) ino = (ino + 1) >>> 0;
    this.byIdentity.set(identity, ino);
    this.paths.set(ino, path);
    return ino;
  }

  pathOf(ino: number): string | undefined {
    return this.paths.get(ino);
  }

  /**
   * After a rename, the inodes the kernel holds for `from` and below answer to `to`: the kernel
   * moved its names, and asks about those inodes by number.
   */
  rename(from: string, to: string): void {
    for (const [ino, path] of this.paths) {
      if (path === from || path.startsWith(from + '/')) this.paths.set(ino, to + path.slice(from.length));
    }
  }
}
