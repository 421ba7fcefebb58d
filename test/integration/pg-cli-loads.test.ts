/**
 * `node import -`, `exec`, `overlay render`, `stage1 build` and the image commands on PostgreSQL
 * load only their rows (src/store/pg/cli-writes.ts), no longer the whole database: the same command
 * lines, in the same order, on SQLite and on a real private PostgreSQL holding a copy of the same
 * data print the same bytes and exit with the same codes, refusals included, and leave the same
 * rows in both databases; and the PostgreSQL path reads only the rows each command needs (counted
 * as pg-cli-writes counts them).
 *
 * Each backend has its own state directory (a copy of the other's, image files included), so an
 * image command writes its revision's files next to its own database.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { CLI, pxeherd, type StateDir } from '../helpers/cli.js';
import { pgCliFixture, pgSideConfig } from '../helpers/pg-fixture.js';
import { postgresUnavailable } from '../lab/postgres.js';
import { freePort } from '../lab/procs.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { parseConfig } from '../../src/config/load.js';
import { openPgCliStore } from '../../src/store/pg/cli-store.js';
import { writeScopeFor } from '../../src/store/pg/cli-writes.js';

const skip = postgresUnavailable() ?? (spawnSync('sh', ['-c', 'command -v mksquashfs']).status !== 0 ? 'needs mksquashfs (squashfs-tools)' : undefined);
let lite: StateDir;
let url: string;
let stop: (() => Promise<void>) | undefined;
/** The PostgreSQL side's configuration: the same, with its own state directory. */
let pgConfig: string;
let closedPort: number;
const N = 30;

before(async () => {
  if (skip) return;
  // Nothing listens there: every exec gets the same "connection refused" on both backends.
  closedPort = await freePort();
  const yaml = 'server_id: loads\nnodes: { name_pattern: "n####", first_number: 1, default_group: compute }\n';
  ({ lite, url, stop } = await pgCliFixture({
    name: 'loads',
    serverId: 'loads',
    yaml,
    fill: (store) => {
      const policy = { pattern: 'n####', firstNumber: 1, defaultGroup: 'compute', defaultVnfs: '' };
      store.nodes.addMany(
        Array.from({ length: N }, (_, i) => ({
          mac: `52:54:00:00:0a:${i.toString(16).padStart(2, '0')}`,
          group: ['compute', 'ssh', 'gpu'][i % 3],
          ip: `10.7.0.${i + 10}`,
          attrs: { rack: `r${i % 4}` },
        })),
        policy,
      );
      // A gap in the names: n0004 is free (an unnamed import takes it first).
      store.nodes.delete(['52:54:00:00:0a:03']);
      // Every node's SSH goes to the closed port on loopback (its group says so), never to its address.
      for (const g of ['compute', 'ssh', 'gpu']) {
        store.groups.set(g, 'ssh_host', '127.0.0.1');
        store.groups.set(g, 'ssh_port', String(closedPort));
      }
      store.groups.set('ssh', 'ssh_user', 'admin');
    },
    then: (lite) => {
      // An image with one revision, two nodes pinned to it and one following it.
      for (const t of ['tree', 'tree2']) {
        fs.mkdirSync(path.join(lite.dir, t, 'etc'), { recursive: true });
        fs.writeFileSync(path.join(lite.dir, t, 'etc', 'hostname'), `${t}\n`);
      }
      for (const args of [['vnfs', 'import', 'img', path.join(lite.dir, 'tree')], ['node', 'set', 'vnfs', 'img@1', 'n000[1-2]'], ['node', 'set', 'vnfs', 'img', 'n0005']]) {
        const r = pxeherd(args, { config: lite.config });
        assert.equal(r.code, 0, r.stderr);
      }
    },
  }));
  pgConfig = pgSideConfig(lite);
});
after(async () => {
  await stop?.();
});

/**
 * Run the CLI with this configuration (and database): the options go before a `--`, after which
 * everything is exec's remote command.
 */
function cli(args: string[], config: string, database?: string, input?: string) {
  const opts = ['--config', config, ...(database ? ['--database', database] : [])];
  const dd = args.indexOf('--');
  return pxeherd(dd < 0 ? [...args, ...opts] : [...args.slice(0, dd), ...opts, ...args.slice(dd)], { input });
}

