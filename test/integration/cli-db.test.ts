/**
 * `pxeherd db migrate|status|copy` against SQLite and a real PostgreSQL (test/lab/postgres.ts;
 * skips with the reason when PostgreSQL is not installed).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { makeStateDir, pxeherd } from '../helpers/cli.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { SCHEMA_VERSION } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { SqliteBackend } from '../../src/store/sqlite-backend.js';
import { PostgresBackend } from '../../src/store/pg/backend.js';

const skip = postgresUnavailable();
let pg: PostgresLab;
before(async () => {
  if (!skip) pg = await startPostgres();
});
after(async () => pg?.stop());

test('db migrate and status on SQLite: versions, counts, --json, server_id default host name', (t) => {
  const s = makeStateDir('server_id: boot-a\n');
  t.after(s.cleanup);
  const c = { config: s.config };
  const st0 = JSON.parse(pxeherd(['db', 'status', '--json'], c).stdout);
  assert.deepEqual(st0, { backend: 'sqlite', database: `sqlite:${path.join(s.statedir, 'pxeherd.db')}`, server_id: 'boot-a', schema_version: 0, code_version: SCHEMA_VERSION, state: 'empty', counts: {} });
  const m = pxeherd(['db', 'migrate', '--json'], c);
  assert.equal(m.code, 0, m.stderr);
  assert.deepEqual(JSON.parse(m.stdout), { backend: 'sqlite', database: `sqlite:${path.join(s.statedir, 'pxeherd.db')}`, from: 0, to: SCHEMA_VERSION, changed: true });
  assert.equal(pxeherd(['node', 'add', 'aa:bb:cc:dd:ee:01'], c).code, 0);
  const st = JSON.parse(pxeherd(['db', 'status', '--json'], c).stdout);
  assert.equal(st.state, 'current');
  assert.deepEqual(st.counts, { nodes: 1, leases: 0, events: 0 });
  assert.match(pxeherd(['db', 'migrate'], c).stdout, new RegExp(`schema version ${SCHEMA_VERSION}, nothing to do`));
  // A database from a newer pxeherd is refused, untouched.
  const db = new Database(path.join(s.statedir, 'pxeherd.db'));
  db.pragma('user_version = 99');
  db.close();
  const r = pxeherd(['db', 'migrate'], c);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`schema version 99 is newer than this pxeherd understands \\(${SCHEMA_VERSION}\\): upgrade pxeherd`));
  const noServer = makeStateDir();
  t.after(noServer.cleanup);
  assert.equal(JSON.parse(pxeherd(['db', 'status', '--json'], { config: noServer.config }).stdout).server_id, os.hostname());
});

test('bad database settings are usage errors naming the key; an unreachable database is exit 1', (t) => {
  const s = makeStateDir('database: mysql://x/y\n');
  t.after(s.cleanup);
  const r = pxeherd(['db', 'status'], { config: s.config });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /database: must be a postgres:\/\/ URL/);
  const e = pxeherd(['db', 'status'], { env: { PXEHERD_DATABASE: 'http://x' } });
  assert.equal(e.code, 2);
  assert.match(e.stderr, /PXEHERD_DATABASE: must be a postgres:\/\/ URL/);
  const gone = pxeherd(['db', 'migrate'], { env: { PXEHERD_DATABASE: `postgres://pxeherd@localhost/x?host=${encodeURIComponent(s.dir)}` } });
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /database postgres:\/\/pxeherd@localhost\/x\?host=.*(ENOENT|connect).*is PostgreSQL running there/);
  const secret = pxeherd(['db', 'migrate'], { env: { PXEHERD_DATABASE: `postgres://pxeherd:hunter2@localhost/x?host=${encodeURIComponent(s.dir)}` } });
  assert.equal(secret.code, 1);
  assert.doesNotMatch(secret.stderr, /hunter2/, 'the password is not printed');
  // node and group commands run on PostgreSQL (src/store/pg/cli-store.ts): unreachable is exit 1 naming it.
  const nodes = pxeherd(['node', 'list'], { env: { PXEHERD_DATABASE: 'postgres://x@y/z' } });
  assert.equal(nodes.code, 1);
  assert.match(nodes.stderr, /cannot reach the database postgres:\/\/x@y\/z/);
  // So do the other admin commands (vnfs, script, explain...): the same refusal.
  const vnfs = pxeherd(['vnfs', 'list'], { env: { PXEHERD_DATABASE: 'postgres://x@y/z' } });
  assert.equal(vnfs.code, 1);
  assert.match(vnfs.stderr, /cannot reach the database postgres:\/\/x@y\/z/);
});

test('db migrate on PostgreSQL: under the advisory lock (three at once), idempotent, refuses a newer schema', { skip }, async () => {
  const url = await pg.createDatabase('migrate1');
  const env = { PXEHERD_DATABASE: url };
  const st0 = JSON.parse(pxeherd(['db', 'status', '--json'], { env }).stdout);
  assert.equal(st0.state, 'empty');
  assert.equal(st0.backend, 'postgres');
  // Three servers starting at once: one migrates, the others wait on the lock and find nothing to do.
  const { spawn } = await import('node:child_process');
  const runs = await Promise.all(
    [1, 2, 3].map(
      () =>
        new Promise<{ code: number; out: string }>((res) => {
          const p = spawn(process.execPath, [path.resolve('dist/cli.js'), 'db', 'migrate', '--json'], { env: { ...process.env, ...env } });
          let out = '';
          p.stdout.on('data', (d) => (out += d));
          p.on('exit', (code) => res({ code: code ?? -1, out }));
        }),
    ),
  );
  assert.deepEqual(runs.map((r) => r.code), [0, 0, 0]);
  const results = runs.map((r) => JSON.parse(r.out));
  assert.equal(results.filter((r) => r.changed).length, 1, 'exactly one migrated');
  assert.ok(results.every((r) => r.to === SCHEMA_VERSION));
  const st = JSON.parse(pxeherd(['db', 'status', '--json'], { env }).stdout);
  assert.equal(st.state, 'current');
  assert.deepEqual(st.counts, { nodes: 0, leases: 0, events: 0 });
  const sql = connectPostgres(url, { max: 1 });
  try {
    await sql`UPDATE pxeherd_schema SET version = 99`;
  } finally {
    await sql.end();
  }
  const r = pxeherd(['db', 'migrate'], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`schema version 99 is newer than this pxeherd understands \\(${SCHEMA_VERSION}\\): upgrade pxeherd`));
  assert.match(pxeherd(['db', 'status'], { env }).stdout, /version 99 .* newer: upgrade pxeherd/);
});

test('db copy: SQLite into PostgreSQL in one transaction, counts and sha256 per table equal on both sides', { skip }, async (t) => {
  const s = makeStateDir('server_id: boot-a\n');
  t.after(s.cleanup);
  // Written in-process (a CLI process per node costs seconds on a busy machine).
  const store = Store.open(s.statedir, { serverId: 'boot-a' });
  store.nodes.addMany(Array.from({ length: 30 }, (_, i) => ({ mac: `52:54:00:00:00:${i.toString(16).padStart(2, '0')}`, attrs: { rack: `r${i % 3}` } })), { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' });
  store.groups.set('cluster', 'vlan', '12');
  store.close();
  const file = path.join(s.statedir, 'pxeherd.db');
  const db = new Database(file);
  db.prepare("INSERT INTO leases (mac, ip, expires_at, hostname, state, subnet, updated_at, server_id) VALUES ('52:54:00:00:00:01', '10.0.0.101', 1790000000000, 'n1', 'bound', '10.0.0.0/24', 1780000000000, 'boot-a')").run();
  db.prepare("INSERT INTO health (mac, time, uptime, load, memfree_kb) VALUES ('52:54:00:00:00:02', 1780000000000, 3600, 0.25, 123456)").run();
  for (let i = 0; i < 500; i++) db.prepare("INSERT INTO events (time, mac, node, kind, detail, server_id) VALUES (?, ?, ?, 'dhcp.ack', ?, 'boot-a')").run(1780000000000 + i, '52:54:00:00:00:01', 'n0001', JSON.stringify({ i, text: 'é ü "q"' }));
  db.close();

  const url = await pg.createDatabase('copy1');
  const r = pxeherd(['db', 'copy', '--from', `sqlite:${file}`, '--to', url, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  assert.equal(res.schema_version, SCHEMA_VERSION);
  const rows = Object.fromEntries(res.tables.map((x: { table: string; rows: number }) => [x.table, x.rows]));
  assert.equal(rows.nodes, 30);
  assert.equal(rows.node_attrs, 30);
  assert.equal(rows.events, 500);
  assert.equal(rows.leases, 1);
  assert.equal(rows.health, 1);
  assert.equal(rows.group_attrs, 1);
  assert.ok(res.tables.every((x: { verified: boolean }) => x.verified));
  assert.match(r.stderr, /nodes: 30 rows, sha256 [0-9a-f]{16} verified/, 'progress lines');

  // Independent check: the same canonical checksum computed here from both databases.
  const src = new Database(file, { readonly: true });
  const sql = connectPostgres(url, { max: 1 });
  try {
    for (const tbl of ['nodes', 'events', 'health', 'leases']) {
      const cols = src.prepare<[], { name: string }>(`PRAGMA table_info(${tbl})`).all().map((x) => x.name);
      const sum = (list: unknown[][]) => crypto.createHash('sha256').update(list.map((x) => JSON.stringify(x)).sort().join('\n')).digest('hex');
      const a = sum(src.prepare(`SELECT ${cols.join(',')} FROM ${tbl}`).raw().all() as unknown[][]);
      const b = sum((await sql.unsafe(`SELECT ${cols.join(',')} FROM ${tbl}`).values()) as unknown[][]);
      assert.equal(b, a, `table ${tbl} equal on both sides`);
      assert.equal(res.tables.find((x: { table: string }) => x.table === tbl).rows, (src.prepare(`SELECT count(*) AS n FROM ${tbl}`).get() as { n: number }).n);
    }
    // New events continue after the copied ids.
    const [ins] = await sql`INSERT INTO events (time, kind) VALUES (1, 'x') RETURNING id`;
    assert.equal(ins!.id, 501);
    await sql`DELETE FROM events WHERE id = 501`;
  } finally {
    src.close();
    await sql.end();
  }
  // What the PostgreSQL backend reads from the copy is what the SQLite backend reads from the source.
  const lite = new SqliteBackend(Store.open(s.statedir));
  const pgb = PostgresBackend.connect(url, 'boot-b', { max: 2 });
  try {
    assert.deepEqual(await pgb.listNodes(), await lite.listNodes());
    assert.deepEqual(await pgb.listNodes('attr:rack,r1'), await lite.listNodes('attr:rack,r1'));
    assert.equal((await pgb.listNodes('attr:rack,r1')).length, 10);
    assert.deepEqual(await pgb.eventsAfter(490), await lite.eventsAfter(490));
  } finally {
    await lite.close();
    await pgb.close();
  }
  // Copying again into the now non-empty database: refused, exit 2, nothing added.
  const again = pxeherd(['db', 'copy', '--from', `sqlite:${file}`, '--to', url]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /destination is not empty \(table groups has 1 rows\)/);
  const st = JSON.parse(pxeherd(['db', 'status', '--json'], { env: { PXEHERD_DATABASE: url } }).stdout);
  assert.deepEqual(st.counts, { nodes: 30, leases: 1, events: 500 });
  // The human form: one line per table and the summary.
  const url2 = await pg.createDatabase('copy2');
  const h = pxeherd(['db', 'copy', '--from', `sqlite:${file}`, '--to', url2]);
  assert.equal(h.code, 0, h.stderr);
  assert.match(h.stdout, /^TABLE\s+ROWS\s+SHA256\s+VERIFIED/m);
  assert.match(h.stdout, /^events\s+500\s+[0-9a-f]{64}\s+yes$/m);
  assert.match(h.stdout, /copied \d+ rows from sqlite:.* in one transaction; every table verified/);
  // A value PostgreSQL refuses (text with a NUL byte, which SQLite keeps) in the last table:
  // the copy fails naming the table, and nothing of the earlier tables stays (one transaction).
  const src2 = new Database(file);
  src2.prepare("INSERT INTO meta (key, value) VALUES ('bad', ?)").run('a\u0000b');
  src2.close();
  const url3 = await pg.createDatabase('copy3');
  const refused = pxeherd(['db', 'copy', '--from', `sqlite:${file}`, '--to', url3]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /table meta, rows 1-\d+: PostgreSQL refused them: .*; nothing was copied/);
  assert.deepEqual(JSON.parse(pxeherd(['db', 'status', '--json'], { env: { PXEHERD_DATABASE: url3 } }).stdout).counts, { nodes: 0, leases: 0, events: 0 });
  const bad = pxeherd(['db', 'copy', '--from', '/tmp/x.db', '--to', url2]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--from \/tmp\/x.db: must be sqlite:PATH/);
});

test('serve on a PostgreSQL database that is not migrated, or unreachable without a replica, exits 1 saying what to do', { skip }, async (t) => {
  const url = await pg.createDatabase('serve_unmigrated');
  const s = makeStateDir('dhcp: { mode: off }\n');
  t.after(s.cleanup);
  const r = pxeherd(['serve'], { config: s.config, env: { PXEHERD_DATABASE: url } });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /has schema version 0, this pxeherd \d+: run `pxeherd db migrate` first/);
  const gone = pxeherd(['serve'], { config: s.config, env: { PXEHERD_DATABASE: `postgres://pxeherd@localhost/x?host=${encodeURIComponent(s.dir)}` } });
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /cannot reach the database .* and there is no local replica .*pg-replica\.db\) to serve from yet/);
});
