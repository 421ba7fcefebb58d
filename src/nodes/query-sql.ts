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

/** What differs between the SQL backends: case-insensitive matching and placeholders. */
export interface SqlDialect {
  /** 'LIKE' on SQLite (ASCII case-insensitive), 'ILIKE' on PostgreSQL. */
  ilike: string;
  /**
   * PostgreSQL: match `lower(column COLLATE "C") LIKE pattern` with the (ASCII) pattern lowercased
   * here. Under "C" lower() folds ASCII letters only, as evalQuery's /i and SQLite's LIKE do
   * (ILIKE in a UTF-8 locale folds the Kelvin sign to k), and the expression has an index
   * (migration 8); ILIKE cannot use a b-tree at all.
   */
  lowerLike?: boolean;
  /** The placeholder for the n-th (1-based) parameter: '?' or '$n'. */
  placeholder(n: number): string;
  /**
   * `a.value OP param` as numbers when the value is plain digits and dots, TRUE otherwise
   * (evalQuery decides those); absent: SQLite's form.
   */
  numericAttr?(op: string, param: string): string;
}

/**
 * SQLite: LIKE is ASCII case-insensitive, and with a constant prefix it reads a range of a
 * `COLLATE NOCASE` index (migration 8 indexes name, grp, vnfs, state and node_attrs(key, value)).
 */
export const SQLITE_DIALECT: SqlDialect = { ilike: 'LIKE', placeholder: () => '?' };

/** PostgreSQL: a CAST of a non-number raises an error, so the CASE guards it (OR does not). */
export const POSTGRES_DIALECT: SqlDialect = {
  ilike: 'ILIKE',
  lowerLike: true,
  placeholder: (n) => `$${n}`,
  numericAttr: (op, param) => `CASE WHEN a.value ~ '^([0-9]+[.]?[0-9]*|[.][0-9]+)$' THEN CAST(a.value AS DOUBLE PRECISION) ${op} ${param} ELSE TRUE END`,
};

const TRUE: Part = { sql: '1 = 1', params: [], exact: false, indexed: false };

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

/**
 * Stands for the start of an attribute term, whose form depends on what surrounds it. Alone, in
 * an OR or under NOT it is a set, `nodes.mac IN (SELECT a.mac FROM node_attrs ...)`, read once
 * through the (key, value) index: a selective one drives the query. Next to a term that an index
 * on `nodes` answers (group:compute and attr:cores>=96) it is a correlated EXISTS, one primary-key
 * probe per row that index yields: building a set of a third of the nodes (and SQLite's planner,
 * which cannot tell a set's size, driving the query from it) costs more than the whole answer.
 */
const ATTR = '\u0001';
const ATTR_SET = 'nodes.mac IN (SELECT a.mac FROM node_attrs a WHERE a.key = ';
const ATTR_EXISTS = 'EXISTS (SELECT 1 FROM node_attrs a WHERE a.mac = nodes.mac AND a.key = ';

/** A condition while it is assembled: `indexed` when a b-tree on `nodes` can drive it. */
interface Part extends SqlCondition {
  indexed: boolean;
}

function cond(sql: string, params: (string | number)[], exact: boolean, indexed = false): Part {
  return { sql, params, exact, indexed };
}

/** `column` matches the LIKE pattern `pat` (already escaped), case-insensitively. */
function like(column: string, pat: string, dialect: SqlDialect): Part {
  // Indexed columns (migration 8) drive the query when the pattern starts with a literal.
  const indexed = INDEXED.has(column) && !/^[%_]/.test(pat);
  // globToLike passes only printable ASCII, whose lowercase is the same in JS and in SQL.
  if (dialect.lowerLike) return cond(`lower(${column} COLLATE "C") LIKE ${SLOT} ESCAPE '\\'`, [pat.toLowerCase()], true, indexed);
  return cond(`${column} ${dialect.ilike} ${SLOT} ESCAPE '\\'`, [pat], true, indexed);
}

/** Columns of `nodes` with a case-insensitive index (migration 8). */
const INDEXED = new Set(['name', 'grp', 'vnfs', 'state']);

function likeTerm(column: string, glob: string, dialect: SqlDialect): Part | undefined {
  const pat = globToLike(glob);
  return pat === undefined ? undefined : like(column, pat, dialect);
}

/**
 * Nodes whose attribute (the first parameter) satisfies `valueSql` (on `a.value`): see ATTR.
 */
function attrSet(valueSql: string): string {
  return `${ATTR}${SLOT}${valueSql ? ' AND ' + valueSql : ''})`;
}

