/**
 * DHCPv6 with two servers on one PostgreSQL (issue 19, src/server/pg-dhcp6.ts), without sockets:
 * two in-process servers (each its own state directory, replica, DUID and handler, as `serve`
 * wires them) on a real private PostgreSQL (test/lab/postgres.ts). Messages go through the codec
 * into each server's handler, its slice is written to the replica and confirmed in PostgreSQL
 * exactly as Dhcp6Server.flush does; only the replies confirm() returns count as sent.
 * Checked: every address sent to one client only (replies and the database), a client offered the
 * same address by both servers, one registration per MAC, a Request/Renew naming the other
 * server ignored, a Rebind answered by the other server from the shared binding, server ids on
 * rows, and with PostgreSQL gone a known client keeps its binding while a new one waits.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { tmpDir } from '../lab/lab.js';
import { connectPostgres, type Sql } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { parseConfig } from '../../src/config/load.js';
import { openPgServe, type PgServe } from '../../src/server/pg-serve.js';
import { coordinatedDhcp6Backend } from '../../src/server/pg-dhcp6.js';
import { dhcp6Backend, eventSink, namingPolicy } from '../../src/server/backends.js';
import { Dhcp6Handler } from '../../src/dhcp6/handler.js';
import type { Dhcp6Backend } from '../../src/dhcp6/backend.js';
import { decode, encode, MsgType, type Dhcp6Message, type Dhcp6Option } from '../../src/dhcp6/codec.js';
import { duidLl, first, iaAddrOption, iaNaOption, Opt6, parseIaNa } from '../../src/dhcp6/options.js';
import { silentLogger } from '../../src/util/log.js';
import { decideClaim6 } from '../../src/store/pg/leases6.js';
import type { Lease6 } from '../../src/dhcp6/backend.js';

const skip = postgresUnavailable();
let pg: PostgresLab;
let dir = '';
let sql: Sql;
const servers: Server[] = [];
let recorded6 = 0;

interface Server {
  id: string;
  duid: Buffer;
  pgs: PgServe;
  h: Dhcp6Handler;
  backend: Dhcp6Backend;
}

async function server(id: string, url: string, duidMac: string): Promise<Server> {
  const config = parseConfig({
    statedir: path.join(dir, id),
    database: url,
    server_id: id,
    dhcp6: { mode: 'full', prefix: 'fd00:77::/64', range: ['fd00:77::1000', 'fd00:77::10ff'], address: 'fd00:77::1', lease_seconds: 3600 },
  });
  fs.mkdirSync(config.statedir, { recursive: true });
  const log = silentLogger();
  const pgs = await openPgServe(config, log);
  const events = eventSink(pgs.store, log, [(ev) => (pgs.shipEvent(ev), ev.kind.startsWith('dhcp6.') && recorded6++)]);
  const pg6 = coordinatedDhcp6Backend(dhcp6Backend(pgs.store, config, events), pgs, namingPolicy(config), log);
  const duid = duidLl(duidMac);
  const h = new Dhcp6Handler({ config: config.dhcp6 as never, serverDuid: duid, serverAddress: 'fd00:77::1', httpPort: 8080, bootFiles: config.dhcp.boot_files, backend: pg6.backend });
  h.load();
  pg6.follow((macs) => h.reloadMacs(macs));
  const s = { id, duid, pgs, h, backend: pg6.backend };
  servers.push(s);
  return s;
}

before(async () => {
  if (skip) return;
  dir = tmpDir('phpgv6-');
  pg = await startPostgres();
  sql = connectPostgres(pg.url(), { max: 2 });
  await migratePostgres(sql);
});

after(async () => {
  if (skip) return;
  for (const s of servers) await s.pgs.close().catch(() => undefined);
  await sql?.end({ timeout: 1 }).catch(() => undefined);
  await pg?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const mac = (n: number) => `52:54:00:00:06:${n.toString(16).padStart(2, '0')}`;
const from = (m: string) => ({ address: `fe80::${m.split(':').slice(0, 2).join('')}%br0`, port: 546 }); // no EUI-64 here: the DUID names the MAC
function msg(type: number, options: Dhcp6Option[]): Dhcp6Message {
  const r = decode(encode({ type, xid: 0x77, options }));
  assert.ok(r.ok);
  return r.packet as Dhcp6Message;
}
const cid = (m: string) => ({ code: Opt6.ClientId, data: duidLl(m) });
const ia = (addrs: string[] = []) => iaNaOption(1, 0, 0, addrs.map((a) => iaAddrOption(a, 0, 0)));
const addrOf = (m: Dhcp6Message) => {
  const v = first(m.options, Opt6.IaNa);
  const a = v ? parseIaNa(v).addresses[0] : undefined;
  return a && a.valid > 0 ? a.address : undefined;
};

/** Every address each client was sent (Advertise or Reply), to check no address went to two. */
const handedOut = new Map<string, Set<string>>();

