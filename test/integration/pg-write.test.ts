/**
 * Writes on PostgreSQL (issue 19): two `pxeherd serve` processes on one private PostgreSQL
 * (test/lab/postgres.ts), on loopback (no DHCP: what B hands a node is checked on its boot
 * script). What one server's admin API, the CLI against postgres://, or a node reporting to one
 * server writes is in PostgreSQL and in the other server's API and boot scripts; refusals are
 * the same as on SQLite (compared with a SQLite admin and a SQLite CLI); boot once flips once
 * when the node boots through both servers, and only the winner records boot.once_done.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { tmpDir, waitFor } from '../lab/lab.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { connectPostgres, type Sql } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { startAdmin } from './admin-fixture.js';
import { freePort } from '../lab/procs.js';

const CLI = path.resolve('dist/cli.js');
const why = postgresUnavailable() ?? (fs.existsSync(CLI) ? undefined : `needs ${CLI} (npm run build)`);

let pg: PostgresLab;
let dir = '';
const procs: ChildProcess[] = [];

before(async () => {
  if (why) return;
  dir = tmpDir('phpgwrite-');
  pg = await startPostgres();
});
after(async () => {
  if (why) return;
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await pg?.stop();
  if (dir && !process.env.PGWRITE_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

/** The environment without a PXEHERD_DATABASE of the caller's (an empty one would mean SQLite). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.PXEHERD_DATABASE;
  delete env.PXEHERD_CONFIG;
  return env;
}

interface Server {
  id: string;
  config: string;
  http: string;
  admin: string;
  token: string;
  log: string;
  proc: ChildProcess;
}

async function serve(id: string, url: string): Promise<Server> {
  const statedir = path.join(dir, id);
  const config = path.join(dir, `${id}.yaml`);
  const [httpPort, adminPort] = [await freePort(), await freePort()];
  fs.writeFileSync(
    config,
    `statedir: ${statedir}
database: "${url}"
server_id: ${id}
address: 127.0.0.1
dhcp: { mode: off }
tftp: { port: 0 }
http: { port: ${httpPort} }
provisiond: { port: 0 }
admin: { port: ${adminPort} }
security: { node_tokens: false }
log: { level: info }
`,
  );
  const log = path.join(dir, `${id}.log`);
  const out = fs.openSync(log, 'a');
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', out, out], env: cleanEnv() });
  fs.closeSync(out);
  procs.push(proc);
  await waitFor(`${id} to serve its admin API`, 30_000, () => {
    const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
    if (proc.exitCode !== null) throw new Error(`pxeherd serve ${id} exited (${proc.exitCode}): ${text.slice(-2000)}`);
    return /web UI and API/.test(text) && /http listening/.test(text);
  });
  const token = fs.readFileSync(path.join(statedir, 'admin.token'), 'utf8').trim();
  return { id, config, http: `http://127.0.0.1:${httpPort}`, admin: `http://127.0.0.1:${adminPort}`, token, log, proc };
}

async function api(s: { admin?: string; base?: string; token: string }, method: string, p: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${s.admin ?? s.base}/api/v1${p}`, {
    method,
    headers: { Authorization: `Bearer ${s.token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

function cli(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...cleanEnv(), ...env }, timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const M1 = '52:54:00:77:00:01';

test('two servers on one PostgreSQL: admin, CLI and node writes through one are seen by the other; refusals as on SQLite; boot once flips once', { skip: why, timeout: 240_000 }, async () => {
  const url = await pg.createDatabase('write2');
  const sql: Sql = connectPostgres(url, { max: 2 });
  const lite = await startAdmin([18460, 18469]);
  try {
    await migratePostgres(sql);
    const [a, b] = [await serve('boot-a', url), await serve('boot-b', url)];
    // One admin token for every server on the database (src/store/pg/secrets.ts): B adopted A's.
    assert.equal(b.token, a.token, 'both servers share the admin token through the database');
    assert.equal((await api({ admin: b.admin, token: a.token }, 'GET', '/nodes')).status, 200, "A's token works at B");
    const liteAuth = { base: lite.base, token: lite.tokens.admin };

    // -- admin API on A, seen by B (and in PostgreSQL)
    const kernel = path.join(dir, 'vmlinuz');
    const initrd = path.join(dir, 'initrd.img');
    fs.writeFileSync(kernel, 'kernel');
    fs.writeFileSync(initrd, 'initrd');
    const v = await api(a, 'POST', '/vnfs', { name: 'deb', kernel, initrd });
    assert.equal(v.status, 201, JSON.stringify(v.body));
    const add = await api(a, 'POST', '/nodes', { mac: M1, name: 'web1', vnfs: 'deb', attrs: { console: 'ttyS0' } });
    assert.equal(add.status, 201, JSON.stringify(add.body));
    assert.equal(add.body.name, 'web1');
    const mine = await api(a, 'GET', '/nodes/web1');
    assert.equal(mine.status, 200, 'A answers with its own write at once (read-your-writes)');
    const [row] = await sql`SELECT name, vnfs FROM nodes WHERE mac = ${M1}`;
    assert.deepEqual({ ...row }, { name: 'web1', vnfs: 'deb' }, 'the node is in PostgreSQL when A answers');
    await waitFor('B to see web1', 20_000, async () => (await api(b, 'GET', '/nodes/web1')).status === 200);
    assert.equal(((await api(b, 'GET', '/nodes/web1')).body.attrs as Record<string, string>).console, 'ttyS0');

    const patch = await api(a, 'PATCH', '/nodes/web1', { attrs: { console: 'ttyS1' }, group: 'rack1' });
    assert.equal(patch.status, 200, JSON.stringify(patch.body));
    const grp = await api(a, 'PATCH', '/groups/rack1', { attrs: { kernel_args: 'quiet' } });
    assert.equal(grp.status, 200, JSON.stringify(grp.body));
    await waitFor('B to see the change and the group', 20_000, async () => {
      const n = (await api(b, 'GET', '/nodes/web1')).body;
      const g = await api(b, 'GET', '/groups/rack1');
      return (n.attrs as Record<string, string>)?.console === 'ttyS1' && n.group === 'rack1' && g.status === 200 && (g.body.attrs as Record<string, string>)?.kernel_args === 'quiet';
    });

    // -- refusals: the same status and message as the SQLite admin gives
    assert.equal((await api(liteAuth, 'POST', '/nodes', { mac: M1, name: 'web1' })).status, 201);
    for (const [method, p, body] of [
      ['POST', '/nodes', { mac: M1, name: 'other' }],
      ['POST', '/nodes', { mac: '52:54:00:77:00:09', name: 'web1' }],
      ['PATCH', '/nodes/web1', { boot: 'sometimes' }],
      ['PATCH', '/nodes/web1', { group: 'rack9', boot: 'sometimes' }],
      ['PATCH', '/nodes/web1', { ip: '10.0.0.300' }],
      ['POST', '/nodes/set', { key: 'bogus', value: 'x', nodes: 'web1' }],
    ] as const) {
      const want = await api(liteAuth, method, p, body);
      const got = await api(b, method, p, body);
      assert.ok(want.status >= 400, `${method} ${p} ${JSON.stringify(body)} is refused on SQLite`);
      assert.deepEqual(got, want, `${method} ${p} ${JSON.stringify(body)}: refused on PostgreSQL as on SQLite`);
    }
    assert.equal(Number((await sql`SELECT count(*)::int AS n FROM nodes`)[0]!.n), 1, 'nothing was written by the refusals');
    assert.equal((await sql`SELECT grp FROM nodes WHERE mac = ${M1}`)[0]!.grp, 'rack1', 'a PATCH refused at its second field leaves the first unwritten (rolled back, not sent)');

    // -- the CLI against postgres:// (--database, and PXEHERD_DATABASE)
    const set = cli(['node', 'set', 'boot', 'once', 'web1', '--config', a.config, '--database', url, '--json']);
    assert.equal(set.code, 0, set.stderr);
    const add2 = cli(['node', 'add', '52:54:00:77:00:02', 'web2', '--config', b.config], { PXEHERD_DATABASE: url });
    assert.equal(add2.code, 0, add2.stderr);
    await waitFor('both servers to see the CLI changes', 20_000, async () => {
      const [na, nb, n2] = [await api(a, 'GET', '/nodes/web1'), await api(b, 'GET', '/nodes/web1'), await api(a, 'GET', '/nodes/web2')];
      return na.body.boot === 'once' && nb.body.boot === 'once' && n2.status === 200;
    });
    // Its refusals are the SQLite CLI's: exit code and message.
    const liteDir = path.join(dir, 'lite-cli');
    const liteCfg = path.join(dir, 'lite.yaml');
    fs.writeFileSync(liteCfg, `statedir: ${liteDir}\n`);
    assert.equal(cli(['node', 'add', M1, 'web1', '--config', liteCfg]).code, 0);
    for (const args of [
      ['node', 'set', 'boot', 'sometimes', 'web1'],
      ['node', 'add', M1, 'again'],
      ['node', 'set', 'vnfs', 'deb', 'nosuchnode'],
    ]) {
      const want = cli([...args, '--config', liteCfg]);
      const got = cli([...args, '--config', a.config, '--database', url]);
      assert.ok(want.code !== 0, `${args.join(' ')} is refused on SQLite`);
      assert.deepEqual({ code: got.code, stderr: got.stderr }, { code: want.code, stderr: want.stderr }, `${args.join(' ')}: refused on PostgreSQL as on SQLite`);
    }

    // node timeline reads every server's events from PostgreSQL itself (pg-feed.test.ts covers
    // its content; pg-cli-wait.test.ts covers reinstall --wait following them).
    const timeline = cli(['node', 'timeline', 'web1', '--json', '--database', url]);
    assert.equal(timeline.code, 0, timeline.stderr);
    assert.equal(JSON.parse(timeline.stdout).node, 'web1');

    // -- a node reporting to A (provision state, as stage one's init does), seen by B
    const rep = await fetch(`${a.http}/provision/ready?nodeid=${M1}`);
    assert.equal(rep.status, 200, await rep.text());
    await waitFor('B to see the state web1 reported to A', 20_000, async () => (await api(b, 'GET', '/nodes/web1')).body.state === 'ready');
    const [st] = await sql`SELECT state, last_contact FROM nodes WHERE mac = ${M1}`;
    assert.equal(st!.state, 'ready');
    assert.ok(Number(st!.last_contact) > 0, 'the contact is in PostgreSQL');

    // -- boot once: web1 boots through both servers; the flip happens once, one boot.once_done
    const first = await Promise.all([fetch(`${a.http}/boot/${M1}.ipxe`), fetch(`${b.http}/boot/${M1}.ipxe`)]);
    const firstText: Record<string, string> = {};
    for (const [i, r] of first.entries()) {
      firstText[[a, b][i]!.id] = await r.text();
      assert.equal(r.status, 200, firstText[[a, b][i]!.id]);
    }
    await waitFor('both boot scripts recorded in PostgreSQL', 20_000, async () => Number((await sql`SELECT count(*)::int AS n FROM events WHERE kind = 'http.ipxe' AND mac = ${M1}`)[0]!.n) >= 2);
    const served = await sql<{ server_id: string; mode: string }[]>`SELECT server_id, detail::json->>'mode' AS mode FROM events WHERE kind = 'http.ipxe' AND mac = ${M1}`;
    const once = served.filter((e) => e.mode === 'once').map((e) => e.server_id);
    assert.ok(once.length >= 1, `at least the first boot got the once script: ${JSON.stringify(served)}`);
    process.stderr.write(`# pg-write: the once script was served by ${once.join(' and ')}\n`);
    const lost = async (s: Server) => {
      const text = await (await fetch(`${s.admin}/metrics`)).text();
      return Number(/pxeherd_database_races_total\{[^}]*what="boot_once"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    const won = async () => sql<{ server_id: string }[]>`SELECT server_id FROM events WHERE kind = 'boot.once_done' AND mac = ${M1}`;
    // Every server that served the once script has settled its flip: won (its event) or lost (counted).
    await waitFor('every flip decided', 20_000, async () => (await won()).length + (await lost(a)) + (await lost(b)) >= once.length);
    const winners = await won();
    assert.equal(winners.length, 1, `one boot.once_done: ${JSON.stringify(winners)} (once served by ${once.join(', ')})`);
    assert.ok(once.includes(winners[0]!.server_id), 'recorded by a server that served the once script');
    assert.equal((await lost(a)) + (await lost(b)), once.length - 1, 'every other server lost the flip');
    assert.equal((await sql`SELECT boot FROM nodes WHERE mac = ${M1}`)[0]!.boot, 'local');
    let local = '';
    await waitFor('both servers to hand web1 its local boot', 20_000, async () => {
      const [ta, tb] = [await (await fetch(`${a.http}/boot/${M1}.ipxe`)).text(), await (await fetch(`${b.http}/boot/${M1}.ipxe`)).text()];
      local = ta;
      return ta === tb && (await api(a, 'GET', '/nodes/web1')).body.boot === 'local' && (await api(b, 'GET', '/nodes/web1')).body.boot === 'local';
    });
    assert.notEqual(local, firstText[once[0]!], 'the script after the flip is not the once script');

    // -- the web UI on B (a signed-in session, its form with the CSRF token): A sees the change
    const signIn = await fetch(`${b.admin}/ui/nodes/web1?token=${b.token}`, { redirect: 'manual' });
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    const page = await (await fetch(`${b.admin}/ui/nodes/web1`, { headers: { cookie } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)?.[1];
    assert.ok(csrf, 'the node page carries a form');
    const form = await fetch(`${b.admin}/ui/nodes/web1`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', origin: b.admin },
      body: new URLSearchParams({ csrf, action: 'disable' }).toString(),
    });
    assert.equal(form.status, 303, await form.text());
    assert.equal((await sql`SELECT enabled FROM nodes WHERE mac = ${M1}`)[0]!.enabled, 0, 'in PostgreSQL when the UI answers');
    await waitFor('A to see web1 disabled', 20_000, async () => (await api(a, 'GET', '/nodes/web1')).body.enabled === false);

    // -- delete on B: gone from A and from PostgreSQL
    const del = await api(b, 'DELETE', '/nodes/web2');
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal((await sql`SELECT 1 FROM nodes WHERE name = 'web2'`).length, 0);
    await waitFor('A to lose web2', 20_000, async () => (await api(a, 'GET', '/nodes/web2')).status === 404);
    for (const s of [a, b]) assert.doesNotMatch(fs.readFileSync(s.log, 'utf8'), /"level":(50|60)/, `${s.id} logged no error`);
  } finally {
    await lite.close();
    await sql.end();
  }
});
