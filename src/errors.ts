/**
 * Typed errors of every layer, and the one place where they become errno values for FUSE.
 */
import { constants } from 'node:os';

export type ErrnoCode =
  | 'EPERM'
  | 'ENOENT'
  | 'EIO'
  | 'EBADF'
  | 'EACCES'
  | 'EBUSY'
  | 'EEXIST'
  | 'EXDEV'
  | 'ENOTDIR'
  | 'EISDIR'
  | 'EINVAL'
  | 'EFBIG'
  | 'ENOSPC'
  | 'EROFS'
  | 'ENAMETOOLONG'
  | 'ENOTEMPTY'
  | 'ENOTSUP'
  | 'ENODATA'
  | 'ENOSYS'
  | 'ETXTBSY'
  | 'ETIMEDOUT'
  | 'ESTALE';

/** A filesystem operation's failure, carrying the errno the caller will see. */
export class FsError extends Error {
  constructor(
    readonly code: ErrnoCode,
    message: string = code,
  ) {
    super(message);
    this.name = 'FsError';
  }
}

export type StoreErrorKind =
  | 'NotFound'
  | 'NoSuchBucket'
  | 'AccessDenied'
  | 'InvalidCredentials'
  | 'PreconditionFailed'
  | 'InvalidRange'
  | 'Unreachable'
  | 'Timeout'
  | 'Server'
  /** An answer other than the one asked for (status, range, length, ETag): never used as data. */
  | 'BadResponse';

/** A failure of the object store, classified so callers can decide without parsing messages. */
export class StoreError extends Error {
  constructor(
    readonly kind: StoreErrorKind,
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

/** Bad command line or configuration: printed as one line with the usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A command that cannot proceed for a reason the user can act on: printed as one line. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}

const STORE_ERRNO: Record<StoreErrorKind, ErrnoCode> = {
  NotFound: 'ENOENT',
  NoSuchBucket: 'EIO',
  AccessDenied: 'EACCES',
  InvalidCredentials: 'EACCES',
  PreconditionFailed: 'EIO',
  InvalidRange: 'EIO',
  Unreachable: 'EIO',
  Timeout: 'EIO',
  Server: 'EIO',
  BadResponse: 'EIO',
};

const NODE_CODES = new Set<string>(['ENOENT', 'EACCES', 'EBADF', 'EEXIST', 'ENOTDIR', 'EISDIR', 'EFBIG']);

/** Whether a local I/O error means the disk (or the user's quota on it) is full. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** The errno code any thrown value maps to; unknown failures are EIO. */
export function errnoCodeOf(err: unknown): ErrnoCode {
  if (err instanceof FsError) return err.code;
  if (err instanceof StoreError) return STORE_ERRNO[err.kind];
  if (isDiskFull(err)) return 'ENOSPC';
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && NODE_CODES.has(code)) return code as ErrnoCode;
  return 'EIO';
}

/** The errno number of any thrown value. */
export function errnoOf(err: unknown): number {
  return constants.errno[errnoCodeOf(err)];
}

/** The negative errno number fuse-native's callbacks carry. */
export function negativeErrno(err: unknown): number {
  return -errnoOf(err);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
