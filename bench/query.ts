/**
 * `node list QUERY` at scale (issue 19): a 100 000-node SQLite store built once in a temporary
 * directory (groups, VNFS pins, states, 5-7 attributes per node), then for each query the median
 * of N runs of
 *   - query:  NodeService.list([QUERY]) in this process (compiled SQL + rows to Node objects with
 *             all their attributes), wall and CPU time,
 *   - action: the whole `node list QUERY` command in this process (query, stale flags, table),
 *   - cli:    `pxeherd node list QUERY` as a child process (bin/pxeherd, the launcher, where the
 *             checkout has one, else `node dist/cli.js`), start to exit (wall time; CPU
 *             time user + system through /usr/bin/time when installed); cli_json: the same with --json,
 *   - pg:     PostgresBackend.listNodes(QUERY) on a private PostgreSQL holding a `db copy` of the
 *             same store (with --pg; test/lab/postgres.ts),
 *   - pg_cli: `node dist/cli.js node list QUERY --database postgres://...` on that PostgreSQL
 *             (wall, and CPU time of the CLI process: PostgreSQL's own CPU is not in it);
 *             pg_cli_json: the same with --json; with --pg-baseline CHECKOUT (a built checkout of
 *             the code before, e.g. the branch point 4804833, whose CLI loaded the whole database
 *             into an in-memory replica per command) the same commands through that code,
 *             interleaved run by run (--pg-baseline-runs, default 1: it loads the whole database
 *             per command), and their --json outputs compared byte for byte.
 * Figures, not pass/fail. Run `npm run build` first (the CLI column runs dist/cli.js).
 *
 * With --baseline CHECKOUT (a pxeherd checkout of the code before, `npm run build` done there,
 * e.g. /work/main at the branch point) the same queries also run through that code, on a copy
 * of the store (without migration 8, its indexes dropped, when that code predates it), interleaved with
 * this code's runs: on a shared machine only such same-run ratios mean much.
 *
 *   node --import tsx bench/query.ts [--nodes 100000] [--runs 15] [--pg [--pg-baseline CHECKOUT]] [--json] [--keep DIR] [--baseline CHECKOUT]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Store } from '../src/store/store.js';
import { NodeService } from '../src/nodes/service.js';
import { parseConfig } from '../src/config/load.js';
import { queryContextFor } from '../src/inventory/context.js';
import { main } from '../src/cli/main.js';
import { rng } from '../test/helpers/rng.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : dflt);
const N = Number(opt('--nodes', '100000'));
const RUNS = Number(opt('--runs', '15'));
const CLI_RUNS = Math.max(3, Math.ceil(RUNS / 3));
const withPg = args.includes('--pg');
const asJson = args.includes('--json');
const keep = args.includes('--keep') ? opt('--keep', '') : '';
const baseline = args.includes('--baseline') ? path.resolve(opt('--baseline', '')) : '';
const pgBaseline = args.includes('--pg-baseline') ? path.resolve(opt('--pg-baseline', '')) : '';
/** Runs of the code before on PostgreSQL per query (it loads the whole database each time: 10+ s at 10 000 nodes). */
const PG_BASE_RUNS = Number(opt('--pg-baseline-runs', '1'));
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// 12 groups of about equal size: group:compute is ~8 % of the nodes.
const GROUPS = ['compute', 'gpu', 'infra', 'storage', 'login', 'bigmem', 'io', 'test', 'batch', 'viz', 'svc', 'edge'];
const VNFS = ['deb12', 'deb12@3', 'deb12@4', 'deb11', 'rocky9', 'rocky8', 'alma9', 'ubuntu24', 'ubuntu22', 'sles15', 'deb12@5', ''];
const STATES = ['ready', 'ready', 'ready', 'ready', 'ready', 'ready', 'init', 'discovery', 'install', ''];

