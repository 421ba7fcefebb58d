/**
 * Writing CLI commands on PostgreSQL (`node add|set|delete|enable|disable|replace|import`,
 * `group set|delete`, `vnfs add|set|delete`, `node reinstall|rollback|locate|plan|release`,
 * `power ACTION`, `exec`), `explain`, `script list|render`, `overlay render`, `stage1 build` and
 * the image commands (`vnfs build|import|exec|shell|capture|rollback|prune|sync`): the command's
 * in-memory replica holds only the rows the command reads or writes, not the whole database
 * (issue 19: a whole load grows with the database, ~6 s CPU per command at 100 000 nodes,
 * BENCHMARKS.md). `node import -`
 * too: the caller reads standard input once (CliContext.readInput).
 *
 * The command code stays the one SQLite runs, over an in-memory SQLite store, and what it writes
 * goes to PostgreSQL through the write-through capture (src/store/pg/writer.ts: each command's rows
 * are ONE transaction inside PostgresBackend.applyRowChanges, strict). What is loaded, in one
 * REPEATABLE READ snapshot:
 * - the small tables whole (groups, group_attrs, vnfs, vnfs_attrs, vnfs_revisions);
 * - the nodes the command names (NODES arguments as `node list` selects them, names, MACs), the
 *   nodes its checks read (the holder of a name or address it would take, a group's or a VNFS's
 *   nodes), each with all its own rows (attributes, inventory, health, installs, leases): a node's
 *   rows are what SQLite's cascades and the output read; `exec` and `power` over a query select
 *   their nodes through the query's compiled SQL;
 * - `overlay render`: every other node as a name plate (mac, name, ip, group) for the templates'
 *   list of nodes, without their other rows;
 * - names from the pattern: PostgreSQL computes the first free numbers (SQLite's rule: the first
 *   free number at or after nodes.first_number, gaps first), the store's naming starts there
 *   (`firstNumber`) and only the nodes holding numbers between the free ones are loaded, so the
 *   local naming gives exactly the names SQLite would.
 * Every check the command makes is per row it loaded, so its result equals SQLite's over the whole
 * table. Under concurrent writers PostgreSQL's unique keys (mac, name, ip) stand behind the local
 * checks: a name or MAC taken meanwhile makes the unit fail (409, nothing written) and the command
 * is run again on a fresh load (see CliContext.runCommand), which then sees the winner.
 */
import type { Config } from '../../config/schema.js';
import type { TxSql } from './connect.js';
import { InvalidInput, normalizeMac, parseMac } from '../../nodes/mac.js';
import { formatName, parseNamePattern } from '../../nodes/naming.js';
import { parseSelector } from '../../nodes/select.js';
import { formatFromName, parseNodes } from '../../nodes/io.js';
import { discoveryVnfsFor, parseCpuArch } from '../../boot/loader.js';
import { nodesScope } from './cli-reads.js';

type Row = Record<string, unknown>;
type Params = (string | number | string[])[];

/** One condition on `nodes` selecting rows to load. */
export interface NodeCond {
  sql: string;
  params: Params;
}

export interface WriteScope {
  /** Nodes to load with all their rows. */
  nodes: NodeCond[];
  /** Names of the pattern this many new nodes may take (node add without a name, import). */
  names?: number;
  /** Lease rows (v4) to load: their condition; leases6 whole (explain --v6). */
  leases?: NodeCond;
  leases6?: boolean;
  /** Count these groups' nodes in PostgreSQL (group set prints the count; no node rows). */
  groupCounts?: string[];
  /** Run the command again on a fresh load when a unique key was taken meanwhile (409). */
  retryOnConflict?: boolean;
  /**
   * Every other node as a name plate only (mac, name, ip, group; no attributes or other rows):
   * `overlay render` gives its templates the list of all nodes (/etc/hosts), nothing more of them.
   */
  nodePlates?: boolean;
  /**
   * `vnfs sync [NAME[@REV]]`: instead of the small tables whole, only the VNFS records it syncs
   * (no groups): NAME's rows and revisions with a target; without one every VNFS, their current
   * revisions and the revisions nodes pin, those pins read as distinct values (`pins`), no node rows.
   */
  vnfsSync?: { name?: string };
}

