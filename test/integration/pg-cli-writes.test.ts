/**
 * Writing CLI commands, explain and script on PostgreSQL (src/store/pg/cli-writes.ts): the same
 * command lines, in the same order, on SQLite and (through `db copy`) on a real private PostgreSQL
 * print the same bytes and exit with the same codes, refusals included, and leave the same nodes;
 * the PostgreSQL path loads only the rows the command touches; concurrent `node add`s on
 * PostgreSQL take distinct names of the pattern and a MAC once; recorded events carry server_id.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import { CLI, pxeherd, type StateDir } from '../helpers/cli.js';
import { postgresUnavailable } from '../lab/postgres.js';
import { pgCliFixture } from '../helpers/pg-fixture.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { parseConfig } from '../../src/config/load.js';
import { openPgCliStore } from '../../src/store/pg/cli-store.js';
import { writeScopeFor } from '../../src/store/pg/cli-writes.js';

const skip = postgresUnavailable();
let lite: StateDir;
let url: string;
let stop: (() => Promise<void>) | undefined;
const N = 40;

before(async () => {
  if (skip) return;
  ({ lite, url, stop } = await pgCliFixture({
    name: 'writes',
    serverId: 'writer-a',
    yaml: 'server_id: writer-a\nnodes: { name_pattern: "n####", first_number: 1, default_group: compute }\ndhcp: { range: [10.9.0.100, 10.9.0.120], netmask: 255.255.255.0 }\n',
    fill: (store) => {
      const policy = { pattern: 'n####', firstNumber: 1, defaultGroup: 'compute', defaultVnfs: '' };
      store.nodes.addMany(
        Array.from({ length: N }, (_, i) => ({
          mac: `52:54:00:00:03:${i.toString(16).padStart(2, '0')}`,
          group: ['compute', 'gpu', 'alpha'][i % 3],
          ...(i === 7 ? { ip: '10.9.0.7' } : i === 8 ? { ip: '10.9.0.100' } : {}),
          attrs: { rack: `r${i % 5}`, ...(i % 4 === 0 ? { cores: '64' } : {}) },
        })),
        policy,
      );
      // Gaps in the names: n0003 and n0005..n0006 are free (SQLite fills them first).
      store.nodes.delete(['52:54:00:00:03:02', '52:54:00:00:03:04', '52:54:00:00:03:05']);
      store.groups.set('gpu', 'vlan', '20');
      store.groups.set('beta', 'vlan', '30');
    },
  }));
  fs.writeFileSync(path.join(lite.dir, 'more.csv'), 'mac,name,group\n52:54:00:00:04:04,n0015,beta\n52:54:00:00:04:01,,gpu\n52:54:00:00:04:02,extra1,\n52:54:00:00:04:03,,\n');
  fs.writeFileSync(path.join(lite.dir, 'dup.csv'), 'mac,name\n52:54:00:00:04:09,\n52:54:00:00:03:00,\n');
});
after(async () => {
  await stop?.();
});

/** The time a row was written differs between the two runs (and nothing else may). */
function clocked(r: { code: number; stdout: string; stderr: string }) {
  const t = (s: string) => s.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<time>');
  return { code: r.code, stdout: t(r.stdout), stderr: t(r.stderr) };
}

/** In this order on each backend. */
const CASES = (dir: string): string[][] => [
  ['node', 'add', '52:54:00:00:05:01'],
  ['node', 'add', '52:54:00:00:05:02', '--json', '--set', 'rack=r7'],
  ['node', 'add', '52:54:00:00:05:03', 'n0001'],
  ['node', 'add', '52:54:00:00:03:00'],
  ['node', 'add', '52:54:00:00:05:04', '--ip', '10.9.0.7'],
  ['node', 'add', '52:54:00:00:05:05', 'named5', '--group', 'beta', '--ip', '10.9.0.55'],
  ['node', 'set', 'name', 'n0002', 'n0004'],
  ['node', 'set', 'ip', '10.9.0.7', 'n0010'],
  ['node', 'set', 'attr.rack=r9', 'group:gpu and attr:rack,r1', '--json'],
  ['node', 'set', 'boot', 'local', 'n00[10-12]'],
  ['node', 'delete', 'n0014', 'n0015'],
  ['node', 'add', '52:54:00:00:05:06', '--json'],
  ['node', 'replace', 'n0030', '52-54-00-00-05-30'],
  ['node', 'replace', 'n0031', '52:54:00:00:03:00'],
  ['node', 'import', path.join(dir, 'more.csv')],
  ['node', 'import', path.join(dir, 'dup.csv'), '--json'],
  ['group', 'set', 'gpu', 'vlan', '21'],
  ['group', 'delete', 'alpha'],
  ['group', 'delete', 'alpha', '--move-to', 'beta', '--json'],
  ['explain', '52:54:00:00:03:07', '--json'],
  ['explain', '52:54:00:00:07:07'],
  ['node', 'plan', 'n0004'],
  ['script', 'list', 'n0004', '--json'],
  ['power', 'status', 'n0004', '--timeout', '1'],
  ['node', 'release', 'n0016', '--wipe', '--timeout', '1'],
  ['node', 'export', '-', '--format', 'csv'],
];

