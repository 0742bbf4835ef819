/** How engines log failed requests: answers like ENOENT quietly, failures always. */
import createDebug from 'debug';
import { errnoCodeOf, errorMessage } from '../errors';

const debug = createDebug('stagefs:fuse');
const logError = createDebug('stagefs:error');

/** Errors that are answers, not failures, and need no log line. */
const QUIET = new Set(['ENOENT', 'EROFS', 'ENOTEMPTY', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENODATA', 'ENOTSUP', 'ENOSYS']);

export function logFailure(op: string, path: string, err: unknown): void {
  const code = errnoCodeOf(err);
  if (QUIET.has(code)) debug('%s %s: %s', op, path, code);
  else logError('%s %s failed (%s): %s', op, path, code, errorMessage(err));
}