function attrTerm(spec: string, dialect: SqlDialect): Part {
  const m = /^([A-Za-z0-9_.-]+)(?:(,|>=|<=|!=|=|>|<)(.*))?$/.exec(spec);
  if (!m) return TRUE;
  const key = m[1]!;
  if (!m[2]) return cond(attrSet(''), [key], true);
  if (m[2] === ',') {
    const pat = globToLike(m[3]!);
    if (pat !== undefined) {
      const v = like('a.value', pat, dialect);
      return cond(attrSet(v.sql), [key, ...v.params], true);
    }
  }
  const op = m[2];
  if (op === '>=' || op === '<=' || op === '>' || op === '<') {
    const want = m[3]!;
    // evalQuery compares with JavaScript's Number(): a bound that is not a number matches nothing.
    if (want.trim() === '' || Number.isNaN(Number(want))) return cond('1 = 0', [], true);
    // Values made of digits and dots convert alike in SQL and in Number() (or Number() gives
    // NaN, which evalQuery then refuses): compare those in SQL; leave any other value
    // (signs, spaces, hex, exponents) to evalQuery.
    if (dialect.numericAttr) return cond(attrSet(dialect.numericAttr(op, `${SLOT}::double precision`)), [key, Number(want)], false);
    const plain = `a.value <> '' AND a.value NOT GLOB '*[^0-9.]*'`;
    return cond(attrSet(`(NOT (${plain}) OR CAST(a.value AS REAL) ${op} ${SLOT})`), [key, Number(want)], false);
  }
  // = and != fall back to globs for non-numbers: only "the key is present" is certain.
  return cond(attrSet(''), [key], false);
}

function compileNode(q: Query, dialect: SqlDialect): Part {
  switch (q.op) {
    case 'and':
    case 'or': {
      const l = compileNode(q.left, dialect);
      const r = compileNode(q.right, dialect);
      const params = [...l.params, ...r.params];
      if (q.op === 'or') return cond(`(${l.sql} OR ${r.sql})`, params, l.exact && r.exact, l.indexed && r.indexed);
      const sql = `(${l.sql} AND ${r.sql})`;
      if (!l.indexed && !r.indexed) return cond(sql, params, l.exact && r.exact);
      return cond(sql.replaceAll(ATTR, ATTR_EXISTS), params, l.exact && r.exact, true);
    }
    case 'not': {
      const inner = compileNode(q.arg, dialect);
      // NOT of a superset is not a superset: only an exact operand can be negated in SQL.
      return inner.exact ? cond(`NOT (${inner.sql})`, inner.params, true) : TRUE;
    }
    case 'term': {
      const col = COLUMNS[q.key];
      if (col) {
        if (q.key === 'state' && q.value === 'stale') return TRUE; // computed from check-ins
        return likeTerm(col, q.value, dialect) ?? TRUE;
      }
      switch (q.key) {
        case 'mac':
        {
          // A whole MAC in any notation is compared normalised, as evalQuery does; globs as typed.
          const m = parseMac(q.value);
          return m.ok ? cond(`mac = ${SLOT}`, [m.mac], true, true) : (likeTerm('mac', q.value, dialect) ?? TRUE);
        }
        case 'vnfs': {
          // vnfs:deb12 also matches nodes pinned to a revision of it (deb12@3), as evalQuery does.
          const pat = globToLike(q.value);
          if (pat === undefined) return TRUE;
          // Two patterns as parameters (not `? || '@%'`): SQLite reads an index range only for a
          // LIKE whose right side is a plain parameter.
          const plain = like('vnfs', pat, dialect);
          const pinned = like('vnfs', pat + '@%', dialect);
          return cond(`(${plain.sql} OR ${pinned.sql})`, [...plain.params, ...pinned.params], true);
        }
        case 'enabled':
        case 'debug':
          return cond(`${q.key} = ${SLOT}`, [truthy(q.value) ? 1 : 0], true);
        case 'attr':
          return attrTerm(q.value, dialect);
      }
      return TRUE; // hw: facts live in the inventory's JSON
    }
  }
}

export function compileQuery(q: Query, dialect: SqlDialect = SQLITE_DIALECT): SqlCondition {
  const c = compileNode(q, dialect);
  let n = 0;
  return { sql: c.sql.replaceAll(ATTR, ATTR_SET).replace(/\u0000/g, () => dialect.placeholder(++n)), params: c.params, exact: c.exact };
}
