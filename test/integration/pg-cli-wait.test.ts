/**
 * `node reinstall --wait` on PostgreSQL (src/cli/commands/reinstall-pg.ts): the CLI's boot-once
 * write and its reinstall.start event are in PostgreSQL before it power cycles, and it follows
 * the node through the events another server records in the database, to the outcome those
 * events give (here a failed provision: no SSH needed), with the exit code and --json of SQLite.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CLI, makeStateDir, pxeherd } from '../helpers/cli.js';
import { postgresUnavailable, startPostgres } from '../lab/postgres.js';
import { PostgresBackend } from '../../src/store/pg/backend.js';
import { migratePostgres } from '../../src/store/pg/schema.js';

const skip = postgresUnavailable();
const MAC = '52:54:00:19:00:01';

test('node reinstall --wait on PostgreSQL follows the events another server records for the node', { skip, timeout: 240_000 }, async (t) => {
  const pg = await startPostgres();
  const s = makeStateDir('server_id: admin-cli\n');
  const b = PostgresBackend.connect(pg.url(), 'boot-b', { max: 2 });
  t.after(async () => {
    await b.close();
    await pg.stop();
    s.cleanup();
  });
  const url = pg.url();
  await migratePostgres(b.sql);
  const add = pxeherd(['node', 'add', MAC, 'web1', '--set', 'power=command', '--set', 'power_cycle_cmd=true', '--database', url], { config: s.config });
  assert.equal(add.code, 0, add.stderr);

  const child = spawn(process.execPath, [CLI, 'node', 'reinstall', 'web1', '--wait', '--timeout', '180', '--json', '--config', s.config, '--database', url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });

  // What the servers see before the node boots: boot once, and the CLI's reinstall.start.
  const deadline = Date.now() + 90_000;
  for (;;) {
    const [n] = await b.sql`SELECT boot FROM nodes WHERE mac = ${MAC}`;
    const [e] = await b.sql`SELECT count(*)::int AS n FROM events WHERE mac = ${MAC} AND kind = 'reinstall.start'`;
    if (n!.boot === 'once' && Number(e!.n) === 1) break;
    assert.ok(Date.now() < deadline && child.exitCode === null, `the CLI published boot once and reinstall.start (stderr: ${stderr})`);
    await new Promise((r) => setTimeout(r, 200));
  }
  // Server B records the boot: DHCP, then a provision whose scripts failed.
  await b.appendEvents([{ mac: MAC, node: 'web1', kind: 'dhcp.ack', detail: { ip: '10.0.0.9' } }]);
  for (;;) {
    if (/web1: dhcp/.test(stderr)) break;
    assert.ok(Date.now() < deadline && child.exitCode === null, `the CLI followed B's dhcp event (stderr: ${stderr})`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await b.appendEvents([{ mac: MAC, node: 'web1', kind: 'provision.end', detail: { ok: false, state: 'init', failed: ['20-fail'] } }]);
  assert.equal(await exited, 1, `exit 1: the node did not reach ready (stderr: ${stderr})`);
  const out = JSON.parse(stdout) as { results: { node: string; result: string; message: string }[] };
  assert.deepEqual(out.results.map((r) => [r.node, r.result, r.message]), [['web1', 'failed', 'provision init failed (scripts: 20-fail)']]);
  assert.match(stderr, /reinstall: 1 of 1 node\(s\) did not reach ready: web1/);
  const kinds = (await b.sql`SELECT kind, server_id FROM events WHERE mac = ${MAC} ORDER BY id`).map((r) => `${r.kind}@${r.server_id}`);
  assert.deepEqual(kinds.filter((k) => k.startsWith('reinstall.')), ['reinstall.start@admin-cli', 'reinstall.fail@admin-cli'], 'the CLI recorded its events once each');
});
