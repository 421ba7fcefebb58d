import type { Query } from './query.js';
import { parseMac } from './mac.js';

/**
 * A query expression as a SQL condition on `nodes` (and `node_attrs`), so `node list QUERY`
 * reads the matching rows instead of every node. The condition is a SUPERSET of what
 * `evalQuery` accepts: terms SQL can decide exactly (globs over columns, attribute presence and
 * attribute globs) are compiled exactly; the rest (numeric attribute comparisons, `hw:`,
 * `state:stale`, globs with `[` classes or non-ASCII letters whose case folding SQL does not
 * share) become a necessary condition or TRUE. Callers run `evalQuery` over the rows the SQL
 * returns, which is cheap because the SQL already did the narrowing.
 */
export interface SqlCondition {
  sql: string;
  params: (string | number)[];
  /** True when `sql` decides the query exactly (no post-filter needed, and safe under NOT). */
  exact: boolean;
}

/** What differs between the SQL backends: case-insensitive LIKE and placeholders. */
export interface SqlDialect {
  /** 'LIKE' on SQLite (ASCII case-insensitive), 'ILIKE' on PostgreSQL. */
  ilike: string;
  /** The placeholder for the n-th (1-based) parameter: '?' or '$n'. */
  placeholder(n: number): string;
  /**
   * `a.value OP param` as numbers when the value is plain digits and dots, TRUE otherwise
   * (evalQuery decides those); absent: SQLite's form.
   */
  numericAttr?(op: string, param: string): string;
}

export const SQLITE_DIALECT: SqlDialect = { ilike: 'LIKE', placeholder: () => '?' };

/** PostgreSQL: a CAST of a non-number raises an error, so the CASE guards it (OR does not). */
export const POSTGRES_DIALECT: SqlDialect = {
  ilike: 'ILIKE',
  placeholder: (n) => `$${n}`,
  numericAttr: (op, param) => `CASE WHEN a.value ~ '^([0-9]+[.]?[0-9]*|[.][0-9]+)$' THEN CAST(a.value AS DOUBLE PRECISION) ${op} ${param} ELSE TRUE END`,
};

const TRUE: SqlCondition = { sql: '1 = 1', params: [], exact: false };

/** Columns a term key reads; the values are what `evalQuery` globs against. */
const COLUMNS: Record<string, string> = { name: 'name', group: 'grp', state: 'state', ip: 'ip', boot: 'boot' };

/**
 * `evalQuery`'s glob (only * and ?, case-insensitive, whole string) as a LIKE pattern with '\'
 * escaping, or undefined when LIKE would not match the same strings: a '[' (the JS matcher
 * treats it as a character class) or a non-ASCII character (JS and SQL fold case differently).
 */
export function globToLike(glob: string): string | undefined {
  if (/[[\]]/.test(glob) || /[^\x20-\x7e]/.test(glob)) return undefined;
  let out = '';
  for (const c of glob) {
    if (c === '*') out += '%';
    else if (c === '?') out += '_';
    else if (c === '%' || c === '_' || c === '\\') out += '\\' + c;
    else out += c;
  }
  return out;
}

function truthy(v: string): boolean {
  return ['1', 'yes', 'true', 'on'].includes(v.toLowerCase());
}

/** Where a parameter goes while the condition is assembled; numbered per dialect at the end. */
const SLOT = '\u0000';

function cond(sql: string, params: (string | number)[], exact: boolean): SqlCondition {
  return { sql, params, exact };
}

function likeTerm(column: string, glob: string, ilike: string): SqlCondition | undefined {
  const pat = globToLike(glob);
  return pat === undefined ? undefined : cond(`${column} ${ilike} ${SLOT} ESCAPE '\\'`, [pat], true);
}

