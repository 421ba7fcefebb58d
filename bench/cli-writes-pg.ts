/**
 * Writing CLI commands (and explain/script) on PostgreSQL: wall and CPU time of the CLI process
 * per command, this code against a built checkout of the code before (--baseline CHECKOUT: its
 * writing commands loaded the whole database into an in-memory replica), same run, same private
 * PostgreSQL (test/lab/postgres.ts) holding a `db copy` of an N-node store. Runs alternate
 * baseline / this code. CPU is the CLI process's user + system (GNU time); PostgreSQL's own CPU is
 * not in it.
 *
 * `node import -` (100 new nodes as CSV on standard input, deleted again after each run) and
 * `exec` (every group's SSH points at a closed port on loopback: each node refuses the connection
 * at once, so the figure is the command's own cost, not SSH's) are in the list too; `vnfs sync`
 * (with and without a target) over an image of two revisions that every node uses, one node in
 * ten pinned to its first revision (built with mksquashfs when the list has it).
 *
 *   node --import tsx bench/cli-writes-pg.ts [--nodes 10000] [--runs 3] [--baseline CHECKOUT] [--baseline-runs 1] [--only REGEX] [--import-nodes 100] [--json]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Store } from '../src/store/store.js';
import { startPostgres } from '../test/lab/postgres.js';
import { connectPostgres } from '../src/store/pg/connect.js';
import { migratePostgres } from '../src/store/pg/schema.js';
import { copySqliteToPostgres } from '../src/store/copy.js';

const args = process.argv.slice(2);
const opt = (k: string, d: string) => (args.includes(k) ? args[args.indexOf(k) + 1]! : d);
const N = Number(opt('--nodes', '10000'));
const RUNS = Number(opt('--runs', '3'));
const baseline = args.includes('--baseline') ? path.resolve(opt('--baseline', '')) : '';
const BASE_RUNS = Number(opt('--baseline-runs', '1'));
const ONLY = new RegExp(opt('--only', ''));
const IMPORT = Number(opt('--import-nodes', '100'));
const repo = path.resolve(import.meta.dirname, '..');
const GNU_TIME = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

const macOf = (i: number) => `52:54:${[24, 16, 8, 0].map((s) => ((i >> s) & 255).toString(16).padStart(2, '0')).join(':')}`;
const GROUPS = ['compute', 'gpu', 'bigmem', 'login', 'viz', 'edge'];

function build(dir: string): void {
  const store = Store.open(dir, { serverId: 'bench' });
  const db = store.db;
  const now = Date.now();
  const insNode = db.prepare(
    `INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at) VALUES (?, ?, ?, '', 1, 0, 'ready', ?, ?, 'provision', ?, ?)`,
  );
  const insAttr = db.prepare('INSERT INTO node_attrs (mac, key, value) VALUES (?, ?, ?)');
  db.transaction(() => {
    for (const g of GROUPS) {
      db.prepare('INSERT INTO groups (name, created_at) VALUES (?, ?)').run(g, now);
      // exec: SSH to a closed port on loopback (refused at once), never to the nodes' addresses.
      db.prepare("INSERT INTO group_attrs (grp, key, value) VALUES (?, 'ssh_host', '127.0.0.1'), (?, 'ssh_port', '9')").run(g, g);
    }
    for (let i = 0; i < N; i++) {
      const mac = macOf(i);
      insNode.run(mac, `n${String(i).padStart(6, '0')}`, GROUPS[i % GROUPS.length], `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, now - (i % 3600) * 1000, now, now);
      insAttr.run(mac, 'rack', `r${String(1 + (i % 250)).padStart(3, '0')}`);
      insAttr.run(mac, 'room', 'ABCD'[i % 4]!);
      insAttr.run(mac, 'cores', String([16, 32, 64, 128][i % 4]));
    }
  }).immediate();
  store.close();
}

/** Image img with revisions 1 and 2 (current), nodes using it, one in ten pinned to r1 (SQLite, before the copy). */
function image(dir: string): void {
  const tree = `${dir}-tree`; // outside the state directory (import refuses one inside)
  const cfg = path.join(dir, 'lite.yaml');
  fs.writeFileSync(cfg, `statedir: ${dir}\nserver_id: bench\n`);
  for (const r of [1, 2]) {
    fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'etc', 'hostname'), `r${r}\n`);
    const p = spawnSync(process.execPath, [path.join(repo, 'dist/cli.js'), 'vnfs', 'import', 'img', tree, '--config', cfg], { encoding: 'utf8' });
    if (p.status !== 0) throw new Error(`vnfs import: ${p.stderr}`);
  }
  const store = Store.open(dir, { serverId: 'bench' });
  store.db.prepare("UPDATE nodes SET vnfs = CASE WHEN rowid % 10 = 0 THEN 'img@1' ELSE 'img' END").run();
  store.close();
  fs.rmSync(tree, { recursive: true, force: true });
}

