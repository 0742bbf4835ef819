/**
 * Metrics in the Prometheus text exposition format (version 0.0.4): counters and histograms
 * kept here, gauges and counters read from their owners when scraped.
 */

export type Labels = Record<string, string>;

type Sample = { labels: Labels; value: number };

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  samples(): Sample[];
}

function labelKey(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  return entries.length ? `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
}

function formatValue(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return Number.isNaN(value) ? 'NaN' : String(value);
}

/** A counter this process increments. */
export class Counter {
  private readonly values = new Map<string, Sample>();

  inc(labels: Labels = {}, amount = 1): void {
    const key = labelKey(labels);
    const sample = this.values.get(key);
    if (sample) sample.value += amount;
    else this.values.set(key, { labels, value: amount });
  }

  samples(): Sample[] {
    return [...this.values.values()];
  }
}

interface HistogramSeries {
  labels: Labels;
  /** Observations at or below each bound (not cumulative until rendered). */
  counts: number[];
  sum: number;
  count: number;
}

/** Observations (latencies in seconds) counted into fixed buckets. */
export class Histogram {
  private readonly series = new Map<string, HistogramSeries>();

  constructor(readonly bounds: readonly number[]) {}

  observe(labels: Labels, value: number): void {
    const key = labelKey(labels);
    let series = this.series.get(key);
    if (!series) this.series.set(key, (series = { labels, counts: this.bounds.map(() => 0), sum: 0, count: 0 }));
    const bucket = this.bounds.findIndex((bound) => value <= bound);
    if (bucket >= 0) series.counts[bucket]++;
    series.sum += value;
    series.count++;
  }

  /** Samples of `name`_bucket, _sum and _count, with cumulative buckets as the format wants. */
  render(name: string): string[] {
    const lines: string[] = [];
    for (const series of this.series.values()) {
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += series.counts[i];
        lines.push(`${name}_bucket${formatLabels({ ...series.labels, le: formatValue(bound) })} ${cumulative}`);
      });
      lines.push(`${name}_bucket${formatLabels({ ...series.labels, le: '+Inf' })} ${series.count}`);
      lines.push(`${name}_sum${formatLabels(series.labels)} ${series.sum}`);
      lines.push(`${name}_count${formatLabels(series.labels)} ${series.count}`);
    }
    return lines;
  }
}

type Reading = number | Sample[];

export class Registry {
  private readonly families: Family[] = [];
  private readonly histograms = new Map<string, Histogram>();

  /** A counter whose value is read from its owner at each scrape. */
  counterFrom(name: string, help: string, read: () => Reading): void {
    this.add(name, help, 'counter', read);
  }

  gauge(name: string, help: string, read: () => Reading): void {
    this.add(name, help, 'gauge', read);
  }

  counter(name: string, help: string): Counter {
    const counter = new Counter();
    this.add(name, help, 'counter', () => counter.samples());
    return counter;
  }

  histogram(name: string, help: string, bounds: readonly number[]): Histogram {
    const histogram = new Histogram(bounds);
    this.families.push({ name, help, type: 'histogram', samples: () => [] });
    this.histograms.set(name, histogram);
    return histogram;
  }

  render(): string {
    const lines: string[] = [];
    for (const family of this.families) {
      lines.push(`# HELP ${family.name} ${family.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
      lines.push(`# TYPE ${family.name} ${family.type}`);
      const histogram = this.histograms.get(family.name);
      if (histogram) lines.push(...histogram.render(family.name));
      else for (const sample of family.samples()) lines.push(`${family.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`);
    }
    return lines.join('\n') + '\n';
  }

  private add(name: string, help: string, type: Family['type'], read: () => Reading): void {
    this.families.push({
      name,
      help,
      type,
      samples: () => {
        const reading = read();
        return typeof reading === 'number' ? [{ labels: {}, value: reading }] : reading;
      },
    });
  }
}