/** Build the store with plain INSERTs in one transaction (the registration path is not what is measured). */
function build(dir: string): void {
  const store = Store.open(dir);
  const r = rng(19);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const db = store.db;
  const now = Date.now();
  const insNode = db.prepare(
    `INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insAttr = db.prepare('INSERT INTO node_attrs (mac, key, value) VALUES (?, ?, ?)');
  db.transaction(() => {
    for (const g of GROUPS) db.prepare('INSERT INTO groups (name, created_at) VALUES (?, ?)').run(g, now);
    db.prepare("INSERT INTO group_attrs (grp, key, value) VALUES ('edge', 'checkin_interval', '600')").run();
    for (let i = 0; i < N; i++) {
      const mac = `52:54:${((i >> 24) & 255).toString(16).padStart(2, '0')}:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      const grp = pick(GROUPS);
      const contact = r() < 0.9 ? now - Math.floor(r() * 3_600_000) : null;
      insNode.run(mac, `n${String(i).padStart(6, '0')}`, grp, pick(VNFS), r() < 0.97 ? 1 : 0, r() < 0.02 ? 1 : 0, pick(STATES),
        r() < 0.8 ? `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` : '', contact, pick(['provision', 'provision', 'local', 'once'] as const), now, now);
      insAttr.run(mac, 'rack', `r${String(1 + Math.floor(r() * 250)).padStart(3, '0')}`);
      insAttr.run(mac, 'room', pick(['A', 'B', 'C', 'D']));
      insAttr.run(mac, 'serial', `SN${(1_000_000 + i * 7).toString(36).toUpperCase()}`);
      insAttr.run(mac, 'cores', String(pick([16, 32, 48, 64, 96, 128])));
      insAttr.run(mac, 'mem_gb', String(pick([64, 128, 256, 512, 1024])));
      if (grp === 'gpu' || r() < 0.02) insAttr.run(mac, 'gpu_model', pick(['a100', 'h100', 'l40s']));
      if (r() < 0.05) insAttr.run(mac, 'install', 'disk');
    }
  }).immediate();
  db.exec('ANALYZE');
  store.close();
}

