import { InvalidInput } from './mac.js';
import { nameError } from './names.js';

/**
 * Perceus-style node naming: a pattern such as `n####` is a prefix, a run of `#` (the
 * zero-padded width of the number) and a suffix. New nodes take the first free number at or
 * after `first_number`, so a deleted node's name is reused before the range grows.
 */
export interface NamePattern {
  prefix: string;
  width: number;
  suffix: string;
}

export function parseNamePattern(pattern: string): NamePattern {
  const m = /^([^#]*)(#+)([^#]*)$/.exec(pattern);
  if (!m) throw new InvalidInput(`name pattern "${pattern}" must hold one run of # for the number, e.g. n####`, 'nodes.name_pattern');
  const p = { prefix: m[1]!, width: m[2]!.length, suffix: m[3]! };
  const err = nameError('node', formatName(p, 0));
  if (err) throw new InvalidInput(`name pattern "${pattern}" makes invalid names: ${err}`, 'nodes.name_pattern');
  return p;
}

export function formatName(p: NamePattern, n: number): string {
  return `${p.prefix}${String(n).padStart(p.width, '0')}${p.suffix}`;
}

/** The number a name carries under the pattern, or undefined if the name is not of the pattern. */
export function numberOf(p: NamePattern, name: string): number | undefined {
  if (!name.startsWith(p.prefix) || !name.endsWith(p.suffix)) return undefined;
  const digits = name.slice(p.prefix.length, name.length - p.suffix.length);
  if (!/^\d+$/.test(digits)) return undefined;
  // n01 and n001 are different names; only the canonical spelling occupies the number.
  const n = Number(digits);
  return formatName(p, n) === name ? n : undefined;
}

/** First free number >= first among the names in use. Pure: the store calls it inside its write transaction. */
export function firstFreeNumber(p: NamePattern, first: number, usedNames: Iterable<string>): number {
  const used = new Set<number>();
  for (const name of usedNames) {
    const n = numberOf(p, name);
    if (n !== undefined && n >= first) used.add(n);
  }
  let n = first;
  while (used.has(n)) n++;
  return n;
}
