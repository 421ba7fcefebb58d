/**
 * The answer policy of two `pxeherd serve` processes on one PostgreSQL and one broadcast segment
 * (issue 19, src/dhcp/policy.ts), with real busybox udhcpc clients in their own namespaces:
 * boot-a answers every client (`answer: all`), boot-b is `answer: standby` (standby_secs 3).
 * - boot-b hears client X's DISCOVERs and stays silent; X gets its lease from boot-a;
 * - boot-a is killed: a new client Y gets its lease from boot-b once its secs reach 3 (boot-b
 *   recorded why it stayed silent before), next-server naming boot-b;
 * - X, whose lease came from boot-a, renews with the dead boot-a at T1 (unicast, unanswered),
 *   then broadcasts a REBINDING request: boot-b ACKs it from the lease in PostgreSQL, same
 *   address, naming itself. (udhcpc rebinds once under 30 s of lease remain: with the shortest
 *   lease, 60 s, that is ~33 s after it bound; the test waits for it, it does not time it.)
 * Needs root (namespaces), busybox and PostgreSQL. PGPOLICY_KEEP=1 keeps the logs.
 *
 * First, without a lab: option 54 on PostgreSQL (pg-serve.ts' releaseOfferTakenElsewhere): when a
 * client's REQUEST names another server, the offer row this server wrote is released so the
 * address is free at once — but never the address the client is taking, another server's row,
 * or a bound lease.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, labUnavailable, tmpDir, waitFor, type Lab } from '../lab/lab.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { CLI } from '../../bench/storm-lab.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { PostgresBackend } from '../../src/store/pg/backend.js';
import { releaseOfferTakenElsewhere } from '../../src/server/pg-serve.js';
import { startPgServe } from '../lab/serve.js';
import { innerPid } from '../lab/procs.js';

const noPg = postgresUnavailable();
const why = labUnavailable(['busybox']) ?? noPg ?? (fs.existsSync(CLI) ? undefined : `needs ${CLI} (npm run build)`);
const NET = '10.83.0';
const MAC_X = '02:83:00:00:00:0a';
const MAC_Y = '02:83:00:00:00:0b';

let pg: PostgresLab;
let lab: Lab;
let dir = '';
const procs: ChildProcess[] = [];

before(async () => {
  if (noPg) return;
  pg = await startPostgres();
  if (why) return;
  dir = tmpDir('phpgpolicy-');
  const id = process.pid % 10000;
  lab = createLab({ name: 'phpgp', subnet: NET, clientMac: MAC_X, hosts: [{ ns: `phpgp${id}b`, addr: `${NET}.2/24` }, { ns: `phpgp${id}y`, mac: MAC_Y }] });
});

after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  lab?.destroy();
  await pg?.stop();
  if (dir && !process.env.PGPOLICY_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

async function serve(id: string, ns: string, address: string, url: string, answer: string): Promise<{ proc: ChildProcess; log: string }> {
  const s = await startPgServe(lab, {
    dir, id, ns, url, address,
    yaml: `dhcp: { mode: full, range: [${NET}.100, ${NET}.199], netmask: 255.255.255.0, router: ${NET}.1, lease_seconds: 60, ipv6_ra: false, ${answer} }`,
  });
  procs.push(s.proc);
  return s;
}

/** A udhcpc script that records each event with the lease's fields and configures the address (a renewal is unicast from it). */
function clientScript(name: string): { script: string; log: string } {
  const log = path.join(dir, `${name}.events`);
  const script = path.join(dir, `${name}.sh`);
  fs.writeFileSync(
    script,
    `#!/bin/sh
echo "EVENT $1 ip=$ip serverid=$serverid siaddr=$siaddr" >> ${log}
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/24" dev "$interface";;
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up;;
esac
exit 0
`,
  );
  fs.chmodSync(script, 0o755);
  return { script, log };
}

interface ClientEvent {
  event: string;
  ip: string;
  serverid: string;
  siaddr: string;
}

function events(log: string): ClientEvent[] {
  if (!fs.existsSync(log)) return [];
  return fs
    .readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const m = /^EVENT (\S+) ip=(\S*) serverid=(\S*) siaddr=(\S*)/.exec(l)!;
      return { event: m[1]!, ip: m[2]!, serverid: m[3]!, siaddr: m[4]! };
    });
}

