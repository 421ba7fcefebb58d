import { InvalidInput } from './mac.js';
import type { Node } from './types.js';
import { parseMac } from './mac.js';
import { resolveVnfsRef } from '../images/resolve.js';

/**
 * clusto-style query expressions over nodes:
 *   group:compute and attr:rack,r12 and not (state:ready or name:n00*)
 * Terms are `key:value`; values are globs. `attr:KEY` tests presence, `attr:KEY,VALUE` the
 * value, and `attr:KEY>=N` (also > < <= = !=) compares numbers. `hw:` does the same on the
 * node's hardware facts when the caller supplies them. A bare word is a name glob.
 */
export type Query =
  | { op: 'and' | 'or'; left: Query; right: Query }
  | { op: 'not'; arg: Query }
  | { op: 'term'; key: string; value: string; pos: number };

export interface QueryContext {
  /** Hardware facts by node MAC, for hw: terms. */
  hardware?: (mac: string) => Record<string, string | number> | undefined;
  /** Extra computed facts (e.g. stale) by node MAC. */
  facts?: (mac: string) => Record<string, string | number> | undefined;
}

export const QUERY_KEYS = ['name', 'mac', 'group', 'vnfs', 'state', 'attr', 'ip', 'boot', 'enabled', 'debug', 'hw'] as const;

interface Token {
  text: string;
  pos: number;
}

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      out.push({ text: c, pos: i });
      i++;
    } else {
      const start = i;
      let word = '';
      while (i < text.length && !/[\s()]/.test(text[i]!)) {
        if (text[i] === '"') {
          const end = text.indexOf('"', i + 1);
          if (end < 0) throw queryError(text, i, 'unterminated quote');
          word += text.slice(i + 1, end);
          i = end + 1;
        } else word += text[i++];
      }
      out.push({ text: word, pos: start });
    }
  }
  return out;
}

function queryError(text: string, pos: number, what: string): InvalidInput {
  return new InvalidInput(`bad query at column ${pos + 1}: ${what}\n  ${text}\n  ${' '.repeat(pos)}^`, 'query');
}

/** Whether NODES arguments form a query rather than a list of names. */
export function looksLikeQuery(args: string[]): boolean {
  // One shell argument may hold a whole expression: 'not group:gpu'.
  return args.flatMap((a) => a.split(/\s+/)).some((a) => {
    const lower = a.toLowerCase();
    if (['and', 'or', 'not', '(', ')'].includes(lower) || a.startsWith('(') || a.endsWith(')')) return true;
    const m = /^([a-z]+):/.exec(a);
    return !!m && (QUERY_KEYS as readonly string[]).includes(m[1]!) && !parseMac(a).ok;
  });
}