function attrTerm(spec: string, ilike: string, dialect: SqlDialect): SqlCondition {
  const m = /^([A-Za-z0-9_.-]+)(?:(,|>=|<=|!=|=|>|<)(.*))?$/.exec(spec);
  if (!m) return TRUE;
  const key = m[1]!;
  const exists = `EXISTS (SELECT 1 FROM node_attrs a WHERE a.mac = nodes.mac AND a.key = ${SLOT}`;
  if (!m[2]) return cond(exists + ')', [key], true);
  if (m[2] === ',') {
    const pat = globToLike(m[3]!);
    if (pat !== undefined) return cond(`${exists} AND a.value ${ilike} ${SLOT} ESCAPE '\\')`, [key, pat], true);
  }
  const op = m[2];
  if (op === '>=' || op === '<=' || op === '>' || op === '<') {
    const want = m[3]!;
    // evalQuery compares with JavaScript's Number(): a bound that is not a number matches nothing.
    if (want.trim() === '' || Number.isNaN(Number(want))) return cond('1 = 0', [], true);
    // Values made of digits and dots convert alike in SQL and in Number() (or Number() gives
    // NaN, which evalQuery then refuses): compare those in SQL; leave any other value
    // (signs, spaces, hex, exponents) to evalQuery.
    if (dialect.numericAttr) return cond(`${exists} AND ${dialect.numericAttr(op, `${SLOT}::double precision`)})`, [key, Number(want)], false);
    const plain = `a.value <> '' AND a.value NOT GLOB '*[^0-9.]*'`;
    return cond(`${exists} AND (NOT (${plain}) OR CAST(a.value AS REAL) ${op} ${SLOT}))`, [key, Number(want)], false);
  }
  // = and != fall back to globs for non-numbers: only "the key is present" is certain.
  return cond(exists + ')', [key], false);
}

function compileNode(q: Query, ilike: string, dialect: SqlDialect): SqlCondition {
  switch (q.op) {
    case 'and':
    case 'or': {
      const l = compileNode(q.left, ilike, dialect);
      const r = compileNode(q.right, ilike, dialect);
      return cond(`(${l.sql} ${q.op === 'and' ? 'AND' : 'OR'} ${r.sql})`, [...l.params, ...r.params], l.exact && r.exact);
    }
    case 'not': {
      const inner = compileNode(q.arg, ilike, dialect);
      // NOT of a superset is not a superset: only an exact operand can be negated in SQL.
      return inner.exact ? cond(`NOT (${inner.sql})`, inner.params, true) : TRUE;
    }
    case 'term': {
      const col = COLUMNS[q.key];
      if (col) {
        if (q.key === 'state' && q.value === 'stale') return TRUE; // computed from check-ins
        return likeTerm(col, q.value, ilike) ?? TRUE;
      }
      switch (q.key) {
        case 'mac':
        {
          // A whole MAC in any notation is compared normalised, as evalQuery does; globs as typed.
          const m = parseMac(q.value);
          return m.ok ? cond(`mac = ${SLOT}`, [m.mac], true) : (likeTerm('mac', q.value, ilike) ?? TRUE);
        }
        case 'vnfs': {
          // vnfs:deb12 also matches nodes pinned to a revision of it (deb12@3), as evalQuery does.
          const pat = globToLike(q.value);
          if (pat === undefined) return TRUE;
          return cond(`(vnfs ${ilike} ${SLOT} ESCAPE '\\' OR vnfs ${ilike} ${SLOT} || '@%' ESCAPE '\\')`, [pat, pat], true);
        }
        case 'enabled':
        case 'debug':
          return cond(`${q.key} = ${SLOT}`, [truthy(q.value) ? 1 : 0], true);
        case 'attr':
          return attrTerm(q.value, ilike, dialect);
      }
      return TRUE; // hw: facts live in the inventory's JSON
    }
  }
}

export function compileQuery(q: Query, dialect: SqlDialect = SQLITE_DIALECT): SqlCondition {
  const c = compileNode(q, dialect.ilike, dialect);
  let n = 0;
  return { sql: c.sql.replace(/\u0000/g, () => dialect.placeholder(++n)), params: c.params, exact: c.exact };
}
