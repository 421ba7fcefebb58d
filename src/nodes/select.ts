import { InvalidInput } from './mac.js';
import { parseMac } from './mac.js';
import type { Node } from './types.js';
import { parseQuery, evalQuery, looksLikeQuery, type Query, type QueryContext } from './query.js';

/**
 * NODES arguments: names, globs (n00*, n0?1), Perceus ranges (n00[00-15,20]), MACs, and
 * clusto-style query expressions (group:compute and attr:rack,r12 and not state:ready).
 */

const RANGE_BODY = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/** Expand Perceus ranges: n00[00-03,20] -> n0000 n0001 n0002 n0003 n0020. Zero padding follows the bound's width. */
export function expandRange(pattern: string): string[] {
  const m = /\[([^\]]*)\]/.exec(pattern);
  if (!m || !RANGE_BODY.test(m[1]!)) return [pattern];
  const before = pattern.slice(0, m.index);
  const after = pattern.slice(m.index + m[0].length);
  const out: string[] = [];
  for (const part of m[1]!.split(',')) {
    const [a, b = a] = part.split('-') as [string, string?];
    const lo = Number(a);
    const hi = Number(b);
    if (hi < lo) throw new InvalidInput(`range "${part}" in "${pattern}" runs backwards`);
    if (hi - lo > 100000) throw new InvalidInput(`range "${part}" in "${pattern}" is too large (over 100000 names)`);
    const width = a.length;
    for (let n = lo; n <= hi; n++) {
      for (const rest of expandRange(before + String(n).padStart(width, '0') + after)) out.push(rest);
    }
  }
  return out;
}

/** Shell-style glob to a RegExp: * ? and [abc] classes; everything else literal. */
export function globToRegExp(glob: string, flags = ''): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end > i + 1) {
        let body = glob.slice(i + 1, end);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += '[' + body.replace(/\\/g, '\\\\') + ']';
        i = end;
      } else re += '\\[';
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp('^' + re + '$', flags);
}

export function isGlob(s: string): boolean {
  return /[*?[]/.test(s);
}

export type Selector =
  | { kind: 'query'; query: Query; text: string }
  | { kind: 'names'; patterns: { text: string; exact?: string; mac?: string; re?: RegExp }[] };

/** Parse NODES arguments once; throws InvalidInput (usage error) pointing at the bad token. */
export function parseSelector(args: string[]): Selector {
  if (args.length === 0) throw new InvalidInput('no nodes given: name nodes, globs (n00*), ranges (n00[00-15]) or a query (group:compute)');
  const text = args.join(' ');
  if (looksLikeQuery(args)) return { kind: 'query', query: parseQuery(text), text };
  const patterns: { text: string; exact?: string; mac?: string; re?: RegExp }[] = [];
  for (const arg of args) {
    // A MAC names a node too; a node may also be literally named like one, so both are tried.
    const mac = parseMac(arg);
    if (mac.ok) {
      patterns.push({ text: arg, exact: arg, mac: mac.mac });
      continue;
    }
    for (const name of expandRange(arg)) {
      if (isGlob(name)) patterns.push({ text: arg, re: globToRegExp(name) });
      else patterns.push({ text: arg, exact: name });
    }
  }
  return { kind: 'names', patterns };
}

export function matches(sel: Selector, node: Node, ctx: QueryContext = {}): boolean {
  if (sel.kind === 'query') return evalQuery(sel.query, node, ctx);
  for (const p of sel.patterns) {
    if (p.mac !== undefined && p.mac === node.mac) return true;
    if (p.exact !== undefined && p.exact === node.name) return true;
    if (p.re && p.re.test(node.name)) return true;
  }
  return false;
}

/**
 * Select nodes. With `requireAll`, an exact name or MAC that matches no node is an error
 * (set/delete must not silently do nothing for a typo); globs and queries may match none.
 */
export function selectNodes(sel: Selector, nodes: Node[], opts: { requireAll?: boolean; ctx?: QueryContext } = {}): Node[] {
  const out = nodes.filter((n) => matches(sel, n, opts.ctx));
  if (opts.requireAll && sel.kind === 'names') {
    const names = new Set(nodes.map((n) => n.name));
    const macs = new Set(nodes.map((n) => n.mac));
    for (const p of sel.patterns) {
      if (p.mac !== undefined) {
        if (!macs.has(p.mac) && !names.has(p.exact!)) throw new NotFound(`no node with MAC ${p.mac}`);
      } else if (p.exact !== undefined && !names.has(p.exact)) throw new NotFound(`no node named "${p.exact}"`);
    }
  }
  return out;
}

/** Something named does not exist: CLI exit 1, API 404. */
export class NotFound extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotFound';
  }
}