export function parseQuery(text: string): Query {
  const toks = tokenize(text);
  let i = 0;
  const peek = () => toks[i];
  const isKw = (t: Token | undefined, kw: string) => !!t && t.text.toLowerCase() === kw;

  const parseOr = (): Query => {
    let left = parseAnd();
    while (isKw(peek(), 'or')) {
      i++;
      left = { op: 'or', left, right: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): Query => {
    let left = parseUnary();
    for (;;) {
      const t = peek();
      if (isKw(t, 'and')) {
        i++;
        left = { op: 'and', left, right: parseUnary() };
      } else if (t && t.text !== ')' && !isKw(t, 'or')) {
        // juxtaposition means "and": group:compute state:ready
        left = { op: 'and', left, right: parseUnary() };
      } else return left;
    }
  };
  const parseUnary = (): Query => {
    const t = peek();
    if (!t) throw queryError(text, text.length, 'expected a term, found the end of the query');
    if (isKw(t, 'not')) {
      i++;
      return { op: 'not', arg: parseUnary() };
    }
    if (t.text === '(') {
      i++;
      const q = parseOr();
      const close = peek();
      if (!close || close.text !== ')') throw queryError(text, close ? close.pos : text.length, "expected ')'");
      i++;
      return q;
    }
    if (t.text === ')' || isKw(t, 'and') || isKw(t, 'or')) throw queryError(text, t.pos, `expected a term, found "${t.text}"`);
    i++;
    return parseTerm(text, t);
  };

  const q = parseOr();
  if (i < toks.length) throw queryError(text, toks[i]!.pos, `unexpected "${toks[i]!.text}"`);
  return q;
}

function parseTerm(text: string, t: Token): Query {
  const m = /^([A-Za-z]+):(.*)$/.exec(t.text);
  if (!m || parseMac(t.text).ok) return { op: 'term', key: 'name', value: t.text, pos: t.pos };
  const key = m[1]!.toLowerCase();
  if (!(QUERY_KEYS as readonly string[]).includes(key)) {
    throw queryError(text, t.pos, `unknown key "${m[1]}": use one of ${QUERY_KEYS.join(', ')}`);
  }
  const value = m[2]!;
  if (value === '') throw queryError(text, t.pos, `"${key}:" needs a value`);
  if ((key === 'attr' || key === 'hw') && !/^[A-Za-z0-9_.-]+((,|>=|<=|!=|=|>|<).*)?$/.test(value)) {
    throw queryError(text, t.pos, `"${key}:" takes KEY, KEY,VALUE or KEY>=NUMBER`);
  }
  return { op: 'term', key, value, pos: t.pos };
}

const globCache = new Map<string, RegExp>();
/** One code point without the 'u' flag: a surrogate pair whole, never half of one. */
const ONE_CHARACTER = '(?:[\\uD800-\\uDBFF][\\uDC00-\\uDFFF]|[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]|[^\\uD800-\\uDFFF])';
function globMatch(glob: string, s: string): boolean {
  let re = globCache.get(glob);
  if (!re) {
    // As SQL's LIKE (query-sql.ts): * and ? match line breaks too, and ? one character, also
    // one outside the BMP (two UTF-16 units). Case folding stays ASCII-only for ASCII patterns
    // (no 'u' flag, which would fold the Kelvin sign to k as SQL does not).
    let src = '';
    let inClass = false; // [abc] stays a class, as it always was here
    for (const c of glob) {
      if (c === '[' || c === ']') inClass = c === '[';
      if (/[.+^${}()|\\]/.test(c)) src += '\\' + c;
      else if (!inClass && c === '*') src += '.*';
      else if (!inClass && c === '?') src += ONE_CHARACTER;
      else src += c;
    }
    try {
      re = new RegExp('^' + src + '$', 'is');
    } catch {
      // An unclosed class (a[b): the brackets are plain characters.
      re = new RegExp('^' + src.replace(/[[\]]/g, '\\$&') + '$', 'is');
    }
    if (globCache.size > 1000) globCache.clear();
    globCache.set(glob, re);
  }
  return re.test(s);
}

function compareFacts(spec: string, facts: Record<string, string | number> | undefined): boolean {
  if (!facts) return false;
  const m = /^([A-Za-z0-9_.-]+)(?:(,|>=|<=|!=|=|>|<)(.*))?$/.exec(spec)!;
  const key = m[1]!;
  const has = Object.prototype.hasOwnProperty.call(facts, key);
  if (!m[2]) return has;
  if (!has) return false;
  const actual = facts[key]!;
  const want = m[3]!;
  if (m[2] === ',') return globMatch(want, String(actual));
  const a = Number(actual);
  const b = Number(want);
  const numeric = want !== '' && !Number.isNaN(a) && !Number.isNaN(b);
  switch (m[2]) {
    case '=':
      return numeric ? a === b : globMatch(want, String(actual));
    case '!=':
      return numeric ? a !== b : !globMatch(want, String(actual));
    case '>=':
      return numeric && a >= b;
    case '<=':
      return numeric && a <= b;
    case '>':
      return numeric && a > b;
    case '<':
      return numeric && a < b;
  }
  return false;
}

/** The attribute keys a query's attr: terms read (a caller loading only some attributes adds these). */
export function queryAttrKeys(q: Query, out = new Set<string>()): Set<string> {
  if (q.op === 'term') {
    if (q.key === 'attr') out.add(/^[A-Za-z0-9_.-]+/.exec(q.value)![0]);
  } else if (q.op === 'not') queryAttrKeys(q.arg, out);
  else {
    queryAttrKeys(q.left, out);
    queryAttrKeys(q.right, out);
  }
  return out;
}

export function evalQuery(q: Query, node: Node, ctx: QueryContext = {}): boolean {
  switch (q.op) {
    case 'and':
      return evalQuery(q.left, node, ctx) && evalQuery(q.right, node, ctx);
    case 'or':
      return evalQuery(q.left, node, ctx) || evalQuery(q.right, node, ctx);
    case 'not':
      return !evalQuery(q.arg, node, ctx);
    case 'term':
      switch (q.key) {
        case 'name':
          return globMatch(q.value, node.name);
        case 'mac': {
          const parsed = parseMac(q.value);
          return parsed.ok ? parsed.mac === node.mac : globMatch(q.value, node.mac);
        }
        case 'group':
          return globMatch(q.value, node.group);
        case 'vnfs':
          // vnfs:deb12 matches nodes pinned to a revision of it (deb12@3) too.
          return globMatch(q.value, node.vnfs) || globMatch(q.value, resolveVnfsRef(node.vnfs).name);
        case 'state':
          // Computed facts cost database reads per node: only state:stale needs them.
          if (q.value === 'stale') return !!ctx.facts?.(node.mac)?.stale;
          return globMatch(q.value, node.state);
        case 'ip':
          return globMatch(q.value, node.ip);
        case 'boot':
          return globMatch(q.value, node.boot);
        case 'enabled':
          return truthy(q.value) === node.enabled;
        case 'debug':
          return truthy(q.value) === node.debug;
        case 'attr':
          return compareFacts(q.value, node.attrs);
        case 'hw':
          return compareFacts(q.value, ctx.hardware?.(node.mac));
      }
  }
  return false;
}

function truthy(v: string): boolean {
  return ['1', 'yes', 'true', 'on'].includes(v.toLowerCase());
}
