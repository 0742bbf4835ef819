/**
 * Start-up reconciliation of the index with the files on disk, before anything is served:
 * staging files without a record are deleted, records without a file are dropped, open-handle
 * counts (which belonged to the previous process) are reset, and in-flight states settle.
 */
import { statSync, truncateSync } from 'node:fs';
import createDebug from 'debug';
import type { CacheIndex, EntryRecord } from './cache-index';
import type { StagedFiles } from './staged-files';
import { StagedObject } from './staged-object';

const debug = createDebug('stagefs:reconcile');
const warn = createDebug('stagefs:warn');

export interface ReconcileReport {
  objects: StagedObject[];
  /** Working copies, with their size on disk (records lag behind writes). */
  working: Array<{ record: EntryRecord; size: number }>;
  orphanFilesDeleted: number;
  missingFilesDropped: number;
}

export async function reconcile(index: CacheIndex, files: StagedFiles): Promise<ReconcileReport> {
  const onDisk = new Set(files.idsOnDisk());
  const objects: StagedObject[] = [];
  const working: ReconcileReport['working'] = [];
  let missingFilesDropped = 0;
  for (const record of index.entries()) {
    if (!onDisk.has(record.id)) {
      if (record.dirty) warn('staging file of %s is gone with data not yet uploaded', record.key);
      debug('dropping record of %s: its staging file is missing', record.key);
      await index.remove(record.id);
      missingFilesDropped++;
      continue;
    }
    onDisk.delete(record.id);
    const path = files.pathOf(record.id);
    if (record.working) {
      working.push({ record, size: statSync(path).size });
      continue;
    }
    if (statSync(path).size !== record.size) truncateSync(path, record.size);
    const object = StagedObject.fromRecord(record);
    objects.push(object);
    await index.put(object.toRecord());
  }
  for (const orphan of onDisk) {
    debug('deleting orphan staging file %s', orphan);
    await files.remove(orphan);
  }
  await index.flushed();
  return { objects, working, orphanFilesDeleted: onDisk.size, missingFilesDropped };
}