/** What differs between two runs of the same command (clocks, durations) and nothing else. */
function clocked(r: { code: number; stdout: string; stderr: string }) {
  const t = (s: string) =>
    s
      .replace(/\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{3}Z)?/g, '<time>')
      .replace(/ in \d+\.\d s/g, ' in <s> s')
      .replace(/"ms": \d+/g, '"ms": <ms>');
  return { code: r.code, stdout: t(r.stdout), stderr: t(r.stderr) };
}

interface Case {
  args: string[];
  input?: string;
}

/** In this order on each backend. */
const CASES = (dir: string): Case[] => [
  // node import from standard input: names from the pattern (the gap first), a named one, attributes.
  { args: ['node', 'import', '-', '--format', 'csv'], input: 'mac,name,group,attr.rack\n52:54:00:00:0b:01,,gpu,r9\n52:54:00:00:0b:02,imp2,ssh,r9\n52:54:00:00:0b:03,,,\n' },
  // Refusals: a MAC that exists, a name twice in the file, a bad MAC, no format, an unknown VNFS.
  { args: ['node', 'import', '-', '--format', 'csv', '--json'], input: 'mac,name\n52:54:00:00:0b:04,\n52:54:00:00:0a:00,\n' },
  { args: ['node', 'import', '-', '--format', 'csv'], input: 'mac,name\n52:54:00:00:0b:05,twice\n52:54:00:00:0b:06,twice\n' },
  { args: ['node', 'import', '-', '--format', 'csv'], input: 'mac,name\n52:54:00:00:0b:07,n0010\n' },
  { args: ['node', 'import', '-', '--format', 'json'], input: '[{"mac": "52:54:00:00:0b:zz"}]' },
  { args: ['node', 'import', '-'], input: 'mac\n52:54:00:00:0b:08\n' },
  { args: ['node', 'import', '-', '--format', 'csv'], input: 'mac,vnfs\n52:54:00:00:0b:09,nosuch\n' },
  { args: ['node', 'import', '-', '--format', 'ethers', '--json'], input: '52:54:00:00:0b:0a eth1\n52:54:00:00:0b:0b 10.7.1.2\n' },
  // Many at once (PostgreSQL writes them as one INSERT per table), attributes and addresses included.
  { args: ['node', 'import', '-', '--format', 'csv'], input: 'mac,ip,group,attr.rack,attr.slot\n' + Array.from({ length: 200 }, (_, i) => `52:54:00:00:0d:${i.toString(16).padStart(2, '0')},10.7.2.${i},gpu,r${i % 4},${i}\n`).join('') },
  // exec: by name, glob and query; every node refuses the connection (exit 1), line per node.
  { args: ['exec', '--parallel', '1', 'group:ssh and attr:rack,r1', '--', 'uptime'] },
  { args: ['exec', '--json', 'n0002', 'n00[07-08]', '--', 'echo', 'hi'] },
  { args: ['exec', 'nosuch', '--', 'true'] },
  { args: ['exec', 'group:(ssh', '--', 'true'] },
  // No command: refused before the NODES are read (a bad query included).
  { args: ['exec', 'group:(ssh', 'uptime'] },
  { args: ['exec', 'n0002', '--'] },
  // overlay render: the node's files (its /etc/hosts lists every node), one file, --json.
  { args: ['overlay', 'render', 'n0005'] },
  { args: ['overlay', 'render', 'imp2', '/etc/hosts'] },
  { args: ['overlay', 'render', '52-54-00-00-0a-07', '--json'] },
  { args: ['overlay', 'render', 'nosuch'] },
  // Image commands: a new revision, rollback, prune (keeps what nodes pin), refusals.
  { args: ['vnfs', 'import', 'img', path.join(dir, 'tree2'), '--comment', 'second'] },
  { args: ['vnfs', 'revisions', 'img'] },
  { args: ['vnfs', 'rollback', 'img'] },
  { args: ['vnfs', 'rollback', 'img', '7'] },
  { args: ['vnfs', 'rollback', 'nosuch'] },
  { args: ['vnfs', 'prune', 'img', '--keep', '0', '--json'] },
  { args: ['vnfs', 'import', 'img2', path.join(dir, 'tree')] },
  { args: ['vnfs', 'capture', 'nosuch', 'img'] },
  { args: ['stage1', 'build', '--arch', 'sparc'] },
  { args: ['node', 'list', '--json'] },
];

