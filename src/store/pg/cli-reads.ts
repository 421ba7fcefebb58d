/**
 * Read-only CLI commands on PostgreSQL (`node list|status|show|export`, `group list|show`,
 * `vnfs list|show|revisions`):
 * only the rows the command reads, straight from PostgreSQL, in one read-only snapshot.
 *
 * The command code stays the one SQLite runs (so text and --json are the same bytes on both
 * backends): the rows go into an in-memory SQLite store holding just them, and the command reads
 * that store as on SQLite. What is read:
 * - the small tables whole (groups, group_attrs, vnfs, vnfs_attrs: attributes are merged into
 *   every node, and a VNFS check may name any of them);
 * - the nodes a NODES argument can match, selected in PostgreSQL: a query through its compiled
 *   SQL (src/nodes/query-sql.ts, POSTGRES_DIALECT: a superset where SQL cannot decide exactly,
 *   which the command's own evaluation then narrows as on SQLite), names and MACs by key, a glob
 *   by its literal prefix; with their attributes (only the keys a table shows, unless --json),
 *   and for `node show` their inventory and health;
 * - `group list` and `vnfs list`: the node count per group or VNFS, counted in PostgreSQL (no
 *   node rows at all); `vnfs show|revisions NAME`: the revision records and the nodes using NAME.
 * Every condition is per node, so the command's SQLite selection over this subset is the same as
 * over the whole table. Commands that write load only their rows too (src/store/pg/cli-writes.ts).
 */
import type { Config } from '../../config/schema.js';
import { openDatabase, type DB } from '../db.js';
import { Store } from '../store.js';
import { connectPostgres, type Sql, type TxSql } from './connect.js';
import { PG_SCHEMA_VERSION, pgSchemaVersion } from './schema.js';
import { redactUrl } from './url.js';
import { parseSelector } from '../../nodes/select.js';
import { queryAttrKeys, type Query } from '../../nodes/query.js';
import { compileQuery, POSTGRES_DIALECT } from '../../nodes/query-sql.js';
import type { Group } from '../../nodes/types.js';

export class PgReadError extends Error {}

/** Which nodes a read needs. */
export type NodeScope = { kind: 'none' } | { kind: 'all' } | { kind: 'where'; sql: string; params: (string | number | string[])[] };

export interface ReadScope {
  nodes: NodeScope;
  /** Attributes of those nodes: every key, or only these. */
  attrKeys: 'all' | string[];
  /** Their inventory reports and health (node show, hw: queries). */
  detail: boolean;
  /** Count nodes per group in PostgreSQL (group list). */
  groupCounts?: boolean;
  /** Count the nodes using each VNFS in PostgreSQL (vnfs list). */
  vnfsCounts?: boolean;
  /** Read vnfs_revisions (manifests). */
  revisions?: boolean;
}

/**
 * The scope of a read-only command, or undefined when the command is not one (it then takes the
 * whole-replica path). `path`: the command words (['node', 'list']); `args`: its operands.
 * Throws InvalidInput for a bad NODES argument, as the command itself would.
 */
export function readScopeFor(path: string[], args: string[], json: boolean): ReadScope | undefined {
  const cmd = path.join(' ');
  switch (cmd) {
    case 'node list':
    case 'node status':
      // Without --json a table shows no attributes: only the one the stale flag needs.
      return nodesScope(args, json ? 'all' : ['checkin_interval']);
    case 'node show':
      return { ...nodesScope(args, 'all'), detail: true };
    case 'node export':
      return nodesScope(args.slice(1), 'all');
    case 'group show':
      return { nodes: { kind: 'where', sql: 'grp = $1', params: [args[0] ?? ''] }, attrKeys: [], detail: false };
    case 'group list':
      return { nodes: { kind: 'none' }, attrKeys: [], detail: false, groupCounts: true };
    case 'vnfs list':
      return { nodes: { kind: 'none' }, attrKeys: [], detail: false, vnfsCounts: true, revisions: true };
    case 'vnfs show':
    case 'vnfs revisions':
      // The nodes using it (pinned to a revision by NAME@REV or attribute vnfs_rev) with their attributes.
      return { nodes: { kind: 'where', sql: "vnfs = $1 OR starts_with(vnfs, $1 || '@')", params: [args[0] ?? ''] }, attrKeys: 'all', detail: false, revisions: true };
  }
  return undefined;
}