/**
 * The distinct NAME@REV values of the nodes' `vnfs` field, each in the order of the first node
 * (by name, SQLite's binary order) holding it: `vnfs sync` walks a VNFS's users in that order,
 * and so adds the revisions they pin in the order SQLite's VnfsRepo.usersOf gives.
 */
export const PINS_SQL = `SELECT vnfs, min(name COLLATE "C") AS first FROM nodes WHERE strpos(vnfs, '@') > 0 GROUP BY vnfs`;

/** Tables loaded whole: small, and any command's checks may read them. */
const SMALL = ['groups', 'group_attrs', 'vnfs', 'vnfs_attrs', 'vnfs_revisions'];
/** A node's own rows (parents first: nodes is loaded before them). */
const NODE_ROWS = ['node_attrs', 'inventory', 'health', 'node_installs', 'leases', 'leases6'];

const byKey = (col: string, v: string): NodeCond => ({ sql: `${col} = $1`, params: [v] });

/** A NODE argument (name or MAC), as NodeService.get reads it. */
function nameOrMac(arg: string): NodeCond[] {
  const out = [byKey('name', arg)];
  if (parseMac(arg).ok) out.push(byKey('mac', normalizeMac(arg)));
  return out;
}

/** NODES arguments (names, globs, ranges, a query), as NodeService.select reads them. */
function selected(args: string[]): NodeCond[] {
  const s = nodesScope(args, 'all').nodes;
  if (s.kind === 'none') return [];
  if (s.kind === 'all') return [{ sql: 'TRUE', params: [] }];
  return [{ sql: s.sql, params: s.params }];
}

const USES = (vnfs: string): NodeCond => ({ sql: "vnfs = $1 OR starts_with(vnfs, $1 || '@')", params: [vnfs] });

/**
 * The scope of a writing command (or explain/script), or undefined: the command takes the
 * whole-replica path. `path`: the command words; `args`: its operands; `opts`: its options.
 * Throws InvalidInput for a bad NODES argument or file, as the command itself would.
 */