test('a REQUEST naming another server releases only this server\'s own offer of another address', { skip: noPg, timeout: 60_000 }, async () => {
  const a = PostgresBackend.connect(await pg.createDatabase('offers'), 'a', { max: 2 });
  const b = PostgresBackend.connect(pg.url('offers'), 'b', { max: 2 });
  try {
    await migratePostgres(a.sql);
    const now = Date.now();
    const hold = now + 60_000;
    const mac = (n: number) => `52:54:00:00:05:0${n}`;
    const state = async (m: string) => (await a.leaseByMac(m))?.state;

    // b offered .10 to client 1, which took an address from a server not on this database.
    assert.ok((await b.offerLease({ mac: mac(1), ip: '10.9.0.10', expiresAt: hold, now })).ok);
    assert.equal((await a.offerLease({ mac: mac(2), ip: '10.9.0.10', expiresAt: hold, now })).ok, false, 'held by the offer');
    assert.equal(await releaseOfferTakenElsewhere(b, mac(1), '10.9.0.99', now), true);
    assert.equal(await state(mac(1)), 'released');
    assert.ok((await a.allocateLease({ mac: mac(2), ip: '10.9.0.10', expiresAt: hold, now })).ok, 'the address is free again at once');

    // The address the client takes from the other server on this database stays offered (about to be bound).
    assert.ok((await b.offerLease({ mac: mac(3), ip: '10.9.0.11', expiresAt: hold, now })).ok);
    assert.equal(await releaseOfferTakenElsewhere(b, mac(3), '10.9.0.11', now), false);
    assert.equal(await state(mac(3)), 'offered');

    // Another server's offer, and a bound lease, are left alone.
    assert.ok((await a.offerLease({ mac: mac(4), ip: '10.9.0.12', expiresAt: hold, now })).ok);
    assert.equal(await releaseOfferTakenElsewhere(b, mac(4), '10.9.0.99', now), false);
    assert.equal(await state(mac(4)), 'offered');
    assert.ok((await b.allocateLease({ mac: mac(5), ip: '10.9.0.13', expiresAt: hold, now })).ok);
    assert.equal(await releaseOfferTakenElsewhere(b, mac(5), '10.9.0.99', now), false);
    assert.equal(await state(mac(5)), 'bound');
  } finally {
    await a.close();
    await b.close();
  }
});

