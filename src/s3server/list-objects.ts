/**
 * A correct ListObjects for s3rver's filesystem store. s3rver 3.7 prunes its directory walk at
 * the delimiter before it has seen any key there, so a prefix holding only deeper keys
 * ("template/" over "template/tmpl/2/x") is never reported, and a page of only common prefixes
 * crashes its continuation token. This walk reports such prefixes after finding one object
 * beneath them, and always ends a truncated page on an object key, which the token is made from.
 */
import { readdirSync, type Dirent } from 'node:fs';
import { join } from 'node:path';

const OBJECT_SUFFIX = '._S3rver_object';

export interface ListRequest {
  delimiter?: string;
  startAfter?: string;
  prefix?: string;
  maxKeys?: number;
}

export interface ListResult {
  keys: string[];
  commonPrefixes: string[];
  isTruncated: boolean;
}

function entries(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
}

/** Whether any object lies below `dir`; stops at the first one. */
function holdsObject(dir: string): boolean {
  for (const entry of entries(dir)) {
    if (entry.isDirectory() ? holdsObject(join(dir, entry.name)) : entry.name.endsWith(OBJECT_SUFFIX)) return true;
  }
  return false;
}

export function listKeys(bucketPath: string, request: ListRequest): ListResult {
  const { delimiter = '', startAfter = '', prefix = '', maxKeys = Infinity } = request;
  const keys = new Set<string>();
  const prefixes = new Set<string>();

  // A key or directory path (relative, '/'-separated) decides what to do with it.
  const visit = (dir: string, keyPath: string) => {
    for (const entry of entries(dir)) {
      if (entry.isDirectory()) {
        const dirKey = keyPath + entry.name + '/';
        if (!dirKey.startsWith(prefix) && !prefix.startsWith(dirKey)) continue;
        const cut = delimiter && dirKey.length > prefix.length ? dirKey.indexOf(delimiter, prefix.length) : -1;
        if (cut !== -1) {
          // Everything below lies under one common prefix: one object proves it, no need to walk on.
          const common = dirKey.slice(0, cut + delimiter.length);
          if (!prefixes.has(common) && holdsObject(join(dir, entry.name))) prefixes.add(common);
          continue;
        }
        visit(join(dir, entry.name), dirKey);
      } else if (entry.name.endsWith(OBJECT_SUFFIX)) {
        const key = keyPath + entry.name.slice(0, -OBJECT_SUFFIX.length);
        if (!key.startsWith(prefix)) continue;
        const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
        if (cut !== -1) prefixes.add(key.slice(0, cut + delimiter.length));
        else keys.add(key);
      }
    }
  };
  visit(bucketPath, '');

  const items = [
    ...[...keys].map((name) => ({ name, isKey: true })),
    ...[...prefixes].map((name) => ({ name, isKey: false })),
  ]
    .filter((item) => item.name > startAfter)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const result: ListResult = { keys: [], commonPrefixes: [], isTruncated: false };
  for (let i = 0; i < items.length; i++) {
    const item = items[i];
    (item.isKey ? result.keys : result.commonPrefixes).push(item.name);
    if (item.isKey && result.keys.length >= maxKeys && i + 1 < items.length) {
      result.isTruncated = true;
      break;
    }
  }
  return result;
}