export function writeScopeFor(path: string[], args: string[], opts: Record<string, unknown>, config: Config, readFile: (f: string) => string): WriteScope | undefined {
  // `power ACTION NODES...`: the nodes and their rows (attributes say how to reach the BMC).
  if (path[0] === 'power' && path.length === 2) return { nodes: selected(args) };
  switch (path.join(' ')) {
    case 'node add': {
      const [mac, name] = args;
      const nodes: NodeCond[] = [];
      const m = parseMac(mac ?? '');
      if (m.ok) nodes.push(byKey('mac', m.mac));
      if (name !== undefined) nodes.push(byKey('name', name));
      if (typeof opts.ip === 'string' && opts.ip) nodes.push(byKey('ip', opts.ip));
      return { nodes, names: name === undefined ? 1 : 0, retryOnConflict: true };
    }
    case 'node import': {
      // `-`: the caller's readFile reads standard input once and hands the command the same text.
      const file = args[0] ?? '';
      const format = formatOf(opts.format, file === '-' ? '' : file);
      // The command refuses the format before it reads (standard input is not waited for).
      if (!['csv', 'json', 'ethers'].includes(format)) return { nodes: [] };
      let text: string;
      try {
        text = readFile(file);
      } catch {
        return { nodes: [] }; // the command reports the unreadable file itself
      }
      const recs = importRecords(text, format);
      if (!recs) return { nodes: [] }; // the command reports the bad file itself
      const macs = recs.map((r) => r.mac).filter((m): m is string => !!m);
      const names = recs.map((r) => r.name).filter((n): n is string => !!n);
      const ips = recs.map((r) => r.ip).filter((n): n is string => !!n);
      return { nodes: [{ sql: 'mac = ANY($1) OR name = ANY($2) OR ip = ANY($3)', params: [macs, names, ips] }], names: recs.length, retryOnConflict: true };
    }
    case 'node set': {
      // KEY VALUE NODES or KEY=VALUE NODES
      let [key, ...rest] = args as [string, ...string[]];
      let value: string | undefined;
      const eq = (key ?? '').indexOf('=');
      if (eq > 0) {
        value = key.slice(eq + 1);
        key = key.slice(0, eq);
      } else value = rest.shift();
      const nodes = rest.length ? selected(rest) : [];
      if (value !== undefined && (key === 'name' || key === 'ip') && value !== '') nodes.push(byKey(key, value));
      return { nodes, retryOnConflict: key === 'name' || key === 'ip' };
    }
    case 'node delete':
    case 'node enable':
    case 'node disable':
    case 'node reinstall':
    case 'node rollback':
    case 'node locate':
    case 'node release':
      return { nodes: selected(args) };
    case 'node plan':
      return { nodes: nameOrMac(args[0] ?? '') };
    case 'node replace': {
      const nodes = nameOrMac(args[0] ?? '');
      const m = parseMac(args[1] ?? '');
      if (m.ok) nodes.push(byKey('mac', m.mac));
      return { nodes, retryOnConflict: true };
    }
    case 'group set':
      // It prints the group's node count: counted in PostgreSQL.
      return { nodes: [], groupCounts: [args[0] ?? ''] };
    case 'group delete':
      // The group's nodes: its node count, and what --move-to moves.
      return { nodes: [byKey('grp', args[0] ?? '')] };
    case 'vnfs add':
    case 'vnfs set':
    case 'vnfs delete':
      return { nodes: [USES(args[0] ?? '')] };
    case 'script list':
    case 'script render':
      return { nodes: nameOrMac(args[0] ?? '') };
    case 'exec':
      // `args`: the NODES before `--` (the caller strips the command); a query through its compiled SQL.
      return { nodes: args.length ? selected(args) : [] };
    case 'overlay render':
      return { nodes: nameOrMac(args[0] ?? ''), nodePlates: true };
    case 'stage1 build': {
      // It registers (or keeps the command line of) one VNFS: as `vnfs add` does.
      if (opts.register === false) return { nodes: [] };
      const arch = parseCpuArch(typeof opts.arch === 'string' ? opts.arch : 'x86_64');
      if (!arch) return { nodes: [] }; // the command refuses the --arch itself
      return { nodes: [USES(typeof opts.name === 'string' ? opts.name : discoveryVnfsFor('stage1', arch))] };
    }
    // The image commands read and write one VNFS's records (small tables, loaded whole) and the
    // nodes using it (which revision each pins: its field NAME@REV or attribute vnfs_rev).
    case 'vnfs sync':
      return { nodes: [], vnfsSync: args[0] === undefined ? {} : { name: args[0].split('@')[0]! } };
    case 'vnfs build':
    case 'vnfs import':
    case 'vnfs exec':
    case 'vnfs shell':
    case 'vnfs rollback':
    case 'vnfs prune':
      return { nodes: [USES(args[0] ?? '')] };
    case 'vnfs capture':
      return { nodes: [...nameOrMac(args[0] ?? ''), USES(args[1] ?? '')] };
    case 'explain': {
      const m = parseMac(args[0] ?? '');
      if (!m.ok) return { nodes: [] };
      if (opts.v6) return { nodes: [byKey('mac', m.mac)], leases6: true };
      // The DHCP handler's choice of an address reads the leases and who holds a reservation
      // in the pools' ranges.
      const pools = poolRanges(config);
      const inPools = pools.length
        ? // CASE: the cast only for an address (AND does not fix the order of evaluation).
          `(CASE WHEN ip ~ '^[0-9]{1,3}(\\.[0-9]{1,3}){3}$' THEN (${pools.map((_, i) => `ip::inet BETWEEN $${2 * i + 1}::inet AND $${2 * i + 2}::inet`).join(' OR ')}) ELSE FALSE END)`
        : 'FALSE';
      const params = pools.flat();
      return {
        nodes: [byKey('mac', m.mac), { sql: inPools, params }],
        leases: { sql: `mac = $${params.length + 1} OR ${inPools}`, params: [...params, m.mac] },
      };
    }
  }
  return undefined;
}