function cli(checkout: string, argv: string[], okCodes = [0], input?: string): { wall: number; cpu?: number } {
  const t = process.hrtime.bigint();
  const cmd = GNU_TIME ? [GNU_TIME, '-f', 'cpu %U %S', process.execPath] : [process.execPath];
  const p = spawnSync(cmd[0]!, [...cmd.slice(1), path.join(checkout, 'dist/cli.js'), ...argv], { stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'], input, encoding: 'utf8' });
  const wall = Number(process.hrtime.bigint() - t) / 1e6;
  if (!okCodes.includes(p.status ?? -1)) throw new Error(`${checkout}: pxeherd ${argv.join(' ')}: exit ${p.status}: ${p.stderr}`);
  const m = /cpu ([\d.]+) ([\d.]+)/.exec(p.stderr);
  return { wall, cpu: m ? (Number(m[1]) + Number(m[2])) * 1000 : undefined };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-bench-cliw-'));
const pg = await startPostgres();
try {
  const t0 = Date.now();
  build(dir);
  if (ONLY.test('vnfs sync')) image(dir);
  const url = await pg.createDatabase('cliw');
  const sql = connectPostgres(url, { max: 1 });
  await migratePostgres(sql);
  await copySqliteToPostgres(path.join(dir, 'pxeherd.db'), sql);
  await sql.end();
  const cfg = path.join(dir, 'pxeherd.yaml');
  fs.writeFileSync(cfg, `statedir: ${dir}\nserver_id: bench\ndatabase: ${url}\nnodes: { name_pattern: "n######", first_number: 0 }\n`);
  process.stderr.write(`built ${N} nodes and copied them to PostgreSQL in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

  // Each run leaves the database as it found it (the added node is deleted again).
  const mid = Math.floor(N / 2);
  const importMacs = (r: number) => Array.from({ length: IMPORT }, (_, i) => `02:01:${String(r % 100).padStart(2, '0')}:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`);
  const COMMANDS: { label: string; argv: (run: number) => string[]; ok?: number[]; input?: (run: number) => string; cleanup?: (run: number) => string[] }[] = [
    { label: 'node add MAC (name from the pattern)', argv: (r) => ['node', 'add', `02:00:00:00:${String(r % 100).padStart(2, '0')}:01`] },
    { label: 'node set attr.note=X NAME', argv: (r) => ['node', 'set', `attr.note=x${r}`, `n${String(mid).padStart(6, '0')}`] },
    { label: "node set boot local 'group:gpu and attr:rack,r042'", argv: () => ['node', 'set', 'boot', 'local', 'group:gpu and attr:rack,r042'] },
    { label: 'node disable NAME', argv: () => ['node', 'disable', `n${String(mid + 1).padStart(6, '0')}`] },
    { label: 'node delete MAC (the one added)', argv: (r) => ['node', 'delete', `02:00:00:00:${String(r % 100).padStart(2, '0')}:01`] },
    { label: 'group set gpu vlan N', argv: (r) => ['group', 'set', 'gpu', 'vlan', String(100 + r)] },
    { label: 'explain MAC', argv: () => ['explain', macOf(mid)] },
    { label: 'script list NAME', argv: () => ['script', 'list', `n${String(mid).padStart(6, '0')}`] },
    {
      label: `node import - (${IMPORT} new nodes, CSV on stdin, names from the pattern)`,
      argv: () => ['node', 'import', '-', '--format', 'csv'],
      input: (r) => 'mac,group\n' + importMacs(r).map((m) => `${m},gpu\n`).join(''),
      cleanup: (r) => ['node', 'delete', ...importMacs(r)],
    },
    { label: "exec 'group:gpu and attr:rack,r042' -- true (refused; 1 node in 750)", argv: () => ['exec', 'group:gpu and attr:rack,r042', '--config', cfg, '--', 'true'], ok: [1] },
    { label: 'vnfs sync (current revisions and the pinned ones)', argv: () => ['vnfs', 'sync'] },
    { label: 'vnfs sync img@1', argv: () => ['vnfs', 'sync', 'img@1'] },
    { label: 'exec NAME -- true (refused)', argv: () => ['exec', `n${String(mid).padStart(6, '0')}`, '--config', cfg, '--', 'true'], ok: [1] },
  ].filter((c) => ONLY.test(c.label));
  const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);
  const rows: { command: string; wall: number; cpu: number; baseWall?: number; baseCpu?: number }[] = [];
  const times = new Map<string, { w: number[]; c: number[]; bw: number[]; bc: number[] }>(COMMANDS.map((c) => [c.label, { w: [], c: [], bw: [], bc: [] }]));
  // Run by run, the whole list, alternating baseline and this code.
  for (let r = 0; r < RUNS; r++) {
    for (const who of baseline && r < BASE_RUNS ? [baseline, repo] : [repo]) {
      for (const c of COMMANDS) {
        const run = r * 2 + (who === repo ? 1 : 0);
        // exec's options go before its `--` (they are in its argv).
        const argv = c.argv(run);
        const x = cli(who, argv.includes('--') ? argv : [...argv, '--config', cfg], c.ok, c.input?.(run));
        if (c.cleanup) cli(repo, [...c.cleanup(run), '--config', cfg]);
        const t = times.get(c.label)!;
        (who === repo ? t.w : t.bw).push(x.wall);
        (who === repo ? t.c : t.bc).push(x.cpu ?? NaN);
      }
    }
  }
  for (const c of COMMANDS) {
    const t = times.get(c.label)!;
    rows.push({ command: c.label, wall: median(t.w), cpu: median(t.c), ...(baseline ? { baseWall: median(t.bw), baseCpu: median(t.bc) } : {}) });
  }
  const help = cli(repo, ['node', 'add', '--help']);
  if (args.includes('--json')) console.log(JSON.stringify({ nodes: N, runs: RUNS, helpCpuMs: help.cpu, rows }, null, 2));
  else {
    console.log(`${N} nodes, ${RUNS} runs (baseline ${baseline ? BASE_RUNS : 0}); \`node add --help\` ${help.cpu} ms CPU`);
    console.log('| command | this code wall / CPU (ms) | code before wall / CPU (ms) | CPU ratio |');
    console.log('|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.command} | ${Math.round(r.wall)} / ${Math.round(r.cpu)} | ${baseline ? `${Math.round(r.baseWall!)} / ${Math.round(r.baseCpu!)}` : '-'} | ${baseline ? `${(r.baseCpu! / r.cpu).toFixed(1)}× less` : '-'} |`);
  }
} finally {
  await pg.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