/** One message through one server as Dhcp6Server does it: decide, write the slice, confirm, send. */
async function exchange(s: Server, m: string, type: number, options: Dhcp6Option[]): Promise<Dhcp6Message | undefined> {
  const out = s.h.handle(msg(type, options), { from: from(m) });
  s.backend.leases.putMany(out.persist);
  const sent = out.replies.length ? await s.backend.confirm!(out.replies) : [];
  const reply = sent[0]?.message;
  const ip = reply && addrOf(reply);
  if (ip) (handedOut.get(ip) ?? handedOut.set(ip, new Set()).get(ip)!).add(m);
  return reply;
}
const solicit = (s: Server, m: string) => exchange(s, m, MsgType.Solicit, [cid(m), ia()]);

test('decideClaim6: a client keeps its address in the database, a live holder keeps its address, a stale one is evicted', () => {
  const l = (o: Partial<Lease6>): Lease6 => ({ duid: 'aa', iaid: 1, mac: mac(1), ip: 'fd00::1', expiresAt: 2000, state: 'offered', updatedAt: 0, ...o });
  assert.deepEqual(decideClaim6(l({ ip: 'fd00::9' }), undefined, { kind: 'offer', lease: l({}) }, 1000), { do: 'lost', why: 'moved', holder: l({ ip: 'fd00::9' }) });
  assert.equal(decideClaim6(undefined, l({ duid: 'bb', state: 'bound' }), { kind: 'bind', lease: l({}) }, 1000).do, 'lost');
  assert.equal(decideClaim6(undefined, l({ duid: 'bb', state: 'declined' }), { kind: 'offer', lease: l({}) }, 1000).do, 'lost', 'a declined address stays out until it expires');
  const d = decideClaim6(undefined, l({ duid: 'bb', state: 'bound', expiresAt: 500 }), { kind: 'offer', lease: l({}) }, 1000);
  assert.equal(d.do === 'write' && d.evict, `bb/1/${mac(1)}`);
  assert.equal(decideClaim6(l({ state: 'bound' }), l({ state: 'bound' }), { kind: 'offer', lease: l({}) }, 1000).do, 'keep', 'a binding is not turned back into an offer');
  assert.equal(decideClaim6(l({ ip: 'fd00::9', state: 'bound' }), undefined, { kind: 'release', lease: l({ state: 'released' }) }, 1000).do, 'none', 'only the own address is released');
});

