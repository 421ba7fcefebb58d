/**
 * pxeherd's metric families over prom-client, the Prometheus client most Node services use:
 * it brings the exposition format, and the process and runtime metrics an operator expects
 * (CPU, memory, open files, event-loop lag, GC, heap). This file keeps pxeherd's small
 * interface in front of it: label sets are checked strictly (a missing or extra label is a
 * programming error, where prom-client would let a missing one through), counters refuse to
 * go down, and gauges may be computed at scrape time from the store.
 */
import client from 'prom-client';

export type Labels = Record<string, string>;

/** Label values may hold anything; the format wants \\, \" and \n escaped (prom-client does it). */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Go's strconv-style numbers: +Inf, -Inf, NaN, otherwise JavaScript's shortest form. */
export function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function checkNames(name: string, labelNames: readonly string[]): void {
  if (!NAME_RE.test(name)) throw new Error(`metric name "${name}" is not valid`);
  for (const l of labelNames) {
    if (!LABEL_RE.test(l) || l.startsWith('__') || l === 'le') throw new Error(`label name "${l}" of ${name} is not valid`);
  }
}

/** The label set in declaration order; a missing or extra label is a programming error. */
function checkLabels(name: string, labelNames: readonly string[], labels: Labels = {}): Labels {
  const given = Object.keys(labels);
  if (given.length !== labelNames.length || given.some((k) => !labelNames.includes(k))) {
    throw new Error(`${name} takes labels {${labelNames.join(',')}}, got {${given.join(',')}}`);
  }
  const out: Labels = {};
  for (const n of labelNames) out[n] = String(labels[n]);
  return out;
}

async function valueOf(m: client.Metric<string>, labels: Labels): Promise<number> {
  const got = await m.get();
  const want = JSON.stringify(labels);
  const hit = got.values.find((v) => {
    const l: Labels = {};
    for (const k of Object.keys(labels)) l[k] = String(v.labels[k]);
    return JSON.stringify(l) === want && !('le' in v.labels);
  });
  return hit?.value ?? 0;
}

export class Counter {
  constructor(
    readonly name: string,
    private readonly labelNames: readonly string[],
    private readonly m: client.Counter<string>,
  ) {}

  inc(labels?: Labels, by = 1): void {
    if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${by})`);
    this.m.inc(checkLabels(this.name, this.labelNames, labels), by);
  }

  get(labels?: Labels): Promise<number> {
    return valueOf(this.m, checkLabels(this.name, this.labelNames, labels));
  }
}

/** What a scrape-time gauge callback fills in. */
export interface GaugeSetter {
  set(labels: Labels | undefined, value: number): void;
  inc(labels?: Labels, by?: number): void;
}

export class Gauge implements GaugeSetter {
  constructor(
    readonly name: string,
    private readonly labelNames: readonly string[],
    private readonly m: client.Gauge<string>,
  ) {}

  set(labels: Labels | undefined, value: number): void {
    this.m.set(checkLabels(this.name, this.labelNames, labels), value);
  }

  inc(labels?: Labels, by = 1): void {
    this.m.inc(checkLabels(this.name, this.labelNames, labels), by);
  }

  reset(): void {
    this.m.reset();
  }

  get(labels?: Labels): Promise<number> {
    return valueOf(this.m, checkLabels(this.name, this.labelNames, labels));
  }
}

export class Histogram {
  constructor(
    readonly name: string,
    readonly buckets: readonly number[],
    private readonly labelNames: readonly string[],
    private readonly m: client.Histogram<string>,
  ) {}

  observe(labels: Labels | undefined, value: number): void {
    if (!Number.isFinite(value)) return; // not a duration: never poison _sum
    this.m.observe(checkLabels(this.name, this.labelNames, labels), value);
  }

  async count(labels?: Labels): Promise<number> {
    const l = checkLabels(this.name, this.labelNames, labels);
    const got = await this.m.get();
    const hit = got.values.find((v) => v.metricName === `${this.name}_count` && this.labelNames.every((k) => String(v.labels[k]) === l[k]));
    return hit?.value ?? 0;
  }
}

export interface RegistryOptions {
  /** Labels on every series, e.g. { server: 'boot1' } where several servers report. */
  defaultLabels?: Labels;
  /** prom-client's process and Node.js runtime metrics (default off; the server turns them on). */
  processMetrics?: boolean;
}

export class Registry {
  readonly prom = new client.Registry();

  constructor(opts: RegistryOptions = {}) {
    if (opts.defaultLabels) {
      for (const k of Object.keys(opts.defaultLabels)) checkNames('default_labels', [k]);
      this.prom.setDefaultLabels(opts.defaultLabels);
    }
    if (opts.processMetrics) client.collectDefaultMetrics({ register: this.prom });
  }

  private fresh(name: string, labelNames: readonly string[]): void {
    checkNames(name, labelNames);
    if (this.prom.getSingleMetric(name)) throw new Error(`metric ${name} is registered twice`);
  }

  /**
   * `collect`, when given, reads totals that another part keeps (a server's own counters) at
   * scrape time: `set(labels, total)` for each series.
   */
  counter(name: string, help: string, labelNames: readonly string[] = [], collect?: (set: (labels: Labels | undefined, total: number) => void) => void): Counter {
    this.fresh(name, labelNames);
    let self: Counter | undefined;
    const m: client.Counter<string> = new client.Counter({
      name,
      help,
      labelNames: [...labelNames],
      registers: [this.prom],
      collect: collect
        ? () => {
            m.reset();
            collect((labels, total) => self!.inc(labels, total));
          }
        : undefined,
    });
    self = new Counter(name, labelNames, m);
    return self;
  }

  /** `collect` runs at scrape time and replaces the previous values (computed from the store, not tracked). */
  gauge(name: string, help: string, labelNames: readonly string[] = [], collect?: (g: GaugeSetter) => void): Gauge {
    this.fresh(name, labelNames);
    let self: Gauge | undefined;
    const m = new client.Gauge({
      name,
      help,
      labelNames: [...labelNames],
      registers: [this.prom],
      collect: collect
        ? () => {
            self!.reset();
            collect(self!);
          }
        : undefined,
    });
    self = new Gauge(name, labelNames, m);
    return self;
  }

  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Histogram {
    this.fresh(name, labelNames);
    const b = [...buckets].filter((x) => x !== Infinity).sort((x, y) => x - y);
    if (b.length === 0 || b.some((x, i) => !Number.isFinite(x) || (i > 0 && x === b[i - 1]))) throw new Error(`${name}: buckets must be distinct finite numbers`);
    return new Histogram(name, b, labelNames, new client.Histogram({ name, help, labelNames: [...labelNames], buckets: b, registers: [this.prom] }));
  }

  /** The whole exposition, families in registration order. */
  render(): Promise<string> {
    return this.prom.metrics();
  }
}

export const CONTENT_TYPE = client.Registry.PROMETHEUS_CONTENT_TYPE;