export function nodesScope(args: string[], attrKeys: 'all' | string[]): ReadScope {
  if (args.length === 0) return { nodes: { kind: 'all' }, attrKeys, detail: false };
  const sel = parseSelector(args);
  if (sel.kind === 'query') {
    const c = compileQuery(sel.query, POSTGRES_DIALECT);
    return {
      nodes: { kind: 'where', sql: c.sql, params: c.params },
      // What the query reads besides the columns: its attributes, and `hw:` facts.
      attrKeys: attrKeys === 'all' ? 'all' : [...new Set([...attrKeys, ...queryAttrKeys(sel.query)])],
      detail: readsHardware(sel.query),
    };
  }
  const exact: string[] = [];
  const macs: string[] = [];
  const prefixes: string[] = [];
  for (const p of sel.patterns) {
    if (p.mac !== undefined) macs.push(p.mac);
    if (p.exact !== undefined) exact.push(p.exact);
    if (p.re) {
      const prefix = /^[^*?[]*/.exec(p.text)![0];
      if (!prefix) return { nodes: { kind: 'all' }, attrKeys, detail: false };
      prefixes.push(prefix);
    }
  }
  return {
    nodes: { kind: 'where', sql: 'name = ANY($1) OR mac = ANY($2) OR EXISTS (SELECT 1 FROM unnest($3::text[]) p WHERE starts_with(name, p))', params: [exact, macs, prefixes] },
    attrKeys,
    detail: false,
  };
}

function readsHardware(q: Query): boolean {
  if (q.op === 'term') return q.key === 'hw';
  if (q.op === 'not') return readsHardware(q.arg);
  return readsHardware(q.left) || readsHardware(q.right);
}

type Row = Record<string, unknown>;

export interface PgReadStore {
  store: Store;
  /** `group list` on this store: the groups with their node counts from PostgreSQL. */
  groups(): (Group & { nodes: number })[];
  /** `vnfs list` on this store: VnfsRepo.list with the node counts from PostgreSQL. */
  vnfs(): ReturnType<Store['vnfs']['list']>;
  close(): Promise<void>;
  /** Rows read per table (tests, the benchmark). */
  counts: Record<string, number>;
}

/** Refuse a database this code cannot read (not migrated, or newer). */
export async function checkSchema(sql: Sql, url: string): Promise<void> {
  let v: number;
  try {
    v = await pgSchemaVersion(sql);
  } catch (e) {
    throw new PgReadError(`cannot reach the database ${redactUrl(url)}: ${(e as Error).message}`);
  }
  if (v !== PG_SCHEMA_VERSION) {
    throw new PgReadError(
      v < PG_SCHEMA_VERSION
        ? `database ${redactUrl(url)} has schema version ${v}, this pxeherd ${PG_SCHEMA_VERSION}: run \`pxeherd db migrate\` first`
        : `database ${redactUrl(url)} has schema version ${v}, newer than this pxeherd understands (${PG_SCHEMA_VERSION}): upgrade pxeherd`,
    );
  }
}

export async function openPgReadStore(config: Config, scope: ReadScope): Promise<PgReadStore> {
  const url = config.database;
  const sql = connectPostgres(url, { max: 1, applicationName: 'pxeherd cli' });
  try {
    await checkSchema(sql, url);
    const read = (await sql.begin('isolation level repeatable read read only', (tx) => readRows(tx, scope))) as Awaited<ReturnType<typeof readRows>>;
    const store = new Store(openDatabase(':memory:'), { serverId: config.server_id || undefined });
    const counts = fillRows(store.db, read.tables);
    return {
      store,
      counts,
      groups: () => groupList(store, read.groupCounts),
      vnfs: () => store.vnfs.list().map((v) => ({ ...v, nodes: read.vnfsCounts.get(v.name) ?? 0 })),
      async close() {
        store.close();
        await sql.end({ timeout: 5 });
      },
    };
  } catch (e) {
    await sql.end({ timeout: 5 }).catch(() => undefined);
    throw e;
  }
}

/** Parents before children (foreign keys of the in-memory store). */
async function readRows(tx: TxSql, scope: ReadScope): Promise<{ tables: [string, Row[]][]; groupCounts: Map<string, number>; vnfsCounts: Map<string, number> }> {
  const tables: [string, Row[]][] = [];
  for (const t of ['groups', 'group_attrs', 'vnfs', 'vnfs_attrs', ...(scope.revisions ? ['vnfs_revisions'] : [])]) tables.push([t, (await tx.unsafe(`SELECT * FROM ${t}`)) as unknown as Row[]]);
  const n = scope.nodes;
  if (n.kind !== 'none') {
    const where = n.kind === 'all' ? 'TRUE' : n.sql;
    const params = n.kind === 'all' ? [] : n.params;
    // The node's rows of a table: `t.mac IN (nodes the condition selects)`.
    const ofNodes = n.kind === 'all' ? 'TRUE' : `t.mac IN (SELECT nodes.mac FROM nodes WHERE ${where})`;
    tables.push(['nodes', (await tx.unsafe(`SELECT * FROM nodes WHERE ${where}`, params as never[])) as unknown as Row[]]);
    if (scope.attrKeys === 'all') tables.push(['node_attrs', (await tx.unsafe(`SELECT t.* FROM node_attrs t WHERE ${ofNodes}`, params as never[])) as unknown as Row[]]);
    else if (scope.attrKeys.length) {
      const k = `$${params.length + 1}`;
      tables.push(['node_attrs', (await tx.unsafe(`SELECT t.* FROM node_attrs t WHERE t.key = ANY(${k}) AND ${ofNodes}`, [...params, scope.attrKeys] as never[])) as unknown as Row[]]);
    }
    if (scope.detail) {
      for (const t of ['inventory', 'health']) tables.push([t, (await tx.unsafe(`SELECT t.* FROM ${t} t WHERE ${ofNodes}`, params as never[])) as unknown as Row[]]);
    }
  }
  const groupCounts = new Map<string, number>();
  if (scope.groupCounts) {
    for (const r of await tx`SELECT grp, count(*)::int AS n FROM nodes GROUP BY grp`) groupCounts.set(r.grp as string, Number(r.n));
  }
  const vnfsCounts = new Map<string, number>();
  if (scope.vnfsCounts) {
    // VnfsRepo's USES: the VNFS itself, or one of its revisions (NAME@REV).
    for (const r of await tx`SELECT v.name, (SELECT count(*) FROM nodes n WHERE n.vnfs = v.name OR starts_with(n.vnfs, v.name || '@'))::int AS n FROM vnfs v`) vnfsCounts.set(r.name as string, Number(r.n));
  }
  return { tables, groupCounts, vnfsCounts };
}

/** Write the rows into the in-memory store, one transaction; only the columns it has. */
export function fillRows(db: DB, tables: [string, Row[]][]): Record<string, number> {
  const counts: Record<string, number> = {};
  db.transaction(() => {
    for (const [table, rows] of tables) {
      counts[table] = (counts[table] ?? 0) + rows.length;
      if (rows.length === 0) continue;
      const local = new Set(db.prepare<[], { name: string }>(`PRAGMA table_info("${table}")`).all().map((c) => c.name));
      const cols = Object.keys(rows[0]!).filter((c) => local.has(c));
      const ins = db.prepare(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`);
      for (const r of rows) ins.run(...cols.map((c) => r[c] ?? null));
    }
  })();
  return counts;
}

/** GroupRepo.list's answer, with the node counts PostgreSQL gave (the store holds no nodes). */
function groupList(store: Store, counts: Map<string, number>): (Group & { nodes: number })[] {
  const names = new Set(store.db.prepare<[], { name: string }>('SELECT name FROM groups').all().map((r) => r.name));
  for (const [g, n] of counts) if (g !== '' && n > 0) names.add(g);
  // SQLite's ORDER BY name: binary (UTF-8 byte) order.
  const sorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return sorted.map((name) => {
    const row = store.db.prepare<[string], { created_at: number }>('SELECT created_at FROM groups WHERE name = ?').get(name);
    return { name, attrs: store.groups.attrsOf(name), createdAt: row?.created_at ?? 0, nodes: counts.get(name) ?? 0 };
  });
}
