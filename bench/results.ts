/** What a run measured, and the ratios the report is about. */
import type { DataSetShape } from './datasets';
import type { JobName, Unit } from './jobs';
import type { Scale } from './options';
import { PEERS, type SystemName } from './systems';

/**
 * Cold: the first run on a fresh mount with an empty cache; warm: the same job again on that
 * mount; remounted: again after the system was unmounted and mounted on the same cache dir (a
 * restart of the daemon, a reboot), where stagefs checks each staged block once before serving it.
 */
export type Phase = 'cold' | 'warm' | 'remounted';
export const PHASES: readonly Phase[] = ['cold', 'warm', 'remounted'];

export type Measurement = Partial<Record<Phase, number>> & { error?: string };

export interface JobResult {
  name: JobName;
  title: string;
  unit: Unit;
  higherIsBetter: boolean;
  phases: readonly Phase[];
  bySystem: Partial<Record<SystemName, Measurement>>;
}

export interface SystemResult {
  label: string;
  peakRssBytes?: number;
  error?: string;
}

export interface BenchResults {
  date: string;
  host: string;
  machine: Record<string, string>;
  scale: Scale;
  shape: DataSetShape;
  command: string;
  pageCacheDropped: boolean;
  seconds: number;
  systems: Partial<Record<SystemName, SystemResult>>;
  jobs: JobResult[];
}

/**
 * The limits each phase is compared with: cold runs cannot beat the store (the better of the
 * two raw clients), warm and remounted ones the disk.
 */
export const LIMITS_OF: Record<Phase, readonly SystemName[]> = { cold: ['raw-s3', 'raw-s3-curl'], warm: ['local-disk'], remounted: ['local-disk'] };

/** How many times better `value` is than `other` (> 1: better), whichever way the unit goes. */
export function advantage(job: JobResult, value: number | undefined, other: number | undefined): number | undefined {
  if (value === undefined || other === undefined || value <= 0 || other <= 0) return undefined;
  return job.higherIsBetter ? value / other : other / value;
}

function best(job: JobResult, phase: Phase, systems: readonly SystemName[]): { system: SystemName; value: number } | undefined {
  let best: { system: SystemName; value: number } | undefined;
  for (const system of systems) {
    const value = job.bySystem[system]?.[phase];
    if (value === undefined) continue;
    if (!best || (job.higherIsBetter ? value > best.value : value < best.value)) best = { system, value };
  }
  return best;
}

export function bestPeer(job: JobResult, phase: Phase): { system: SystemName; value: number } | undefined {
  return best(job, phase, PEERS);
}

export function limit(job: JobResult, phase: Phase): { system: SystemName; value: number } | undefined {
  return best(job, phase, LIMITS_OF[phase]);
}

export function stagefsVsBestPeer(job: JobResult, phase: Phase): number | undefined {
  return advantage(job, job.bySystem.stagefs?.[phase], bestPeer(job, phase)?.value);
}

/** stagefs as a share of the limit: 1 is the limit itself. */
export function stagefsVsLimit(job: JobResult, phase: Phase): number | undefined {
  return advantage(job, job.bySystem.stagefs?.[phase], limit(job, phase)?.value);
}