test('two servers on one PostgreSQL: one address per client, the same from both, registered once; Rebind anywhere, Renew only at its server; offline keeps known bindings', { skip }, async () => {
  const a = await server('boot-a', pg.url(), '02:00:00:00:0a:01');
  const b = await server('boot-b', pg.url(), '02:00:00:00:0b:01');

  // 1. A new client solicits both servers (answer policy all): the same address from both, one node.
  const c1 = mac(1);
  const advA = await solicit(a, c1);
  const advB = await solicit(b, c1);
  assert.ok(advA && advB, 'both servers advertise');
  assert.equal(addrOf(advA), addrOf(advB), 'both servers offer the client the same address');
  const x = addrOf(advA)!;
  assert.deepEqual(await sql`SELECT count(*)::int AS n FROM nodes WHERE mac = ${c1}`.then((r) => r[0]!.n), 1);
  await waitShipped();
  assert.equal((await sql`SELECT count(*)::int AS n FROM events WHERE mac = ${c1} AND kind = 'node.register'`)[0]!.n, 1, 'node.register recorded once');

  // 2. Two new clients at once, one per server, both servers pick the same next address: one wins,
  //    the other's Advertise is not sent; its retransmission gets another address.
  const [c2, c3] = [mac(2), mac(3)];
  const [r2, r3] = await Promise.all([solicit(a, c2), solicit(b, c3)]);
  assert.equal([r2, r3].filter(Boolean).length, 1, 'the two servers raced for one address: exactly one Advertise went out');
  const again2 = r2 ?? (await solicit(a, c2));
  const again3 = r3 ?? (await solicit(b, c3));
  assert.ok(again2 && again3, 'each client is advertised once it retransmits');
  assert.notEqual(addrOf(again2), addrOf(again3));

  // 3. The client chooses boot-a: boot-b ignores the Request naming boot-a, boot-a binds.
  const req = [cid(c1), { code: Opt6.ServerId, data: a.duid }, ia([x])];
  assert.equal(await exchange(b, c1, MsgType.Request, req), undefined, 'a Request naming another server is ignored');
  const bound = await exchange(a, c1, MsgType.Request, req);
  assert.equal(bound && addrOf(bound), x);
  assert.deepEqual([...(await sql`SELECT state, server_id FROM leases6 WHERE mac = ${c1}`)].map((r) => [r.state, r.server_id]), [['bound', 'boot-a']]);

  // 4. boot-a dies: the Renew naming it goes unanswered at boot-b (RFC 8415 §16); the Rebind is
  //    answered by boot-b from the binding in PostgreSQL, same address, naming itself.
  await waitFor(() => b.pgs.store.leases6.byKey(duidLl(c1).toString('hex'), 1, c1)?.state === 'bound', 'boot-b replica follows the binding');
  assert.equal(await exchange(b, c1, MsgType.Renew, [cid(c1), { code: Opt6.ServerId, data: a.duid }, ia([x])]), undefined);
  const rebound = await exchange(b, c1, MsgType.Rebind, [cid(c1), ia([x])]);
  assert.equal(rebound && addrOf(rebound), x, 'Rebind answered by the other server with the same address');
  assert.deepEqual(first(rebound!.options, Opt6.ServerId), b.duid);
  assert.deepEqual([...(await sql`SELECT state, server_id FROM leases6 WHERE mac = ${c1}`)].map((r) => [r.state, r.server_id]), [['bound', 'boot-b']]);

  // No address was ever sent to two clients; the database agrees with what was sent.
  for (const [ip, macs] of handedOut) assert.equal(macs.size, 1, `${ip} sent to ${[...macs].join(', ')}`);
  const rows = await sql`SELECT ip, mac FROM leases6`;
  for (const r of rows) assert.deepEqual([...(handedOut.get(r.ip as string) ?? [])], [r.mac], `database row ${r.ip}`);
  await waitShipped();
  const servers6 = await sql`SELECT DISTINCT server_id FROM events WHERE kind LIKE 'dhcp6.%' ORDER BY 1`;
  assert.deepEqual(servers6.map((r) => r.server_id), ['boot-a', 'boot-b'], 'DHCPv6 events carry the server id');

  // 5. PostgreSQL gone: c1 (bound) renews with boot-b and is answered from the replica; a new
  //    client is not answered (it waits for the database), and that is counted.
  const frozen = freezePostgres(pg);
  try {
    const renewed = await exchange(b, c1, MsgType.Renew, [cid(c1), { code: Opt6.ServerId, data: b.duid }, ia([x])]);
    assert.equal(renewed && addrOf(renewed), x, 'a known client keeps its binding while the database does not answer');
    const renewedUntil = b.pgs.store.leases6.byKey(duidLl(c1).toString('hex'), 1, c1)!.expiresAt;
    assert.equal(await solicit(b, mac(9)), undefined, 'a new client waits for the database');
    assert.ok((b.pgs.database.paused.registration ?? 0) + (b.pgs.database.paused.lease ?? 0) >= 1);

    // 6. Back: the new client is served, and the renewal made meanwhile reaches PostgreSQL.
    frozen.thaw();
    let adv: Dhcp6Message | undefined;
    for (let i = 0; i < 40 && !adv; i++) {
      await waitFor(() => b.pgs.database.up(), 'boot-b sees the database again');
      adv = await solicit(b, mac(9)); // its retransmissions
    }
    assert.ok(adv && addrOf(adv), 'the new client is served once the database is back');
    const [row] = await sql`SELECT expires_at FROM leases6 WHERE mac = ${c1}`;
    assert.equal(Number(row!.expires_at), renewedUntil, 'the renewal answered during the outage is in PostgreSQL');
    assert.equal((await sql`SELECT count(*)::int AS n FROM nodes WHERE mac = ${mac(9)}`)[0]!.n, 1);
    for (const [ip, macs] of handedOut) assert.equal(macs.size, 1, `${ip} sent to ${[...macs].join(', ')}`);
  } finally {
    frozen.thaw();
  }
});

/**
 * PostgreSQL stops answering (its postmaster and every backend SIGSTOPped, by pid: processes this
 * test started), as a database host dropping off the network does; connections stay open. Not a
 * restart: postgres.js throws outside any promise when a connection closes mid-transaction
 * (porsager/postgres#1208, src/store/pg/connect.ts), which node:test would blame on this test.
 */
function freezePostgres(lab: PostgresLab): { thaw(): void } {
  const postmaster = lab.process.pid!;
  const children = fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return Number(fs.readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]) === postmaster;
      } catch {
        return false;
      }
    })
    .map(Number);
  const pids = [postmaster, ...children];
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
  let thawed = false;
  return {
    thaw() {
      if (thawed) return;
      thawed = true;
      for (const pid of pids.reverse()) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          /* gone */
        }
      }
    },
  };
}

async function waitShipped(): Promise<void> {
  // Events are shipped by a 200 ms timer: wait until every server's buffer is flushed (no timing in the verdict).
  for (let i = 0; i < 300; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const n = await sql`SELECT count(*)::int AS n FROM events WHERE kind LIKE 'dhcp6.%'`;
    if (n[0]!.n >= recorded6) return;
  }
}

async function waitFor(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1200 && !pred(); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(pred(), `${what} (waited 60 s)`);
}
