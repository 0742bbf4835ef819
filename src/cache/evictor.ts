/**
 * Decides what leaves the cache: entries idle past the maximum age, and least recently used
 * entries when space is needed or the high watermark is crossed. Only evictable entries are
 * considered: never one with open handles, a fetch in flight, a pin or unuploaded data.
 * Choosing and starting a removal is synchronous, so reserving space never waits on disk I/O.
 */
import type { CacheConfig } from '../config';
import type { SpaceLedger } from './space-ledger';
import type { StagedObject } from './staged-object';

export interface EvictorDeps {
  config: Pick<CacheConfig, 'maxAgeMs' | 'highWatermark' | 'lowWatermark'>;
  ledger: SpaceLedger;
  entries: () => Iterable<StagedObject>;
  /** Starts removing an entry; its staged bytes leave the ledger at once. */
  evict: (object: StagedObject, reason: string) => void;
  now: () => number;
}

export class Evictor {
  constructor(private readonly deps: EvictorDeps) {}

  /** Evicts entries idle for longer than the maximum age; returns how many. */
  sweepAged(): number {
    const { maxAgeMs } = this.deps.config;
    if (maxAgeMs <= 0) return 0;
    const cutoff = this.deps.now() - maxAgeMs;
    let evicted = 0;
    for (const object of [...this.deps.entries()]) {
      if (object.evictable && object.lastAccess < cutoff) {
        this.deps.evict(object, 'idle');
        evicted++;
      }
    }
    return evicted;
  }

  /** Frees space until `bytes` more fit in the cache; false when not enough can be freed. */
  makeRoom(bytes: number): boolean {
    const { ledger } = this.deps;
    if (ledger.used + bytes <= ledger.capacity) return true;
    // Aim below the high watermark, so the next faults do not each evict again.
    this.evictDownTo(Math.min(ledger.capacity * this.deps.config.lowWatermark, ledger.capacity - bytes));
    return ledger.used + bytes <= ledger.capacity;
  }

  /** Past the high watermark, evicts down to the low watermark. */
  enforceWatermarks(): void {
    const { ledger, config } = this.deps;
    if (ledger.used > ledger.capacity * config.highWatermark) this.evictDownTo(ledger.capacity * config.lowWatermark);
  }

  /** Evicts least recently used entries (older versions first) until `used` is at most `target`. */
  private evictDownTo(target: number): void {
    const { ledger } = this.deps;
    const candidates = [...this.deps.entries()]
      .filter((object) => object.evictable && object.stagedBytes > 0)
      .sort((a, b) => Number(b.superseded) - Number(a.superseded) || a.lastAccess - b.lastAccess);
    for (const object of candidates) {
      if (ledger.used <= target) break;
      this.deps.evict(object, 'capacity');
    }
  }
}
