/**
 * DHCPv6 from two `pxeherd serve` processes on one PostgreSQL (issue 19, src/server/pg-dhcp6.ts),
 * with real ISC `dhclient -6` clients (always with `-sf` the lab's own script, never Debian's
 * dhclient-script) on one link: boot-a on br0 (fd00:78::1), boot-b in its own namespace on the
 * same bridge (fd00:78::2), both `dhcp6.mode: full` with one range, a real private PostgreSQL.
 * Three clients solicit at once, both servers answer (policy all); then boot-a is killed with -9
 * and a fourth client is served by boot-b alone. Checked in PostgreSQL: each client's binding is
 * the address in its own lease file, no address bound to two clients, every MAC one node with one
 * node.register, DHCPv6 events of both servers carrying their server ids. Then PostgreSQL stops
 * (pg_ctl): a known client starting over gets its own address from boot-b's replica, a new one
 * gets nothing (dhclient given 8 s: a negative check, no timing in it); PostgreSQL back, the new
 * one is served and the binding renewed during the outage is in PostgreSQL; one outage log line.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, labUnavailable, run, sh, tmpDir, waitFor, writeDhclient6Script, type Lab } from '../lab/lab.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { CLI } from '../helpers/cli.js';
import { connectPostgres, type Sql } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { startPgServe } from '../lab/serve.js';
import { innerPid } from '../lab/procs.js';
import { postgresRestarter, type PostgresRestarter } from '../lab/postgres-pgctl.js';

const why = labUnavailable(['dhclient']) ?? postgresUnavailable() ?? (fs.existsSync(CLI) ? undefined : `needs ${CLI} (npm run build)`);
const PREFIX = 'fd00:78::';
const MACS = ['02:78:00:00:00:01', '02:78:00:00:00:02', '02:78:00:00:00:03', '02:78:00:00:00:04'];
/** A client that first appears while PostgreSQL is down. */
const LATE_MAC = '02:78:00:00:00:05';

let pg: PostgresLab;
let lab: Lab;
let dir = '';
let sql: Sql;
let restarter: PostgresRestarter | undefined;
const procs: ChildProcess[] = [];

before(async () => {
  if (why) return;
  dir = tmpDir('phpgv6c-');
  pg = await startPostgres();
  const id = process.pid % 10000;
  lab = createLab({
    name: 'phpg6',
    subnet: '10.78.0',
    ipv6: { prefix: PREFIX },
    clientMac: MACS[0],
    hosts: [{ ns: `phpg6${id}b`, addr: '10.78.0.2/24' }, ...[...MACS.slice(1), LATE_MAC].map((mac, i) => ({ ns: `phpg6${id}k${i}`, mac }))],
  });
  sh('ip', ['-n', lab.hostNs[0]!, '-6', 'addr', 'add', `${PREFIX}2/64`, 'dev', 'eth0', 'nodad']);
  sql = connectPostgres(pg.url(), { max: 2 });
  await migratePostgres(sql);
});