test('two servers on one segment: the standby stays silent while the primary answers, answers once the primary is dead and a client has tried for standby_secs, and ACKs the REBIND of a client whose server died', { skip: why, timeout: 180_000 }, async () => {
  const url = await pg.createDatabase('policy');
  const sql = connectPostgres(url, { max: 2 });
  const count = async (mac: string, kind: string, server: string) =>
    Number((await sql`SELECT count(*)::int AS n FROM events WHERE mac = ${mac} AND kind = ${kind} AND server_id = ${server}`)[0]!.n);
  try {
    await migratePostgres(sql);
    const a = await serve('boot-a', lab.ns, `${NET}.1`, url, 'answer: all');
    const b = await serve('boot-b', lab.hostNs[0]!, `${NET}.2`, url, 'answer: standby, standby_secs: 3');

    // 1. X boots while both run: boot-a answers, boot-b hears it and stays silent.
    const x = clientScript('x');
    const udhcpcX = lab.spawnInNs('busybox', ['udhcpc', '-f', '-i', 'eth0', '-s', x.script, '-T', '1', '-t', '20', '-A', '1'], { ns: lab.clientNs, log: path.join(dir, 'x.log') });
    procs.push(udhcpcX);
    const bound = await waitFor('X to get a lease', 30_000, () => events(x.log).find((e) => e.event === 'bound'));
    assert.equal(bound.serverid, `${NET}.1`, 'X took the primary\'s lease');
    assert.equal(bound.siaddr, `${NET}.1`, 'next-server: the primary that answered');
    await waitFor("boot-b's record of staying silent for X", 20_000, async () => (await count(MAC_X, 'dhcp.ignored', 'boot-b')) > 0);
    assert.ok((await count(MAC_X, 'dhcp.discover', 'boot-b')) > 0, 'boot-b heard X');
    const [silent] = await sql<{ detail: string }[]>`SELECT detail FROM events WHERE mac = ${MAC_X} AND kind = 'dhcp.ignored' AND server_id = 'boot-b' ORDER BY id LIMIT 1`;
    assert.match(JSON.parse(silent!.detail).reason, /^standby for 10\.83\.0\.0\/24: the client has tried for 0 s/);
    assert.equal(await count(MAC_X, 'dhcp.offer', 'boot-b'), 0, 'boot-b offered nothing');
    assert.equal(await count(MAC_X, 'dhcp.ack', 'boot-b'), 0);

    // 2. boot-a dies. Y boots: boot-b answers once Y's secs reach 3.
    process.kill(innerPid(a.proc), 'SIGKILL');
    const y = clientScript('y');
    const udhcpcY = lab.spawnInNs('busybox', ['udhcpc', '-f', '-q', '-i', 'eth0', '-s', y.script, '-T', '1', '-t', '20', '-A', '1'], { ns: lab.hostNs[1]!, log: path.join(dir, 'y.log') });
    procs.push(udhcpcY);
    const yBound = await waitFor('Y to get a lease from the standby', 60_000, () => events(y.log).find((e) => e.event === 'bound'));
    assert.equal(yBound.serverid, `${NET}.2`, 'the standby answered');
    assert.equal(yBound.siaddr, `${NET}.2`, 'next-server: the standby, not the dead primary');
    await waitFor("boot-b's events for Y in PostgreSQL", 20_000, async () => (await count(MAC_Y, 'dhcp.ack', 'boot-b')) > 0);
    const yReasons = (await sql<{ detail: string }[]>`SELECT detail FROM events WHERE mac = ${MAC_Y} AND kind = 'dhcp.ignored' AND server_id = 'boot-b'`).map((r) => JSON.parse(r.detail).reason as string);
    assert.ok(yReasons.some((r) => /standby/.test(r)), `boot-b first stayed silent for Y: ${JSON.stringify(yReasons)}`);
    const [yLease] = await sql<{ ip: string; state: string; server_id: string }[]>`SELECT ip, state, server_id FROM leases WHERE mac = ${MAC_Y}`;
    assert.deepEqual(yLease, { ip: yBound.ip, state: 'bound', server_id: 'boot-b' });

    // 3. X renews with the dead boot-a, unanswered, then rebinds by broadcast: boot-b ACKs it from
    // the lease in PostgreSQL.
    const renewed = await waitFor("X's rebind answered by the standby", 90_000, () => events(x.log).find((e) => e.event === 'renew'));
    assert.equal(renewed.ip, bound.ip, 'X keeps its address');
    assert.equal(renewed.serverid, `${NET}.2`, 'the standby ACKed and names itself for the next renewal');
    assert.equal(renewed.siaddr, `${NET}.2`);
    assert.ok(!events(x.log).some((e) => e.event === 'deconfig' && events(x.log).indexOf(e) > 0), 'X never lost its address');
    await waitFor("boot-b's ACK of X in PostgreSQL", 20_000, async () => (await count(MAC_X, 'dhcp.ack', 'boot-b')) > 0);
    const [xLease] = await sql<{ ip: string; state: string; server_id: string }[]>`SELECT ip, state, server_id FROM leases WHERE mac = ${MAC_X}`;
    assert.deepEqual(xLease, { ip: bound.ip, state: 'bound', server_id: 'boot-b' }, 'the lease in PostgreSQL, extended by boot-b');
    const ips = await sql`SELECT ip FROM leases WHERE state = 'bound' GROUP BY ip HAVING count(*) > 1`;
    assert.equal(ips.length, 0, 'no address twice');
    assert.equal(b.proc.exitCode, null);
    assert.doesNotMatch(fs.readFileSync(b.log, 'utf8'), /"level":(50|60)/, 'boot-b logged no error');
  } finally {
    await sql.end({ timeout: 1 }).catch(() => undefined);
  }
});
