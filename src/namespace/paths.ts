/**
 * The mapping between paths inside the mount and object keys, and which key names can be shown.
 * A path is absolute inside the mount ("/", "/a/b"); the prefix is "" or ends in "/".
 */
import { FsError } from '../errors';

const MAX_NAME_BYTES = 255;

export function keyOf(prefix: string, path: string): string {
  return prefix + path.slice(1);
}

/** The key prefix that lists a directory's children. */
export function dirPrefixOf(prefix: string, path: string): string {
  return path === '/' ? prefix : prefix + path.slice(1) + '/';
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Whether a key segment can be a file name: POSIX forbids empty, '.', '..', NUL and over-long names. */
export function isShowableName(name: string): boolean {
  return (
    name.length > 0 &&
    name !== '.' &&
    name !== '..' &&
    !name.includes('\0') &&
    Buffer.byteLength(name, 'utf8') <= MAX_NAME_BYTES
  );
}

/** Checks a path the kernel (or a user) hands us before it becomes a key. */
export function checkPath(path: string): void {
  if (!path.startsWith('/')) throw new FsError('EINVAL', `not an absolute path: ${path}`);
  if (path === '/') return;
  for (const name of path.slice(1).split('/')) {
    if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) throw new FsError('ENAMETOOLONG');
    if (!isShowableName(name)) throw new FsError('ENOENT', `not a valid path: ${path}`);
  }
}