/** Rows of the tables the commands write, without clocks and ids (normalized, sorted). */
async function stateOf(sqlitePath: string, pgUrl: string): Promise<{ lite: string[]; pg: string[] }> {
  const TABLES = ['groups', 'group_attrs', 'vnfs', 'vnfs_attrs', 'vnfs_revisions', 'nodes', 'node_attrs', 'events'];
  const SKIP = new Set(['created_at', 'updated_at', 'last_contact', 'time', 'id', 'manifest', 'detail', 'server_id']);
  const db = new Database(sqlitePath, { readonly: true });
  const sql = connectPostgres(pgUrl, { max: 1 });
  const out = { lite: [] as string[], pg: [] as string[] };
  try {
    for (const t of TABLES) {
      const liteCols = db.prepare<[], { name: string }>(`PRAGMA table_info("${t}")`).all().map((c) => c.name);
      const pgCols = new Set((await sql`SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ${t}`).map((r) => r.column_name as string));
      const cols = liteCols.filter((c) => pgCols.has(c) && !SKIP.has(c));
      const row = (r: Record<string, unknown>) => `${t} ${JSON.stringify(cols.map((c) => (r[c] === null || r[c] === undefined ? null : String(r[c]))))}`;
      out.lite.push(...(db.prepare(`SELECT ${cols.join(', ')} FROM ${t}`).all() as Record<string, unknown>[]).map(row));
      out.pg.push(...((await sql.unsafe(`SELECT ${cols.join(', ')} FROM ${t}`)) as unknown as Record<string, unknown>[]).map(row));
    }
  } finally {
    db.close();
    await sql.end();
  }
  out.lite.sort();
  out.pg.sort();
  return out;
}

test('node import -, exec, overlay render and the image commands on PostgreSQL print and leave what they do on SQLite, byte for byte, refusals included', { skip, timeout: 600_000 }, async () => {
  let refused = 0;
  for (const c of CASES(lite.dir)) {
    const want = clocked(cli(c.args, lite.config, undefined, c.input));
    const got = clocked(cli(c.args, pgConfig, url, c.input));
    assert.deepEqual(got, want, `pxeherd ${c.args.join(' ')}: PostgreSQL as SQLite`);
    if (want.code !== 0) refused++;
  }
  // Not vacuous: the refusals happened, and the commands did what they say.
  assert.equal(refused, 17, 'import refusals (5), the failed execs (6), overlay of an unknown node, rollback to an unknown revision and VNFS, a pinned revision not pruned, capture of an unknown node, a foreign CPU');
  const list = cli(['node', 'list'], pgConfig, url).stdout;
  assert.match(list, /n0004 +52:54:00:00:0b:01/, 'the import took the gap of the pattern');
  assert.match(cli(['exec', 'n0002', '--', 'true'], pgConfig, url).stderr, new RegExp(`admin@127\\.0\\.0\\.1:${closedPort}`), 'exec reached the node with its group attributes');
  assert.match(cli(['overlay', 'render', 'n0005', '/etc/hosts'], pgConfig, url).stdout, /10\.7\.0\.29\s+n0020/, "the overlay's /etc/hosts lists the other nodes");
  const s = await stateOf(path.join(lite.statedir, 'pxeherd.db'), url);
  assert.ok(s.lite.some((r) => r.startsWith('vnfs_revisions ["img2","1"')), 'the new image is recorded');
  assert.ok(!s.lite.some((r) => r.startsWith('vnfs_revisions ["img","2"')), 'the revision rolled back from is pruned');
  assert.deepEqual(s.pg, s.lite, 'the same rows in both databases');
});

