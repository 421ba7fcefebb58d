/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
 * text exposition format (version 0.0.4). Hand-written because pxeherd needs a dozen series,
 * not a client library; the format rules that matter (escaping, cumulative buckets, +Inf,
 * _sum/_count, one HELP/TYPE per family) are all here and pinned by tests.
 */

export type Labels = Record<string, string>;

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Label values may hold anything; the format wants \\, \" and \n escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escapes only backslash and newline. */
function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** Go's strconv-style numbers: +Inf, -Inf, NaN, otherwise JavaScript's shortest form. */
export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

function labelString(names: readonly string[], values: readonly string[], extra?: [string, string]): string {
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i]!)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!NAME_RE.test(name)) throw new Error(`metric name "${name}" is not valid`);
    for (const l of labelNames) {
      if (!LABEL_RE.test(l) || l.startsWith('__') || l === 'le') throw new Error(`label name "${l}" of ${name} is not valid`);
    }
  }
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  abstract samples(): string[];

  /** Label values in declaration order; a missing or extra label is a programming error. */
  protected key(labels: Labels = {}): { key: string; values: string[] } {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || given.some((k) => !this.labelNames.includes(k))) {
      throw new Error(`${this.name} takes labels {${this.labelNames.join(',')}}, got {${given.join(',')}}`);
    }
    const values = this.labelNames.map((n) => String(labels[n]));
    return { key: JSON.stringify(values), values };
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()];
    return lines.join('\n') + '\n';
  }
}

/** Counters and gauges: one number per label set. */
abstract class ValueMetric extends Metric {
  protected values = new Map<string, { labels: string[]; value: number }>();

  protected add(labels: Labels | undefined, by: number): void {
    const { key, values } = this.key(labels);
    const cur = this.values.get(key);
    if (cur) cur.value += by;
    else this.values.set(key, { labels: values, value: by });
  }

  get(labels?: Labels): number {
    return this.values.get(this.key(labels).key)?.value ?? 0;
  }

  samples(): string[] {
    // An unlabelled series reads 0 before its first value, so dashboards see it.
    if (this.values.size === 0 && this.labelNames.length === 0) return [`${this.name} 0`];
    return [...this.values.values()].map((v) => `${this.name}${labelString(this.labelNames, v.labels)} ${formatValue(v.value)}`);
  }
}

export class Counter extends ValueMetric {
  readonly type = 'counter' as const;

  inc(labels?: Labels, by = 1): void {
    if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${by})`);
    this.add(labels, by);
  }
}

export class Gauge extends ValueMetric {
  readonly type = 'gauge' as const;

  /** `collect` runs at scrape time (values computed from the store, not tracked). */
  constructor(name: string, help: string, labelNames: readonly string[] = [], private readonly collect?: (g: Gauge) => void) {
    super(name, help, labelNames);
  }

  set(labels: Labels | undefined, value: number): void {
    const { key, values } = this.key(labels);
    this.values.set(key, { labels: values, value });
  }

  inc(labels?: Labels, by = 1): void {
    this.add(labels, by);
  }

  reset(): void {
    this.values = new Map();
  }

  override samples(): string[] {
    if (this.collect) {
      this.reset();
      this.collect(this);
    }
    return super.samples();
  }
}

export class Histogram extends Metric {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];
  private readonly series = new Map<string, { labels: string[]; counts: number[]; sum: number; count: number }>();

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    const b = [...buckets].filter((x) => x !== Infinity).sort((x, y) => x - y);
    if (b.length === 0 || b.some((x, i) => !Number.isFinite(x) || (i > 0 && x === b[i - 1]))) throw new Error(`${name}: buckets must be distinct finite numbers`);
    this.buckets = b;
  }

  observe(labels: Labels | undefined, value: number): void {
    if (!Number.isFinite(value)) return;
    const { key, values } = this.key(labels);
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = { labels: values, counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    // Stored per bucket; made cumulative when rendered.
    const i = this.buckets.findIndex((b) => value <= b);
    if (i >= 0) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  count(labels?: Labels): number {
    return this.series.get(this.key(labels).key)?.count ?? 0;
  }

  samples(): string[] {
    const out: string[] = [];
    for (const s of this.series.values()) {
      let acc = 0;
      this.buckets.forEach((b, i) => {
        acc += s.counts[i]!;
        out.push(`${this.name}_bucket${labelString(this.labelNames, s.labels, ['le', formatValue(b)])} ${acc}`);
      });
      out.push(`${this.name}_bucket${labelString(this.labelNames, s.labels, ['le', '+Inf'])} ${s.count}`);
      out.push(`${this.name}_sum${labelString(this.labelNames, s.labels)} ${formatValue(s.sum)}`);
      out.push(`${this.name}_count${labelString(this.labelNames, s.labels)} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  private readonly metrics = new Map<string, Metric>();

  private add<M extends Metric>(m: M): M {
    if (this.metrics.has(m.name)) throw new Error(`metric ${m.name} is registered twice`);
    this.metrics.set(m.name, m);
    return m;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = [], collect?: (g: Gauge) => void): Gauge {
    return this.add(new Gauge(name, help, labelNames, collect));
  }

  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  get(name: string): Metric | undefined {
    return this.metrics.get(name);
  }

  /** The whole exposition, families in registration order. */
  render(): string {
    return [...this.metrics.values()].map((m) => m.render()).join('');
  }
}

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