after(async () => {
  if (why) return;
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  lab?.destroy();
  await sql?.end({ timeout: 1 }).catch(() => undefined);
  restarter?.stopRestarted();
  await pg?.stop();
  if (!process.env.PGV6_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

async function serve(id: string, ns: string, iface: string, v4: string, v6: string): Promise<{ proc: ChildProcess; log: string }> {
  const s = await startPgServe(lab, {
    dir, id, ns, url: pg.url(), address: v4,
    yaml: `interface: ${iface}
dhcp: { mode: off }
dhcp6: { mode: full, address: '${v6}', prefix: '${PREFIX}/64', range: ['${PREFIX}1000', '${PREFIX}10ff'], lease_seconds: 600, ra: false, slaac: false }`,
    services: ['dhcp6'],
    timeoutMs: 60_000,
    failOn: /dhcp6: [^\n]*"level":50|"level":50[^\n]*dhcp6: /,
  });
  procs.push(s.proc);
  return s;
}

/**
 * One dhclient -6 run to a lease (its own files under dir); the address in its lease file.
 * `giveUpAfterMs`: a client the servers must not answer (undefined when it got nothing).
 */
async function lease(ns: string, n: number, o: { giveUpAfterMs?: number } = {}): Promise<string | undefined> {
  await waitFor(`client ${n}'s link-local address`, 20_000, () => {
    const a = sh('ip', ['-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'], { ns });
    return /inet6 fe80/.test(a) && !/tentative/.test(a);
  });
  const file = path.join(dir, `dhclient6-${n}.leases`);
  const args = ['-6', '-1', '-v', '-sf', writeDhclient6Script(dir), '-lf', file, '-pf', path.join(dir, `dhclient6-${n}.pid`), 'eth0'];
  const r = o.giveUpAfterMs
    ? await run('timeout', [String(Math.ceil(o.giveUpAfterMs / 1000)), 'dhclient', ...args], { ns, timeoutMs: o.giveUpAfterMs + 30_000 }).catch((e: { stderr?: string }) => ({ stderr: e.stderr ?? '' }))
    : await run('dhclient', args, { ns, timeoutMs: 90_000 });
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const addr = /iaaddr ([0-9a-f:]+)/.exec(text)?.[1];
  if (!o.giveUpAfterMs) assert.ok(addr, `client ${n} got an address:\n${text}\n${r.stderr.slice(-1500)}`);
  return addr;
}

/** Stop a client's dhclient (by the pid it wrote) and keep only its DUID: its next run Solicits as the same client. */
function restartAsSameClient(n: number): void {
  const pidFile = path.join(dir, `dhclient6-${n}.pid`);
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  if (pid > 0) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  const file = path.join(dir, `dhclient6-${n}.leases`);
  const duid = /default-duid "[^"]*";/.exec(fs.readFileSync(file, 'utf8'))?.[0];
  assert.ok(duid, 'the lease file names the client DUID');
  fs.writeFileSync(file, `${duid}\n`);
}

test('two servers on one PostgreSQL serve DHCPv6 to real dhclient -6 clients: no address twice, one node per MAC, both servers in the events; kill -9 of one, the other serves', { skip: why, timeout: 240_000 }, async () => {
  const a = await serve('boot-a', lab.ns, 'br0', '10.78.0.1', `${PREFIX}1`);
  await serve('boot-b', lab.hostNs[0]!, 'eth0', '10.78.0.2', `${PREFIX}2`);
  const clients = [lab.clientNs, ...lab.hostNs.slice(1)];

  const got = await Promise.all(clients.slice(0, 3).map((ns, i) => lease(ns, i)));
  assert.equal(new Set(got).size, 3, `three clients, three addresses: ${got.join(' ')}`);

  process.kill(innerPid(a.proc), 'SIGKILL');
  await waitFor('boot-a gone', 20_000, () => a.proc.exitCode !== null || a.proc.signalCode !== null);
  got.push(await lease(clients[3]!, 3));
  assert.equal(new Set(got).size, 4, `the fourth client, served by boot-b alone, got an address of its own: ${got.join(' ')}`);

  const rows = await sql<{ mac: string; ip: string; state: string; server_id: string }[]>`SELECT mac, ip, state, server_id FROM leases6 WHERE state = 'bound' ORDER BY mac`;
  assert.deepEqual(
    rows.map((r) => [r.mac, r.ip]),
    MACS.map((m, i) => [m, got[i]]),
    'each client is bound in PostgreSQL to the address in its lease file, one binding each',
  );
  assert.equal(rows.find((r) => r.mac === MACS[3])?.server_id, 'boot-b');
  const nodes = await sql<{ mac: string; n: number }[]>`SELECT mac, count(*)::int AS n FROM nodes GROUP BY mac ORDER BY mac`;
  assert.deepEqual(nodes.map((r) => [r.mac, r.n]), MACS.map((m) => [m, 1]), 'every MAC is one node');
  const regs = await sql<{ mac: string; n: number }[]>`SELECT mac, count(*)::int AS n FROM events WHERE kind = 'node.register' GROUP BY mac ORDER BY mac`;
  assert.deepEqual(regs.map((r) => [r.mac, r.n]), MACS.map((m) => [m, 1]), 'one node.register per MAC');
  // Events are shipped every 200 ms: wait for boot-b's last ones, then both servers must be there.
  await waitFor('DHCPv6 events of both servers in PostgreSQL', 30_000, async () => {
    const s = await sql<{ server_id: string }[]>`SELECT DISTINCT server_id FROM events WHERE kind = 'dhcp6.advertise' ORDER BY 1`;
    return s.map((r) => r.server_id).join(' ') === 'boot-a boot-b';
  });
  const bySrv = await sql`SELECT server_id, count(*)::int AS n FROM events WHERE kind LIKE 'dhcp6.%' GROUP BY 1 ORDER BY 1`;
  process.stderr.write(`# pg-dhcp6-clients: addresses ${got.join(' ')}; DHCPv6 events by server ${JSON.stringify(bySrv)}\n`);

  // PostgreSQL down (pg_ctl stop: every connection cut; boot-b's pool is guarded, this test's
  // own pool is closed first). Client 0, known, starts over with its DUID (Solicit, Request): boot-b
  // serves it its own address from the replica. A client never seen before gets nothing.
  const [before] = await sql`SELECT expires_at FROM leases6 WHERE mac = ${MACS[0]!}`;
  await sql.end({ timeout: 1 });
  restarter = postgresRestarter(pg);
  restarter.stop();
  restartAsSameClient(0);
  assert.equal(await lease(clients[0]!, 0), got[0], 'a known client keeps its address while the database is down');
  assert.equal(await lease(clients[4]!, 4, { giveUpAfterMs: 8_000 }), undefined, 'a new client waits for the database');
  restarter.start();
  // Back: the new client gets an address of its own; the binding boot-b renewed meanwhile is in PostgreSQL.
  const late = (await lease(clients[4]!, 4))!;
  assert.ok(!got.includes(late), `the late client's address ${late} is its own`);
  sql = connectPostgres(pg.url(), { max: 2 });
  const [row] = await sql`SELECT ip, expires_at, server_id FROM leases6 WHERE mac = ${MACS[0]!} AND state = 'bound'`;
  assert.ok(row && row.ip === got[0] && Number(row.expires_at) > Number(before!.expires_at), `the binding renewed during the outage reached PostgreSQL: ${JSON.stringify(row)} (before: ${before!.expires_at})`);
  assert.equal((await sql`SELECT count(*)::int AS n FROM nodes WHERE mac = ${LATE_MAC}`)[0]!.n, 1);
  const bLog = fs.readFileSync(path.join(dir, 'boot-b.log'), 'utf8');
  assert.equal(bLog.match(/new registrations and new dynamic leases pause/g)?.length, 1, 'one log line for the outage');
});
