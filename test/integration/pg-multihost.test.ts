/**
 * Issue 19, several hosts in the database URL (libpq's `postgres://h1,h2/db`), through the pool's
 * socket factory (PoolSockets, src/store/pg/connect.ts): with the first host down, `pxeherd serve`
 * and the CLI connect through the second and work, and serve's log says which host failed and
 * which one it connected through; with every host down the CLI fails at once naming them (it
 * used to retry for ever); with `target_session_attrs=read-write` a read-only first host is
 * passed over for the writable one.
 * Real parts: two private PostgreSQL clusters on loopback TCP (test/lab/postgres.ts), the built
 * CLI and `pxeherd serve`, curl. A host that is down is a loopback port where nothing listens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { CLI } from '../helpers/cli.js';
import { tmpDir, waitFor } from '../lab/lab.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { freePort } from '../lab/procs.js';
import { connectPostgres } from '../../src/store/pg/connect.js';

const has = (t: string) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
const skip = postgresUnavailable() ?? (!has('curl') ? 'needs curl' : !fs.existsSync(CLI) ? 'needs npm run build (dist/cli.js)' : undefined);
const run = promisify(execFile);
const NO_ENV = { PXEHERD_DATABASE: undefined, PXEHERD_CONFIG: undefined };

/** The CLI on `url`, with a time limit (a hang is a failure, not a stuck test). */
function cli(args: string[], config: string, url: string): { code: number | null; stdout: string; stderr: string; ms: number } {
  const t = Date.now();
  const r = spawnSync(process.execPath, [CLI, ...args, '--config', config, '--database', url], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...NO_ENV } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t };
}

/** The node names of `node list --json`. */
const names = (json: string) => (JSON.parse(json) as { nodes: { name: string }[] }).nodes.map((n) => n.name);

const tcpUrl = (hosts: string[], db: string, q = '') => `postgres://pxeherd@${hosts.join(',')}/${db}${q}`;

test('first host down: serve and the CLI connect through the second, serve logs which; every host down: the CLI fails at once naming them; target_session_attrs passes a read-only host over', { skip, timeout: 300_000 }, async (t) => {
  const dir = tmpDir('phpgmh-');
  const procs: ChildProcess[] = [];
  const labs: PostgresLab[] = [];
  t.after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    for (const l of labs) await l.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const portA = await freePort();
  const a = await startPostgres({ tcpPort: portA, database: 'mh' });
  labs.push(a);
  const down = `127.0.0.1:${await freePort()}`; // nothing listens there
  const up = `127.0.0.1:${portA}`;
  const url = tcpUrl([down, up], 'mh');
  const http = await freePort();
  const config = path.join(dir, 'pxeherd.yaml');
  fs.writeFileSync(
    config,
    `statedir: ${path.join(dir, 'var')}\nserver_id: mh-a\naddress: 127.0.0.1\ndhcp: { mode: off }\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\nhttp: { port: ${http} }\nsecurity: { node_tokens: false }\n`,
  );

  // The CLI through the second host: migrate, write, read.
  for (const args of [['db', 'migrate'], ['node', 'add', '52:54:00:19:a0:01', 'mh1'], ['group', 'set', 'compute', 'note', 'via-b']]) {
    const r = cli(args, config, url);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const list = cli(['node', 'list', '--json'], config, url);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(names(list.stdout), ['mh1']);
  // It is the second host's database that holds them.
  const sql = connectPostgres(a.url('mh'), { max: 1 });
  try {
    assert.equal((await sql`SELECT name FROM nodes`).map((r) => r.name).join(), 'mh1');
  } finally {
    await sql.end();
  }

  // serve through the second host: its log names the failed host and the one it uses; it follows
  // changes made meanwhile (its replica and LISTEN go through the second host too).
  fs.appendFileSync(config, `database: "${url}"\n`);
  const log = path.join(dir, 'serve.log');
  const out = fs.openSync(log, 'a');
  const p = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', out, out], env: { ...process.env, ...NO_ENV } });
  fs.closeSync(out);
  procs.push(p);
  await waitFor('serve to listen', 60_000, () => {
    if (p.exitCode !== null) throw new Error(`serve exited: ${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    return /http listening/.test(fs.readFileSync(log, 'utf8'));
  });
  const text = fs.readFileSync(log, 'utf8');
  assert.match(text, new RegExp(`database: host ${down.replace(/\./g, '\\.')} failed \\([^)]*ECONNREFUSED`), 'the log says which host failed');
  assert.match(text, new RegExp(`database: connected through host ${up.replace(/\./g, '\\.')}`), 'the log says which host it connected through');
  assert.match(text, /replica loaded \(1 nodes/);
  assert.equal(cli(['node', 'add', '52:54:00:19:a0:02', 'mh2'], config, url).code, 0);
  const script = await waitFor("serve's replica to have mh2", 30_000, async () => {
    const { stdout } = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${http}/boot/52-54-00-19-a0-02.ipxe`]).catch(() => ({ stdout: '' }));
    return /mh2/.test(stdout) && stdout;
  });
  assert.match(script, /mh2/);
  p.kill('SIGTERM');
  await new Promise((r) => (p.exitCode !== null ? r(undefined) : p.once('exit', r)));

  // Every host down: the CLI fails at once (exit 1), naming each host; no endless reconnecting.
  const none = cli(['node', 'list'], config, tcpUrl([down, `127.0.0.1:${await freePort()}`], 'mh'));
  assert.equal(none.code, 1, `exit 1, not a hang (${none.ms} ms): ${none.stderr}`);
  assert.match(none.stderr, /cannot reach the database .*ECONNREFUSED.*ECONNREFUSED/);

  // target_session_attrs=read-write: a second cluster whose database is read-only comes first.
  const portB = await freePort();
  const b = await startPostgres({ tcpPort: portB, database: 'mh' });
  labs.push(b);
  const sb = connectPostgres(b.url('mh'), { max: 1 });
  try {
    await sb`ALTER DATABASE mh SET default_transaction_read_only = on`;
  } finally {
    await sb.end();
  }
  const rw = tcpUrl([`127.0.0.1:${portB}`, up], 'mh', '?target_session_attrs=read-write');
  for (let i = 3; i <= 4; i++) {
    const r = cli(['node', 'add', `52:54:00:19:a0:0${i}`, `mh${i}`], config, rw);
    assert.equal(r.code, 0, r.stderr);
  }
  const all = cli(['node', 'list', '--json'], config, rw);
  assert.deepEqual(names(all.stdout), ['mh1', 'mh2', 'mh3', 'mh4'], 'written to and read from the writable host');
  // No host with a writable session: refused at once (libpq: no suitable server), nothing written.
  const ro = cli(['node', 'add', '52:54:00:19:a0:09', 'mh9'], config, tcpUrl([`127.0.0.1:${portB}`, `127.0.0.1:${portB}`], 'mh', '?target_session_attrs=read-write'));
  assert.equal(ro.code, 1, `${ro.ms} ms: ${ro.stderr}`);
  assert.match(ro.stderr, /no host of the database URL has a read-write session/);
  assert.deepEqual(names(cli(['node', 'list', '--json'], config, url).stdout), ['mh1', 'mh2', 'mh3', 'mh4']);
});
