/**
 * `dhcp.answer: balanced` (src/dhcp/policy.ts, src/store/pg/membership.ts) on a private
 * PostgreSQL:
 * - membership alone (no lab): two ServerMemberships on one database see each other and agree on
 *   the owner of every bucket; one that stops heartbeating (as kill -9 leaves it: its row stays)
 *   ages out of the other's live set and its buckets move; a clean stop removes the row; a server
 *   that cannot reach the database knows no live set (it answers every client).
 * - two `pxeherd serve` processes, both `balanced` (standby_secs 600, so the client's secs never
 *   decide), on one broadcast segment, with real busybox udhcpc clients in namespaces of their
 *   own: each client is offered and ACKed by exactly one server — the owner of its bucket — and
 *   the other recorded why it stayed silent; then boot-a is killed (-9) and a client whose bucket
 *   was boot-a's gets its lease from boot-b once boot-a's heartbeat row has aged out.
 * Needs PostgreSQL; the second test also root (namespaces), busybox and a built dist/cli.js.
 * PGPOLICY_KEEP=1 keeps the logs.
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
import { ServerMembership } from '../../src/store/pg/membership.js';
import { claimSlice } from '../../src/store/pg/claims.js';
import { SLICE_LOCK_CLASS } from '../../src/store/pg/schema.js';
import { bucketOwner, clientBucket } from '../../src/dhcp/policy.js';
import { macToBuffer } from '../../src/nodes/mac.js';
import { startPgServe } from '../lab/serve.js';
import { innerPid } from '../lab/procs.js';

const noPg = postgresUnavailable();
const why = labUnavailable(['busybox']) ?? noPg ?? (fs.existsSync(CLI) ? undefined : `needs ${CLI} (npm run build)`);
const NET = '10.84.0';
const SERVERS = ['boot-a', 'boot-b'];
const ADDRESS: Record<string, string> = { 'boot-a': `${NET}.1`, 'boot-b': `${NET}.2` };

/** busybox udhcpc sends option 61 = 1 (Ethernet) + its MAC: that is the client's key. */
const ownerOf = (mac: string, live = SERVERS) => bucketOwner(clientBucket(Buffer.concat([Buffer.from([1]), macToBuffer(mac)])), live)!;

/** Two clients per server while both live, and a third of boot-a's for after it is killed. */
function pickMacs(): { both: string[]; afterKill: string } {
  const per: Record<string, string[]> = { 'boot-a': [], 'boot-b': [] };
  for (let i = 1; i < 255 && (per['boot-a']!.length < 3 || per['boot-b']!.length < 2); i++) {
    const mac = `02:84:00:00:00:${i.toString(16).padStart(2, '0')}`;
    const o = ownerOf(mac);
    if (per[o]!.length < (o === 'boot-a' ? 3 : 2)) per[o]!.push(mac);
  }
  return { both: [per['boot-a']![0]!, per['boot-a']![1]!, per['boot-b']![0]!, per['boot-b']![1]!], afterKill: per['boot-a']![2]! };
}

let pg: PostgresLab;
let lab: Lab;
let dir = '';
const procs: ChildProcess[] = [];
const macs = pickMacs();
const clientNs: string[] = [];

before(async () => {
  if (noPg) return;
  pg = await startPostgres();
  if (why) return;
  dir = tmpDir('phpgbal-');
  const id = process.pid % 10000;
  const clients = [...macs.both, macs.afterKill];
  lab = createLab({
    name: 'phpgbal',
    subnet: NET,
    clientMac: clients[0],
    hosts: [{ ns: `phbal${id}b`, addr: `${NET}.2/24` }, ...clients.slice(1).map((mac, i) => ({ ns: `phbal${id}c${i + 1}`, mac }))],
  });
  clientNs.push(lab.clientNs, ...lab.hostNs.slice(1));
});

