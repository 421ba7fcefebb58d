/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for tests: it rejects
 * what a Prometheus server would (bad names, unescaped label values, samples without a TYPE,
 * duplicate series, non-cumulative buckets, +Inf bucket != _count) and returns the samples.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*';
// Prometheus parses values with Go's ParseFloat: NaN and Inf in any letter case (prom-client writes "Nan").
const VALUE_RE = /^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]inf|nan)$/i;

function parseLabels(text: string, line: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  const labelRe = new RegExp(`^(${LABEL})="`);
  while (i < text.length) {
    const m = labelRe.exec(text.slice(i));
    if (!m) throw new Error(`line ${line}: bad label at "${text.slice(i)}"`);
    i += m[0].length;
    let v = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (c === '\\') {
        const n = text[i + 1];
        if (n === 'n') v += '\n';
        else if (n === '\\' || n === '"') v += n;
        else throw new Error(`line ${line}: bad escape \\${n}`);
        i += 2;
      } else if (c === '"') {
        i++;
        break;
      } else if (c === '\n') throw new Error(`line ${line}: raw newline in label value`);
      else {
        v += c;
        i++;
      }
    }
    if (m[1]! in out) throw new Error(`line ${line}: label ${m[1]} repeated`);
    out[m[1]!] = v;
    if (text[i] === ',') i++;
    else if (i < text.length) throw new Error(`line ${line}: expected , between labels`);
  }
  return out;
}

export function parseExposition(text: string): Sample[] {
  if (text.length && !text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const lines = text.split('\n').slice(0, -1);
  lines.forEach((l, idx) => {
    const n = idx + 1;
    if (l.startsWith('# HELP ')) {
      const m = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(l);
      if (!m) throw new Error(`line ${n}: bad HELP`);
      if (helps.has(m[1]!)) throw new Error(`line ${n}: second HELP for ${m[1]}`);
      helps.add(m[1]!);
      return;
    }
    if (l.startsWith('# TYPE ')) {
      const m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(l);
      if (!m) throw new Error(`line ${n}: bad TYPE "${l}"`);
      if (types.has(m[1]!)) throw new Error(`line ${n}: second TYPE for ${m[1]}`);
      types.set(m[1]!, m[2]!);
      return;
    }
    // The format ignores empty lines (prom-client separates families with one).
    if (l.startsWith('#') || l === '') return;
    const m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`).exec(l);
    if (!m) throw new Error(`line ${n}: not a sample: "${l}"`);
    const [, name, lbl, val] = m;
    if (!VALUE_RE.test(val!)) throw new Error(`line ${n}: bad value "${val}"`);
    const family = types.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, '');
    const type = types.get(family);
    if (!type) throw new Error(`line ${n}: sample ${name} before its TYPE`);
    if (family !== name && type !== 'histogram' && type !== 'summary') throw new Error(`line ${n}: ${name} suffix on a ${type}`);
    const labels = lbl ? parseLabels(lbl, n) : {};
    if (type === 'histogram' && name!.endsWith('_bucket') && labels.le === undefined) throw new Error(`line ${n}: bucket without le`);
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (seen.has(key)) throw new Error(`line ${n}: duplicate series ${key}`);
    seen.add(key);
    if (type === 'counter' && !(Number(val) >= 0)) throw new Error(`line ${n}: negative counter`);
    samples.push({ name: name!, labels, value: val === '+Inf' ? Infinity : val === '-Inf' ? -Infinity : Number(val) });
  });
  // Histograms: buckets cumulative, +Inf present and equal to _count.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const groups = new Map<string, Sample[]>();
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels;
      void le;
      const k = JSON.stringify(Object.entries(rest).sort());
      groups.set(k, [...(groups.get(k) ?? []), s]);
    }
    for (const [k, buckets] of groups) {
      const sorted = [...buckets].sort((a, b) => Number(a.labels.le === '+Inf' ? Infinity : a.labels.le) - Number(b.labels.le === '+Inf' ? Infinity : b.labels.le));
      for (let i = 1; i < sorted.length; i++) if (sorted[i]!.value < sorted[i - 1]!.value) throw new Error(`${family}${k}: buckets not cumulative`);
      const inf = sorted.find((b) => b.labels.le === '+Inf');
      if (!inf) throw new Error(`${family}${k}: no +Inf bucket`);
      const count = samples.find((s) => s.name === `${family}_count` && JSON.stringify(Object.entries(s.labels).sort()) === k);
      if (!count || count.value !== inf.value) throw new Error(`${family}${k}: +Inf bucket ${inf.value} != _count ${count?.value}`);
    }
  }
  return samples;
}

export function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