/** Representative queries: attribute equality, group, vnfs, state, AND/OR/NOT, selective and ~8 %. */
const QUERIES = [
  'attr:rack,r042',
  'group:compute',
  'vnfs:rocky9',
  'state:install',
  'group:gpu and attr:gpu_model,h100 and not state:ready',
  '(group:login or group:viz) and attr:room,B',
  'attr:serial,SNRRDI',
  'name:n04217*',
  'group:compute and not attr:install',
  'attr:cores>=96 and group:bigmem',
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const round = (x: number) => Math.round(x * 10) / 10;

const dir = keep || fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-bench-query-'));
const cfgFile = path.join(dir, 'pxeherd.yaml');
if (!fs.existsSync(path.join(dir, 'pxeherd.db'))) {
  const t = process.hrtime.bigint();
  build(dir);
  fs.writeFileSync(cfgFile, `statedir: ${dir}\n`);
  process.stderr.write(`built ${N} nodes in ${dir} in ${round(ms(t) / 1000)} s\n`);
}

const store = Store.open(dir);
const config = parseConfig({ statedir: dir });
const svc = new NodeService(store, config, queryContextFor(store));
const silent = { out: () => undefined, err: (s: string) => process.stderr.write(s) };

/** The code before, on a copy of the store as it was before migration 8. */
interface Baseline {
  list: (q: string) => unknown[];
  cfgFile: string;
  close: () => void;
}
let base: Baseline | undefined;
if (baseline) {
  const baseDir = path.join(dir, 'baseline');
  const baseCfg = path.join(baseDir, 'pxeherd.yaml');
  if (!fs.existsSync(path.join(baseDir, 'pxeherd.db'))) {
    fs.mkdirSync(baseDir, { recursive: true });
    store.db.prepare('VACUUM INTO ?').run(path.join(baseDir, 'pxeherd.db'));
    const Database = (await import('better-sqlite3')).default;
    const old = new Database(path.join(baseDir, 'pxeherd.db'));
    // A baseline from before migration 8 gets the store as it was then; one with it (main since
    // session 6) reads the same store.
    const baseVersion = (await import(path.join(baseline, 'src/store/db.ts'))).SCHEMA_VERSION as number;
    if (baseVersion < 8) for (const ix of ['node_attrs_key_value', 'nodes_name_nocase', 'nodes_grp_nocase', 'nodes_vnfs_nocase', 'nodes_state_nocase']) old.exec(`DROP INDEX IF EXISTS ${ix}`);
    if (baseVersion < 8) old.pragma('user_version = 7');
    old.exec('ANALYZE');
    old.close();
    fs.writeFileSync(baseCfg, `statedir: ${baseDir}\n`);
  }
  const S = (await import(path.join(baseline, 'src/store/store.ts'))).Store as typeof Store;
  const NS = (await import(path.join(baseline, 'src/nodes/service.ts'))).NodeService as typeof NodeService;
  const LC = (await import(path.join(baseline, 'src/config/load.ts'))).parseConfig as typeof parseConfig;
  const QC = (await import(path.join(baseline, 'src/inventory/context.ts'))).queryContextFor as typeof queryContextFor;
  const bstore = S.open(baseDir);
  const bsvc = new NS(bstore, LC({ statedir: baseDir }), QC(bstore));
  base = { list: (q) => bsvc.list([q]), cfgFile: baseCfg, close: () => bstore.close() };
}

interface Row {
  query: string;
  rows: number;
  query_ms: number;
  query_cpu_ms: number;
  action_ms: number;
  cli_ms: number;
  cli_cpu_ms?: number;
  cli_json_ms: number;
  pg_ms?: number;
  pg_cli_ms?: number;
  pg_cli_cpu_ms?: number;
  pg_cli_json_ms?: number;
  base_pg_cli_ms?: number;
  base_pg_cli_cpu_ms?: number;
  base_pg_cli_json_ms?: number;
  base_query_ms?: number;
  base_query_cpu_ms?: number;
  base_cli_ms?: number;
  base_cli_cpu_ms?: number;
}

/** CPU time (user + system) of the child, from GNU time when installed: less noisy than wall time on a shared machine. */
const GNU_TIME = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
function cli(argv: string[], checkout = repo, keepOut = false): { wall: number; cpu?: number; stdout?: string } {
  const t = process.hrtime.bigint();
  // The installed command: bin/pxeherd (the launcher that starts from the CLI's snapshot) where the checkout has it.
  const launcher = path.join(checkout, 'bin/pxeherd');
  const pxeherd = fs.existsSync(launcher) ? [launcher] : [process.execPath, path.join(checkout, 'dist/cli.js')];
  const cmd = GNU_TIME ? [GNU_TIME, '-f', 'cpu %U %S', ...pxeherd] : pxeherd;
  const p = spawnSync(cmd[0]!, [...cmd.slice(1), ...argv], { stdio: ['ignore', keepOut ? 'pipe' : 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 30 });
  const wall = ms(t);
  if (p.status !== 0) throw new Error(`pxeherd ${argv.join(' ')}: exit ${p.status}: ${p.stderr}`);
  const m = /cpu ([\d.]+) ([\d.]+)/.exec(p.stderr);
  return { wall, cpu: m ? (Number(m[1]) + Number(m[2])) * 1000 : undefined, ...(keepOut ? { stdout: p.stdout } : {}) };
}
const results: Row[] = [];
for (const q of QUERIES) {
  const rows = svc.list([q]).length;
  const tq: number[] = [];
  const cq: number[] = [];
  const ta: number[] = [];
  const tc: number[] = [];
  const cc: number[] = [];
  const tj: number[] = [];
  const bq: number[] = [];
  const bcq: number[] = [];
  const bc: number[] = [];
  const bcc: number[] = [];
  if (base && base.list(q).length !== rows) throw new Error(`${q}: the baseline selects ${base.list(q).length} nodes, this code ${rows}`);
  for (let i = 0; i < RUNS; i++) {
    if (base) {
      const c0 = process.cpuUsage();
      const t = process.hrtime.bigint();
      base.list(q);
      bq.push(ms(t));
      const c = process.cpuUsage(c0);
      bcq.push((c.user + c.system) / 1000);
    }
    const c0 = process.cpuUsage();
    let t = process.hrtime.bigint();
    svc.list([q]);
    tq.push(ms(t));
    const c = process.cpuUsage(c0);
    cq.push((c.user + c.system) / 1000);
    t = process.hrtime.bigint();
    if ((await main(['node', 'list', q, '--config', cfgFile], silent)) !== 0) throw new Error(`node list ${q} failed`);
    ta.push(ms(t));
  }
  for (let i = 0; i < CLI_RUNS; i++) {
    const r = cli(['node', 'list', q, '--config', cfgFile]);
    tc.push(r.wall);
    if (r.cpu !== undefined) cc.push(r.cpu);
    tj.push(cli(['node', 'list', q, '--json', '--config', cfgFile]).wall);
    if (base) {
      const b = cli(['node', 'list', q, '--config', base.cfgFile], baseline);
      bc.push(b.wall);
      if (b.cpu !== undefined) bcc.push(b.cpu);
    }
  }
  results.push({
    query: q, rows, query_ms: round(median(tq)), query_cpu_ms: round(median(cq)), action_ms: round(median(ta)),
    cli_ms: round(median(tc)), ...(cc.length ? { cli_cpu_ms: round(median(cc)) } : {}), cli_json_ms: round(median(tj)),
    ...(base ? { base_query_ms: round(median(bq)), base_query_cpu_ms: round(median(bcq)), base_cli_ms: round(median(bc)), ...(bcc.length ? { base_cli_cpu_ms: round(median(bcc)) } : {}) } : {}),
  });
  if (!asJson) process.stderr.write(`${q}: ${rows} rows, query ${round(median(tq))} ms, action ${round(median(ta))} ms, cli ${round(median(tc))} ms\n`);
}
store.close();
base?.close();

// Process start-up alone: what `--help` of the node command costs.
const th: number[] = [];
const ch: number[] = [];
const bth: number[] = [];
const bch: number[] = [];
for (let i = 0; i < CLI_RUNS; i++) {
  const r = cli(['node', 'list', '--help']);
  th.push(r.wall);
  if (r.cpu !== undefined) ch.push(r.cpu);
  if (base) {
    const b = cli(['node', 'list', '--help'], baseline);
    bth.push(b.wall);
    if (b.cpu !== undefined) bch.push(b.cpu);
  }
}

if (withPg) {
  const { startPostgres } = await import('../test/lab/postgres.js');
  const { connectPostgres } = await import('../src/store/pg/connect.js');
  const { copySqliteToPostgres } = await import('../src/store/copy.js');
  const { PostgresBackend } = await import('../src/store/pg/backend.js');
  const pg = await startPostgres({ database: 'bench' });
  try {
    const url = pg.url('bench');
    const sql = connectPostgres(url, { max: 1 });
    await copySqliteToPostgres(path.join(dir, 'pxeherd.db'), sql);
    await sql.unsafe('ANALYZE');
    await sql.end();
    const b = PostgresBackend.connect(url, 'bench', { max: 2 });
    for (const r of results) {
      const n = (await b.listNodes(r.query)).length;
      if (n !== r.rows) throw new Error(`${r.query}: PostgreSQL returned ${n} rows, SQLite ${r.rows}`);
      const t: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const t0 = process.hrtime.bigint();
        await b.listNodes(r.query);
        t.push(ms(t0));
      }
      r.pg_ms = round(median(t));
    }
    await b.close();
    // The whole CLI on PostgreSQL, this code and (with --pg-baseline) the code before, alternated.
    // Stale flags move with the clock (contacts up to an hour back): outputs compared without them.
    const unstale = (x?: string) => x?.replace(/"stale": (true|false)/g, '"stale": ?');
    for (const r of results) {
      const argv = ['node', 'list', r.query, '--config', cfgFile, '--database', url];
      const tc: number[] = [];
      const cc: number[] = [];
      const tj: number[] = [];
      const btc: number[] = [];
      const bcc: number[] = [];
      const btj: number[] = [];
      for (let i = 0; i < CLI_RUNS; i++) {
        const first = i === 0;
        const mine = cli(argv, repo, first);
        const mineJson = cli([...argv, '--json'], repo, first);
        tc.push(mine.wall);
        if (mine.cpu !== undefined) cc.push(mine.cpu);
        tj.push(mineJson.wall);
        if (first) {
          const lite = cli(['node', 'list', r.query, '--json', '--config', cfgFile], repo, true);
          if (unstale(lite.stdout) !== unstale(mineJson.stdout)) throw new Error(`${r.query}: --json on PostgreSQL differs from SQLite's`);
        }
        if (pgBaseline && i < PG_BASE_RUNS) {
          const b0 = cli(argv, pgBaseline, first);
          const bj = cli([...argv, '--json'], pgBaseline, first);
          btc.push(b0.wall);
          if (b0.cpu !== undefined) bcc.push(b0.cpu);
          btj.push(bj.wall);
          // Same bytes, except the text table's "LAST CONTACT" ages, which move with the clock.
          if (first && unstale(bj.stdout) !== unstale(mineJson.stdout)) {
            fs.writeFileSync(path.join(os.tmpdir(), 'pxeherd-bench-query-before.json'), bj.stdout!);
            fs.writeFileSync(path.join(os.tmpdir(), 'pxeherd-bench-query-after.json'), mineJson.stdout!);
            throw new Error(`${r.query}: --json differs from the code before (both in ${os.tmpdir()}/pxeherd-bench-query-{before,after}.json)`);
          }
        }
      }
      Object.assign(r, {
        pg_cli_ms: round(median(tc)), ...(cc.length ? { pg_cli_cpu_ms: round(median(cc)) } : {}), pg_cli_json_ms: round(median(tj)),
        ...(pgBaseline ? { base_pg_cli_ms: round(median(btc)), ...(bcc.length ? { base_pg_cli_cpu_ms: round(median(bcc)) } : {}), base_pg_cli_json_ms: round(median(btj)) } : {}),
      });
      if (!asJson) process.stderr.write(`${r.query}: PostgreSQL cli ${r.pg_cli_ms} ms${pgBaseline ? `, before (whole replica) ${r.base_pg_cli_ms} ms` : ''}\n`);
    }
  } finally {
    await pg.stop();
  }
}
if (!keep) fs.rmSync(dir, { recursive: true, force: true });

const summary = { nodes: N, runs: RUNS, cli_runs: CLI_RUNS, cpus: os.cpus().length, loadavg: os.loadavg().map(round), startup_help_ms: round(median(th)), startup_help_cpu_ms: ch.length ? round(median(ch)) : null, ...(base ? { base_startup_help_ms: round(median(bth)), base_startup_help_cpu_ms: bch.length ? round(median(bch)) : null } : {}), results };
if (asJson) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
else {
  process.stdout.write(`${N} nodes, median of ${RUNS} runs (cli: ${CLI_RUNS}), load ${summary.loadavg.join(' ')}; \`pxeherd node list --help\` ${summary.startup_help_ms} ms (cpu ${summary.startup_help_cpu_ms ?? '-'} ms)${base ? `, before ${summary.base_startup_help_ms} ms (cpu ${summary.base_startup_help_cpu_ms ?? '-'} ms)` : ''}\n`);
  const cols = [
    'rows', 'query_ms', 'query_cpu_ms', 'action_ms', 'cli_ms', 'cli_cpu_ms', 'cli_json_ms', ...(withPg ? ['pg_ms', 'pg_cli_ms', 'pg_cli_cpu_ms', 'pg_cli_json_ms'] : []),
    ...(pgBaseline ? ['base_pg_cli_ms', 'base_pg_cli_cpu_ms', 'base_pg_cli_json_ms'] : []),
    ...(base ? ['base_query_ms', 'base_query_cpu_ms', 'base_cli_ms', 'base_cli_cpu_ms'] : []),
  ] as const;
  process.stdout.write(['query'.padEnd(56), ...cols.map((c) => c.padStart(12))].join(' ') + '\n');
  for (const r of results) process.stdout.write([r.query.padEnd(56), ...cols.map((c) => String(r[c as keyof Row] ?? '-').padStart(12))].join(' ') + '\n');
}