after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  lab?.destroy();
  await pg?.stop();
  if (dir && !process.env.PGPOLICY_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

test('membership: two servers agree on every bucket; one that stops heartbeating ages out and its buckets move; a clean stop removes its row; no database, no live set', { skip: noPg, timeout: 60_000 }, async () => {
  const url = await pg.createDatabase('members');
  const sql = connectPostgres(url, { max: 2 });
  const o = { heartbeatMs: 100, liveMs: 800 };
  const a = new ServerMembership(sql, 'boot-a', o);
  const b = new ServerMembership(sql, 'boot-b', o);
  try {
    await migratePostgres(sql);
    await a.start();
    await b.start();
    await waitFor('both to see both', 20_000, () => a.liveSet().length === 2 && b.liveSet().length === 2);
    assert.deepEqual(a.liveSet(), SERVERS);
    const owned = { 'boot-a': 0, 'boot-b': 0 } as Record<string, number>;
    for (let k = 0; k < 256; k++) {
      const va = a.view(k)!;
      assert.equal(va.owner, b.view(k)!.owner, `bucket ${k}: one owner on both servers`);
      assert.equal(va.owner, bucketOwner(k, SERVERS));
      owned[va.owner]!++;
    }
    assert.ok(owned['boot-a']! > 0 && owned['boot-b']! > 0, JSON.stringify(owned));
    const started = await sql<{ server_id: string; started: string; last_seen: string }[]>`SELECT server_id, started, last_seen FROM dhcp_servers ORDER BY server_id`;
    assert.deepEqual(started.map((r) => r.server_id), SERVERS);
    assert.ok(started.every((r) => Number(r.last_seen) >= Number(r.started)));

    // b stops heartbeating, its row left behind (kill -9): it ages out of a's live set.
    await b.stop({ removeRow: false });
    await waitFor("boot-b's row to age out of boot-a's live set", 20_000, () => a.liveSet().length === 1);
    assert.deepEqual(a.liveSet(), ['boot-a']);
    for (let k = 0; k < 256; k++) assert.equal(a.view(k)!.owner, 'boot-a', 'every bucket is the survivor\'s');

    // A clean stop removes the row.
    await a.stop();
    assert.equal((await sql`SELECT 1 FROM dhcp_servers WHERE server_id = 'boot-a'`).length, 0);

    // No database: no live set (the server answers every client as `all`).
    const noSocketDir = tmpDir('phpgbal-nodb-');
    const nowhere = connectPostgres(`postgres://nobody@localhost/none?host=${encodeURIComponent(path.join(noSocketDir, 'none'))}`, { max: 1 });
    const c = new ServerMembership(nowhere, 'boot-c', o);
    await c.start();
    assert.ok(c.failures > 0);
    assert.equal(c.view(0), undefined);
    await c.stop({ removeRow: false });
    await nowhere.end({ timeout: 1 }).catch(() => undefined);
    fs.rmSync(noSocketDir, { recursive: true, force: true });
  } finally {
    await a.stop({ removeRow: false });
    await b.stop({ removeRow: false });
    await sql.end({ timeout: 1 }).catch(() => undefined);
  }
});

test('a slice whose proposed name another slice holds (two balanced servers naming different new MACs alike) still offers: only the registration leaves the slice', { skip: noPg, timeout: 60_000 }, async () => {
  const url = await pg.createDatabase('names');
  const sql = connectPostgres(url, { max: 2 });
  const other = connectPostgres(url, { max: 1 });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let held!: () => void;
  const holding = new Promise<void>((r) => (held = r));
  try {
    await migratePostgres(sql);
    // The other server's slice registers ANOTHER MAC under n000001 and holds that name's key.
    const done = other.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${SLICE_LOCK_CLASS}, hashtext('n:n000001'))`;
      held();
      await gate;
    });
    await holding;
    const now = Date.now();
    const mac = '02:84:00:00:01:01';
    const res = await claimSlice(sql, 'boot-a', { defaultGroup: 'default', defaultVnfs: '' }, [{ mac, name: 'n000001' }], [{ mac, kind: 'offer', ip: '10.84.0.150', expiresAt: now + 60_000 }], now);
    assert.deepEqual([...res.busy], [], 'the client is not busy');
    assert.deepEqual(res.unregistered, [mac], 'its registration is left to registerNodes');
    assert.equal(res.registered.size, 0);
    assert.ok(res.outcomes[0]?.ok, 'its offer went in');
    const [lease] = await sql<{ state: string; ip: string }[]>`SELECT state, ip FROM leases WHERE mac = ${mac}`;
    assert.deepEqual(lease, { state: 'offered', ip: '10.84.0.150' });
    release();
    await done;
  } finally {
    release();
    await other.end({ timeout: 1 }).catch(() => undefined);
    await sql.end({ timeout: 1 }).catch(() => undefined);
  }
});

async function serve(id: string, ns: string, url: string): Promise<{ proc: ChildProcess; log: string }> {
  const s = await startPgServe(lab, {
    dir, id, ns, url, address: ADDRESS[id]!,
    yaml: `dhcp: { mode: full, range: [${NET}.100, ${NET}.199], netmask: 255.255.255.0, router: ${NET}.1, lease_seconds: 600, ipv6_ra: false, answer: balanced, standby_secs: 600 }`,
  });
  procs.push(s.proc);
  return s;
}

const logSays = (log: string, re: RegExp) => fs.existsSync(log) && re.test(fs.readFileSync(log, 'utf8'));

/** udhcpc until it has a lease (-q), recording what it bound: the answering server (option 54) and next-server. */
function udhcpc(ns: string, name: string): { events: string } {
  const events = path.join(dir, `${name}.events`);
  const script = path.join(dir, `${name}.sh`);
  fs.writeFileSync(script, `#!/bin/sh\n[ "$1" = bound ] && echo "bound ip=$ip serverid=$serverid siaddr=$siaddr" >> ${events}\nexit 0\n`);
  fs.chmodSync(script, 0o755);
  procs.push(lab.spawnInNs('busybox', ['udhcpc', '-f', '-q', '-i', 'eth0', '-s', script, '-T', '1', '-t', '5', '-A', '1'], { ns, log: path.join(dir, `${name}.log`) }));
  return { events };
}

function bound(events: string): { ip: string; serverid: string; siaddr: string } | undefined {
  if (!fs.existsSync(events)) return undefined;
  const m = /^bound ip=(\S*) serverid=(\S*) siaddr=(\S*)/m.exec(fs.readFileSync(events, 'utf8'));
  return m ? { ip: m[1]!, serverid: m[2]!, siaddr: m[3]! } : undefined;
}

test('two balanced servers on one segment: each client is answered by the owner of its bucket only; after kill -9 of one, its clients are answered by the survivor', { skip: why, timeout: 240_000 }, async () => {
  const url = await pg.createDatabase('balanced');
  const sql = connectPostgres(url, { max: 2 });
  const count = async (mac: string, kind: string, server: string) =>
    Number((await sql`SELECT count(*)::int AS n FROM events WHERE mac = ${mac} AND kind = ${kind} AND server_id = ${server}`)[0]!.n);
  try {
    await migratePostgres(sql);
    const a = await serve('boot-a', lab.ns, url);
    const b = await serve('boot-b', lab.hostNs[0]!, url);
    await waitFor('each server to see both in its live set', 30_000, () => [a, b].every((s) => logSays(s.log, /balanced among 2 live server\(s\): boot-a, boot-b/)));

    // 1. Both live: each client's lease comes from the owner of its bucket, and only the owner offers.
    const runs = macs.both.map((mac, i) => ({ mac, owner: ownerOf(mac), run: udhcpc(clientNs[i]!, `c${i}`) }));
    for (const r of runs) {
      const got = await waitFor(`${r.mac} to get a lease`, 60_000, () => bound(r.run.events));
      assert.equal(got.serverid, ADDRESS[r.owner], `${r.mac}: answered by its owner ${r.owner}`);
      assert.equal(got.siaddr, ADDRESS[r.owner], 'next-server: the answering server');
    }
    for (const r of runs) {
      const other = SERVERS.find((s) => s !== r.owner)!;
      await waitFor(`${r.owner}'s ACK of ${r.mac} in PostgreSQL`, 20_000, async () => (await count(r.mac, 'dhcp.ack', r.owner)) > 0);
      await waitFor(`${other}'s record of staying silent for ${r.mac}`, 20_000, async () => (await count(r.mac, 'dhcp.ignored', other)) > 0);
      const [silent] = await sql<{ detail: string }[]>`SELECT detail FROM events WHERE mac = ${r.mac} AND kind = 'dhcp.ignored' AND server_id = ${other} ORDER BY id LIMIT 1`;
      assert.match(JSON.parse(silent!.detail).reason, new RegExp(`^balanced for ${NET.replace(/\./g, '\\.')}\\.0/24: bucket \\d+ belongs to ${r.owner}`));
      assert.equal(await count(r.mac, 'dhcp.offer', other), 0, `${other} offered nothing to ${r.mac}`);
      assert.equal(await count(r.mac, 'dhcp.ack', other), 0);
      const [lease] = await sql<{ state: string; server_id: string }[]>`SELECT state, server_id FROM leases WHERE mac = ${r.mac}`;
      assert.deepEqual(lease, { state: 'bound', server_id: r.owner });
    }

    // 2. boot-a dies (its row stays): once the row ages out, boot-b answers boot-a's clients (secs
    // never reach standby_secs 600 here: only the membership change can make boot-b answer).
    process.kill(innerPid(a.proc), 'SIGKILL');
    const late = udhcpc(clientNs[4]!, 'c4');
    assert.equal(ownerOf(macs.afterKill), 'boot-a');
    const got = await waitFor(`${macs.afterKill} (boot-a's bucket) to get a lease from boot-b`, 90_000, () => bound(late.events));
    assert.equal(got.serverid, ADDRESS['boot-b']);
    assert.equal(got.siaddr, ADDRESS['boot-b']);
    assert.ok(logSays(b.log, /balanced among 1 live server\(s\): boot-b/), "boot-b's live set lost boot-a");
    const ips = await sql`SELECT ip FROM leases WHERE state = 'bound' GROUP BY ip HAVING count(*) > 1`;
    assert.equal(ips.length, 0, 'no address twice');
    assert.equal(b.proc.exitCode, null);
    assert.doesNotMatch(fs.readFileSync(b.log, 'utf8'), /"level":(50|60)/, 'boot-b logged no error');
  } finally {
    await sql.end({ timeout: 1 }).catch(() => undefined);
  }
});