function poolRanges(config: Config): [string, string][] {
  const d = config.dhcp as { range?: [string, string]; subnets?: { range?: [string, string]; network: string }[] };
  const out: [string, string][] = [];
  if (d.range) out.push([d.range[0], d.range[1]]);
  for (const s of d.subnets ?? []) if (s.range) out.push([s.range[0], s.range[1]]);
  return out;
}

function formatOf(format: unknown, file: string): string {
  return typeof format === 'string' ? format : (formatFromName(file) ?? '');
}

/** The MACs, names and addresses an import file names (undefined: the command reports the file). */
function importRecords(text: string, format: string): { mac?: string; name?: string; ip?: string }[] | undefined {
  try {
    if (!['csv', 'json', 'ethers'].includes(format)) return undefined;
    return parseNodes(text, format as never).map((r) => {
      let mac: string | undefined;
      try {
        mac = normalizeMac(r.node.mac);
      } catch {
        mac = undefined;
      }
      return { mac, name: r.node.name, ip: r.node.ip };
    });
  } catch (e) {
    if (e instanceof InvalidInput) return undefined;
    throw e;
  }
}

/**
 * Read the scope's rows (the caller's one snapshot), parents first, for fillRows; and, when names
 * are needed, the first free number of the pattern (the store's naming starts there).
 */
export async function readWriteScope(
  tx: TxSql,
  scope: WriteScope,
  config: Config,
): Promise<{ tables: [string, Row[]][]; firstNumber?: number; groupCounts?: Map<string, number>; vnfsPins?: string[] }> {
  const tables: [string, Row[]][] = [];
  if (scope.vnfsSync) {
    const { tables: t, pins } = await readVnfsSync(tx, scope.vnfsSync.name);
    tables.push(...t);
    return { tables, vnfsPins: pins };
  }
  for (const t of SMALL) tables.push([t, (await tx.unsafe(`SELECT * FROM ${t}`)) as unknown as Row[]]);
  const nodes = new Map<string, Row>();
  for (const c of scope.nodes) {
    for (const r of (await tx.unsafe(`SELECT * FROM nodes WHERE ${c.sql}`, c.params as never[])) as unknown as Row[]) nodes.set(r.mac as string, r);
  }
  let firstNumber: number | undefined;
  if (scope.names) {
    const naming = await freeNames(tx, config, scope.names);
    // Used up there: the names SQLite's naming would scan (the prefix's).
    const rows = naming
      ? await tx.unsafe(`SELECT * FROM nodes WHERE name = ANY($1)`, [naming.between] as never[])
      : await tx.unsafe(`SELECT * FROM nodes WHERE starts_with(name, $1)`, [parseNamePattern(config.nodes.name_pattern).prefix] as never[]);
    for (const r of rows as unknown as Row[]) nodes.set(r.mac as string, r);
    firstNumber = naming?.first;
  }
  const macs = [...nodes.keys()];
  tables.push(['nodes', [...nodes.values()]]);
  if (scope.nodePlates) {
    const plates = (await tx.unsafe(`SELECT mac, name, ip, grp, created_at, updated_at FROM nodes WHERE NOT (mac = ANY($1))`, [macs] as never[])) as unknown as Row[];
    tables.push(['nodes', plates]);
  }
  for (const t of NODE_ROWS) {
    if (t === 'leases' && scope.leases) continue;
    if (t === 'leases6' && scope.leases6) continue;
    tables.push([t, macs.length ? ((await tx.unsafe(`SELECT * FROM ${t} WHERE mac = ANY($1)`, [macs] as never[])) as unknown as Row[]) : []]);
  }
  if (scope.leases) tables.push(['leases', (await tx.unsafe(`SELECT * FROM leases WHERE ${scope.leases.sql}`, scope.leases.params as never[])) as unknown as Row[]]);
  if (scope.leases6) tables.push(['leases6', (await tx.unsafe(`SELECT * FROM leases6`)) as unknown as Row[]]);
  let groupCounts: Map<string, number> | undefined;
  if (scope.groupCounts) {
    groupCounts = new Map();
    for (const r of await tx`SELECT g, (SELECT count(*) FROM nodes WHERE grp = g)::int AS n FROM unnest(${tx.array(scope.groupCounts)}::text[]) AS g`) groupCounts.set(r.g as string, Number(r.n));
  }
  return { tables, firstNumber, groupCounts };
}