test('writing commands, explain and plan on PostgreSQL print and leave what they do on SQLite, byte for byte, refusals included', { skip, timeout: 300_000 }, async () => {
  let refused = 0;
  for (const args of CASES(lite.dir)) {
    const want = clocked(pxeherd(args, { config: lite.config }));
    const got = clocked(pxeherd([...args, '--database', url], { config: lite.config }));
    assert.deepEqual(got, want, `pxeherd ${args.join(' ')}: PostgreSQL as SQLite`);
    if (want.code !== 0) refused++;
  }
  // Not vacuous: refusals and the gap-filling names happened.
  assert.equal(refused, 11, 'the refusals (taken MAC, name and address, the group with nodes, no disks to plan, a failed power off, no power method) are refused on both');
  const list = pxeherd(['node', 'list', 'n00*', '--database', url], { config: lite.config }).stdout;
  assert.match(list, /n0003 +52:54:00:00:05:01/, 'node add took the first gap of the pattern');
  assert.match(list, /n0014 +52:54:00:00:04:01/, 'import took the gap left by node delete');
  assert.match(list, /n0041 +52:54:00:00:04:03/, 'and then the end of the pattern');
  // The events the commands recorded are in PostgreSQL with this server's id.
  const sql = connectPostgres(url, { max: 1 });
  try {
    const evs = await sql`SELECT kind, server_id FROM events WHERE node = 'n0016' ORDER BY id`;
    const db = new Database(path.join(lite.statedir, 'pxeherd.db'), { readonly: true });
    const want = db.prepare("SELECT kind FROM events WHERE node = 'n0016' ORDER BY id").all() as { kind: string }[];
    db.close();
    assert.ok(want.some((e) => e.kind === 'release.fail'), 'node release recorded its events on SQLite');
    assert.deepEqual(evs.map((e) => e.kind), want.map((e) => e.kind), 'the same events on PostgreSQL');
    for (const e of evs) assert.equal(e.server_id, 'writer-a');
  } finally {
    await sql.end();
  }
});

test('the PostgreSQL write path loads only the rows the command touches', { skip }, async () => {
  const config = parseConfig({ statedir: lite.statedir, database: url, nodes: { name_pattern: 'n####', first_number: 1, default_group: 'compute' } });
  const counts = async (p: string[], args: string[], opts: Record<string, unknown> = {}) => {
    const s = await openPgCliStore(config, writeScopeFor(p, args, opts, config, (f) => fs.readFileSync(f, 'utf8')));
    try {
      return s.scoped!.counts;
    } finally {
      await s.close();
    }
  };
  assert.ok((await counts(['node', 'add'], ['52:54:00:00:06:01'])).nodes <= 3, 'node add reads the MAC and the names between the free ones');
  assert.equal((await counts(['node', 'set'], ['boot', 'local', 'n00[10-12]'])).nodes, 3);
  assert.equal((await counts(['node', 'delete'], ['n0017'])).nodes, 1);
  assert.equal((await counts(['group', 'set'], ['gpu', 'vlan', '1'])).nodes, 0, 'group set counts the group in PostgreSQL');
  const g = await counts(['group', 'delete'], ['gpu']);
  assert.ok(g.nodes > 0 && g.nodes < 20, `group delete reads the group's nodes only (${g.nodes})`);
});

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args, '--config', lite.config, '--database', url]);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

test('concurrent node adds on PostgreSQL: distinct names of the pattern, one node per MAC', { skip, timeout: 300_000 }, async () => {
  const macs = Array.from({ length: 6 }, (_, i) => `52:54:00:00:08:0${i}`);
  const rs = await Promise.all([...macs.map((m) => run(['node', 'add', m, '--json'])), run(['node', 'add', '52:54:00:00:09:09']), run(['node', 'add', '52:54:00:00:09:09'])]);
  const all = rs.map((r) => `${r.code} ${r.stderr}`).join('\n');
  for (const r of rs.slice(0, 6)) assert.equal(r.code, 0, all);
  const names = rs.slice(0, 6).map((r) => JSON.parse(r.stdout).name as string);
  assert.equal(new Set(names).size, 6, `distinct names: ${names.join(' ')}`);
  for (const n of names) assert.match(n, /^n\d{4}$/);
  // The same MAC twice: one adds it, the other is told it exists (as the second would be on SQLite).
  assert.deepEqual(rs.slice(6).map((r) => r.code).sort(), [0, 2], all);
  assert.match(rs[6]!.stderr + rs[7]!.stderr, /a node with MAC 52:54:00:00:09:09 exists already/);
  const sql = connectPostgres(url, { max: 1 });
  try {
    const [c] = await sql`SELECT count(*)::int AS n, count(DISTINCT name)::int AS d FROM nodes WHERE mac = ANY(${macs}) OR mac = '52:54:00:00:09:09'`;
    assert.deepEqual([c!.n, c!.d], [7, 7]);
  } finally {
    await sql.end();
  }
});
