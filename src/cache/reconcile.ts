/**
 * Start-up reconciliation of the index with the files on disk, before anything is served:
 * staging files without a record are deleted, records without a file are dropped, open-handle
 * counts (which belonged to the previous process) are reset, and in-flight states settle.
 * Files written through the mount that an older index listed among its entries are handed to
 * the write path, never deleted.
 */
import { statSync, truncateSync } from 'node:fs';
import createDebug from 'debug';
import type { CacheIndex, LegacyWriteRecord } from './cache-index';
import type { StagedFiles } from './staged-files';
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

export async function reconcile(index: CacheIndex, files: StagedFiles): Promise<ReconcileReport> {
  const onDisk = new Set(files.namesOnDisk());
  const objects: StagedObject[] = [];
  let missingFilesDropped = 0;
  for (const stored of index.entries()) {
    // Records older than per-entry file names named the file by the id.
    const record = { ...stored, file: stored.file ?? stored.id };
    if (!onDisk.has(record.file)) {
      debug('dropping record of %s: its staging file is missing', record.key);
      await index.remove(record.id);
      missingFilesDropped++;
      continue;
    }
    onDisk.delete(record.file);
    const path = files.pathOf(record.file);
    if (statSync(path).size !== record.size) truncateSync(path, record.size);
    const object = StagedObject.fromRecord(record);
    objects.push(object);
    await index.put(object.toRecord());
  }
  const legacyWrites: ReconcileReport['legacyWrites'] = [];
  for (const record of index.legacyWrites()) {
    if (onDisk.delete(record.id)) legacyWrites.push({ record, path: files.pathOf(record.id) });
    else if (record.dirty) warn('the data of %s, written and not uploaded, is missing from the cache', record.key);
  }
  for (const orphan of onDisk) {
    debug('deleting orphan staging file %s', orphan);
    await files.remove(orphan);
  }
  await index.flushed();
  return { objects, legacyWrites, orphanFilesDeleted: onDisk.size, missingFilesDropped };
}
