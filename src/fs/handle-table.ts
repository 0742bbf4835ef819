/** Open file handles by number, as FUSE hands them back on read and release. */
import { FsError } from '../errors';

const MAX_HANDLE = 0x7fffffff;

export class HandleTable<T> {
  private readonly open = new Map<number, T>();
  private next = 1;

  add(value: T): number {
    while (this.open.has(this.next)) this.advance();
    const fh = this.next;
    this.advance();
    this.open.set(fh, value);
    return fh;
  }

  get(fh: number): T {
    const value = this.open.get(fh);
    if (value === undefined) throw new FsError('EBADF', `no open handle ${fh}`);
    return value;
  }

  remove(fh: number): T {
    const value = this.get(fh);
    this.open.delete(fh);
    return value;
  }

  get size(): number {
    return this.open.size;
  }

  values(): IterableIterator<T> {
    return this.open.values();
  }

  entries(): IterableIterator<[number, T]> {
    return this.open.entries();
  }

  private advance(): void {
    this.next = this.next >= MAX_HANDLE ? 1 : this.next + 1;
  }
}
