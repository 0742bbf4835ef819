/**
 * Start-up reconciliation of the index with the files on disk, before anything is served:
 * staging files without a record are deleted, records without a file (or that do not hold
 * together) are dropped, blocks a staging file is too short to hold are no longer staged,
 * open-handle counts (which belonged to the previous process) are reset, and in-flight states
 * settle. Files written through the mount that an older index listed among its entries are
 * handed to the write path, never deleted; when the index was damaged and set aside, files that
 * may be such written data are kept beside it.
 */
import { mkdirSync, renameSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import createDebug from 'debug';
import type { CacheIndex, EntryRecord, LegacyWriteRecord } from './cache-index';
import { entryId, isEntryFileName, type StagedFiles } from './staged-files';
import { StagedObject } from './staged-object';

const debug = createDebug('stagefs:reconcile');
const warn = createDebug('stagefs:warn');

export interface ReconcileReport {
  objects: StagedObject[];
  /** Written files an older index kept here, with the path of their data. */
  legacyWrites: Array<{ record: LegacyWriteRecord; path: string }>;
  orphanFilesDeleted: number;
  missingFilesDropped: number;
}

export interface ReconcileOptions {
  /** Where a damaged index was moved: files it may have listed as written data are kept there. */
  setAside?: string;
}

/** What makes a record unusable, or undefined: the index is on disk, and checked like any input. */
function recordFlaw(record: EntryRecord): string | undefined {
  const { bucket, key, etag } = record;
  if (typeof bucket !== 'string' || typeof key !== 'string' || typeof etag !== 'string') return 'no object identity';
  if (record.id !== entryId(bucket, key, etag)) return 'its id is not its object version';
  if (typeof record.file !== 'string') return 'no staging file name';
  if (!Number.isSafeInteger(record.size) || record.size < 0) return 'no object size';
  if (!Number.isSafeInteger(record.blockSize) || record.blockSize <= 0) return 'no block size';
  if (!(record.blocks instanceof Uint8Array)) return 'no block map';
  if (typeof record.mtime !== 'number' || typeof record.lastAccess !== 'number') return 'no times';
  return undefined;
}

/** The block map of `record` without the blocks that end past `length`, the staging file's. */
function blocksWithin(record: EntryRecord, length: number): Uint8Array {
  const blocks = record.blocks.slice();
  const blockCount = Math.ceil(record.size / record.blockSize);
  for (let block = Math.floor(length / record.blockSize); block < blockCount; block++) blocks[block >> 3] &= ~(1 << (block & 7));
  return blocks;
}

export async function reconcile(index: CacheIndex, files: StagedFiles, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  const onDisk = new Set(files.namesOnDisk());
  const objects: StagedObject[] = [];
  let missingFilesDropped = 0;
  for (const stored of index.entries()) {
    // Records older than per-entry file names named the file by the id.
    const record = { ...stored, file: stored.file ?? stored.id };
    const flaw = recordFlaw(record);
    if (flaw) {
      warn('dropping a record of the cache index (%s): %s', flaw, JSON.stringify(record.key));
      if (typeof record.id === 'string') await index.remove(record.id);
      continue;
    }
    if (!onDisk.has(record.file)) {
      debug('dropping record of %s: its staging file is missing', record.key);
      await index.remove(record.id);
      missingFilesDropped++;
      continue;
    }
    onDisk.delete(record.file);
    const path = files.pathOf(record.file);
    const length = statSync(path).size;
    let blocks = record.blocks;
    if (length < record.size) {
      // Cut short on disk (a crash, an admin, fsck): what is past its end is not staged, whatever the record says.
      blocks = blocksWithin(record, length);
      warn('the staging file of %s holds %d of its %d bytes: the blocks past its end are fetched again', record.key, length, record.size);
    }
    // Sparse up to the object's size, never past it.
    if (length !== record.size) truncateSync(path, record.size);
    const object = StagedObject.fromRecord({ ...record, blocks });
    objects.push(object);
    await index.put(object.toRecord());
  }
  const legacyWrites: ReconcileReport['legacyWrites'] = [];
  for (const record of index.legacyWrites()) {
    if (onDisk.delete(record.id)) legacyWrites.push({ record, path: files.pathOf(record.id) });
    else if (record.dirty) warn('the data of %s, written and not uploaded, is missing from the cache', record.key);
  }
  const keptDir = options.setAside && join(options.setAside, 'staged');
  let kept = 0;
  for (const orphan of onDisk) {
    if (keptDir && !isEntryFileName(orphan)) {
      // An older index listed written data in files like this one: it may be nothing else's.
      mkdirSync(keptDir, { recursive: true, mode: 0o700 });
      renameSync(files.pathOf(orphan), join(keptDir, orphan));
      kept++;
      continue;
    }
    debug('deleting orphan staging file %s', orphan);
    await files.remove(orphan);
  }
  if (kept) warn('kept %d staging files of an older layout, which may hold written data, in %s', kept, keptDir);
  await index.flushed();
  return { objects, legacyWrites, orphanFilesDeleted: onDisk.size - kept, missingFilesDropped };
}