test('the PostgreSQL path of these commands loads only the rows they need', { skip }, async () => {
  const config = parseConfig({ statedir: lite.statedir, database: url, nodes: { name_pattern: 'n####', first_number: 1, default_group: 'compute' } });
  const counts = async (p: string[], args: string[], opts: Record<string, unknown> = {}, read: (f: string) => string = (f) => fs.readFileSync(f, 'utf8')) => {
    const s = await openPgCliStore(config, writeScopeFor(p, args, opts, config, read));
    try {
      return s.scoped!.counts;
    } finally {
      await s.close();
    }
  };
  const total = (await connectPostgresCount(url)).nodes;
  assert.ok(total > 30, `the database has ${total} nodes`);
  // node import from standard input: the MACs, names and addresses it names, and the names between the free ones.
  const imp = await counts(['node', 'import'], ['-'], { format: 'csv' }, (f) => (assert.equal(f, '-'), 'mac,name\n52:54:00:00:0c:01,\n52:54:00:00:0a:01,\n'));
  assert.ok(imp.nodes! <= 3, `node import - reads the MACs it names and the names up to the free ones (${imp.nodes})`);
  // exec over a query: the nodes the compiled SQL selects (with their attributes).
  const ex = await counts(['exec'], ['group:ssh and attr:rack,r1']);
  assert.ok(ex.nodes! >= 1 && ex.nodes! <= 3, `exec reads the matching nodes only (${ex.nodes})`);
  assert.equal((await counts(['exec'], ['n0002'])).nodes, 1);
  // overlay render: the node whole, the others as name plates (their attributes are not read).
  const ov = await counts(['overlay', 'render'], ['n0003']);
  assert.equal(ov.nodes, total, 'every node as a name plate');
  assert.equal(ov.node_attrs, 1, "the node's own attributes only (rack)");
  // The image commands: the nodes using the VNFS.
  assert.equal((await counts(['vnfs', 'import'], ['img', '/nowhere'])).nodes, 3, 'the nodes using img');
  assert.equal((await counts(['vnfs', 'prune'], ['img'], { keep: '0' })).nodes, 3);
  assert.equal((await counts(['vnfs', 'capture'], ['n0010', 'img2'])).nodes, 1);
  assert.equal((await counts(['stage1', 'build'], [], { arch: 'x86_64', register: true })).nodes, 0, 'stage1 build: the nodes using stage1 (none)');
});

async function connectPostgresCount(u: string): Promise<{ nodes: number }> {
  const sql = connectPostgres(u, { max: 1 });
  try {
    const [r] = await sql`SELECT count(*)::int AS n FROM nodes`;
    return { nodes: Number(r!.n) };
  } finally {
    await sql.end();
  }
}

function spawnCli(args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args, '--config', pgConfig, '--database', url]);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    p.stdin.end(input);
  });
}

test('concurrent imports from standard input on PostgreSQL: names of the pattern once each, a MAC once, the loser changes nothing', { skip, timeout: 300_000 }, async () => {
  const csv = (macs: string[]) => 'mac,group\n' + macs.map((m) => `${m},gpu\n`).join('');
  const block = (b: number) => Array.from({ length: 40 }, (_, i) => `52:54:00:0e:0${b}:${i.toString(16).padStart(2, '0')}`);
  const shared = '52:54:00:0e:09:09';
  // Two imports share a MAC (one of them loses it, with nothing of it written); a third is disjoint.
  const rs = await Promise.all([
    spawnCli(['node', 'import', '-', '--format', 'csv', '--json'], csv([...block(1), shared])),
    spawnCli(['node', 'import', '-', '--format', 'csv', '--json'], csv([...block(2), shared])),
    spawnCli(['node', 'import', '-', '--format', 'csv', '--json'], csv(block(3))),
  ]);
  const all = rs.map((r) => `${r.code} ${r.stderr}`).join('\n');
  assert.deepEqual(rs.slice(0, 2).map((r) => r.code).sort(), [0, 2], all);
  assert.equal(rs[2]!.code, 0, all);
  const loser = rs[0]!.code === 2 ? 0 : 1;
  assert.match(rs[loser]!.stderr, /a node with MAC 52:54:00:0e:09:09 exists already/);
  const sql = connectPostgres(url, { max: 1 });
  try {
    const rows = await sql`SELECT mac, name FROM nodes WHERE mac LIKE '52:54:00:0e:%'`;
    const macs = new Set(rows.map((r) => r.mac as string));
    assert.equal(rows.length, 81, 'two imports of 41 and 40 nodes');
    for (const m of block(loser + 1)) assert.ok(!macs.has(m), `the losing import wrote nothing (${m})`);
    assert.equal(new Set(rows.map((r) => r.name as string)).size, 81, 'distinct names');
    const printed = [...rs.filter((r) => r.code === 0).flatMap((r) => JSON.parse(r.stdout).nodes as string[])].sort();
    assert.deepEqual(printed, rows.map((r) => r.name as string).sort(), 'the names the winners printed are the names they have');
  } finally {
    await sql.end();
  }
});
