/**
 * Inode numbers. A path keeps its inode for the life of the mount while its content changes only
 * through the mount (writes, truncates, metadata changes) and across renames, as on a local
 * disk; so the kernel sees every change of an inode's bytes, and what it caches of them stays
 * true. A version the mount did not make (the object replaced in the store by someone else)
 * is a new file with a new inode, as a file replaced by rename is; so is the next file at a
 * path after an unlink. The first inode of a path is a hash of it, so it is the same after a
 * remount. 32 bits, because fuse-native carries st_ino in 32 bits; a rare collision probes to
 * the next free number.
 *
 * Node ids are these inode numbers, and they map back to paths for the whole mount, also after
 * the kernel forgets an inode: a file handle (name_to_handle_at, an NFS server's) names a node id
 * and its generation, and opens again after the kernel dropped its inode. The generation is 0
 * for a path's first inode (the hash, the same after a remount, so handles survive one) and the
 * mount's own number for any other (a probe past a collision, a replaced file), which a remount
 * may give to another path: a handle of one then fails with ESTALE instead of naming that path.
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

interface PathInode {
  ino: number;
  /** The version of the file the inode's content is, once known. */
  etag: string | undefined;
}

export class InodeTable {
  private readonly byPath = new Map<string, PathInode>([['/', { ino: ROOT_INO, etag: undefined }]]);
  private readonly paths = new Map<number, string>([[ROOT_INO, '/']]);
  private readonly generations = new Map<number, number>();

  /** `mountGeneration`: this mount's number for inodes that are not the hash of their path (nonzero). */
  constructor(private readonly mountGeneration = Math.max(1, Math.floor(Date.now() / 1000) >>> 0)) {}

  /** The inode `path` has now (a directory, or a file whose version does not matter here). */
  inoOf(path: string): number {
    return (this.byPath.get(path) ?? this.allocate(path, undefined)).ino;
  }

  /** The inode of the file at `path` as version `etag`: a new one when the store changed it behind the mount. */
  fileIno(path: string, etag: string): number {
    const known = this.byPath.get(path);
    if (!known) return this.allocate(path, etag).ino;
    if (known.etag !== undefined && known.etag !== etag) return this.allocate(path, etag).ino;
    known.etag = etag;
    return known.ino;
  }

  /** The mount itself made `etag` the content of `path` (an upload, a copy): the inode stays. */
  produced(path: string, etag: string): void {
    const known = this.byPath.get(path) ?? this.allocate(path, etag);
    known.etag = etag;
  }

  /** `path` no longer names its file (unlinked, or its changes dropped): the next file there is a new inode. */
  release(path: string): void {
    this.byPath.delete(path);
  }

  pathOf(ino: number): string | undefined {
    return this.paths.get(ino);
  }

  /** The generation of an inode number, for file handles. */
  generationOf(ino: number): number {
    return this.generations.get(ino) ?? 0;
  }

  /**
   * After a rename, the inodes of `from` and below belong to `to`: the kernel moved its names,
   * and asks about those inodes by number.
   */
  rename(from: string, to: string): void {
    const under = (root: string) => (path: string) => path === root || path.startsWith(root + '/');
    const moved = under(from);
    const replaced = under(to);
    const entries = [...this.byPath];
    for (const [path] of entries) if (replaced(path)) this.byPath.delete(path);
    for (const [path, inode] of entries) {
      if (!moved(path)) continue;
      this.byPath.delete(path);
      this.byPath.set(to + path.slice(from.length), inode);
    }
    for (const [ino, path] of this.paths) {
      if (moved(path)) this.paths.set(ino, to + path.slice(from.length));
    }
  }

  private allocate(path: string, etag: string | undefined): PathInode {
    const first = hash32(path);
    let ino = first;
    while (ino <= ROOT_INO || this.paths.has(ino)) ino = (ino + 1) >>> 0;
    const generation = ino === first ? 0 : this.mountGeneration;
    if (generation) this.generations.set(ino, generation);
    const inode = { ino, etag };
    this.byPath.set(path, inode);
    this.paths.set(ino, path);
    return inode;
  }
}