/**
 * `vnfs sync`'s rows: with a target NAME its VNFS row, attributes and revisions (a missing one
 * reads nothing: the command refuses it as on SQLite); without, every VNFS, the node pins (no node
 * rows: a query over the pin column), and only the revisions it syncs: each VNFS's current one
 * and the pinned ones (a pin NAME@REV names revision REV of every VNFS it starts with, as the
 * command reads it).
 */
async function readVnfsSync(tx: TxSql, name: string | undefined): Promise<{ tables: [string, Row[]][]; pins?: string[] }> {
  const rows = async (q: string, params: Params = []) => (await tx.unsafe(q, params as never[])) as unknown as Row[];
  if (name !== undefined) {
    return {
      tables: [
        ['vnfs', await rows('SELECT * FROM vnfs WHERE name = $1', [name])],
        ['vnfs_attrs', await rows('SELECT * FROM vnfs_attrs WHERE vnfs = $1', [name])],
        ['vnfs_revisions', await rows('SELECT * FROM vnfs_revisions WHERE vnfs = $1', [name])],
      ],
    };
  }
  const pinRows = (await rows(PINS_SQL)) as { vnfs: string; first: string }[];
  // SQLite's ORDER BY name: binary (UTF-8 byte) order.
  const pins = pinRows.sort((a, b) => Buffer.compare(Buffer.from(a.first), Buffer.from(b.first))).map((r) => r.vnfs);
  return {
    pins,
    tables: [
      ['vnfs', await rows('SELECT * FROM vnfs')],
      ['vnfs_attrs', await rows('SELECT * FROM vnfs_attrs')],
      [
        'vnfs_revisions',
        await rows(
          `SELECT r.* FROM vnfs_revisions r WHERE r.rev = (SELECT current_rev FROM vnfs v WHERE v.name = r.vnfs)
             OR EXISTS (SELECT 1 FROM unnest($1::text[]) p WHERE starts_with(p, r.vnfs || '@') AND right(p, length(r.rev::text) + 1) = '@' || r.rev::text)`,
          [pins],
        ),
      ],
    ],
  };
}

/**
 * The first `count` free numbers of nodes.name_pattern at or after nodes.first_number, computed
 * in PostgreSQL (numbers as naming.ts's numberOf reads a name: canonical spelling only), and the
 * names holding the numbers between the first and the last of them. Undefined when the pattern
 * is used up there (the local naming then reports it, over the names loaded).
 */
async function freeNames(tx: TxSql, config: Config, count: number): Promise<{ first: number; between: string[] } | undefined> {
  const p = parseNamePattern(config.nodes.name_pattern);
  const first = config.nodes.first_number;
  const rows = (await tx.unsafe(
    `WITH used AS (
       SELECT DISTINCT m::numeric AS n FROM (
         SELECT substr(name, $1::int + 1, length(name) - $1::int - $2::int) AS m FROM nodes
         WHERE starts_with(name, $3) AND right(name, $2::int) = $4 AND length(name) > $1::int + $2::int) s
       WHERE m ~ '^[0-9]+$' AND (length(m) = $5::int OR (length(m) > $5::int AND left(m, 1) <> '0')) AND m::numeric >= $6::numeric)
     SELECT g::text AS free FROM generate_series($6::bigint, $6::bigint + (SELECT count(*) FROM used) + $7::bigint) g
     WHERE NOT EXISTS (SELECT 1 FROM used WHERE used.n = g) ORDER BY g LIMIT $7::bigint`,
    [p.prefix.length, p.suffix.length, p.prefix, p.suffix, p.width, first, count] as never[],
  )) as unknown as { free: string }[];
  const free = rows.map((r) => Number(r.free));
  if (!free.length || free[free.length - 1]! > 10 ** p.width - 1) return undefined;
  const between: string[] = [];
  const freeSet = new Set(free);
  for (let n = free[0]!; n <= free[free.length - 1]!; n++) if (!freeSet.has(n)) between.push(formatName(p, n));
  return { first: free[0]!, between };
}
