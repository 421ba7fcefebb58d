/**
 * `dhcp.answer: balanced` (src/dhcp/policy.ts) without sockets or a database: the client bucket
 * (Pearson hash), the bucket's owner among the live servers (rendezvous hashing), the silence
 * decision, and two handlers sharing one live set answering each client exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../src/config/schema.js';
import { emptyPacket, type DhcpPacket } from '../../src/dhcp/codec.js';
import { DhcpHandler, type RequestMeta } from '../../src/dhcp/handler.js';
import { MemoryDhcpBackend } from '../../src/dhcp/memory-backend.js';
import { enc, MessageType, Opt } from '../../src/dhcp/options.js';
import { bucketOwner, clientBucket, silenceReason, type BalanceView } from '../../src/dhcp/policy.js';
import { macToBuffer } from '../../src/nodes/mac.js';
import { standbySilence } from '../../src/dhcp6/handler.js';
import { MsgType } from '../../src/dhcp6/codec.js';
import { Opt6 } from '../../src/dhcp6/options.js';

const T0 = 1_700_000_000_000;

function macN(i: number): string {
  return `52:54:${[(i >> 24) & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
}

test('clientBucket: a Pearson hash of the key, the same for the same bytes, spread over all 256 buckets', () => {
  const a = clientBucket(macToBuffer('52:54:00:12:34:56'));
  assert.equal(clientBucket(Buffer.from(macToBuffer('52:54:00:12:34:56'))), a, 'same key, same bucket');
  assert.ok(a >= 0 && a <= 255);
  const counts = new Array<number>(256).fill(0);
  const n = 25_600;
  for (let i = 0; i < n; i++) counts[clientBucket(macToBuffer(macN(i)))]!++;
  assert.ok(counts.every((c) => c > 0), 'every bucket is used by consecutive MACs');
  assert.ok(Math.max(...counts) < 4 * (n / 256), `no bucket takes a crowd: max ${Math.max(...counts)}`);
  assert.notEqual(clientBucket(Buffer.from([1, 2, 3])), clientBucket(Buffer.from([1, 2, 3, 0])), 'the length is part of the hash');
});

test('bucketOwner: one owner per bucket whatever the order of the live set; a server leaving moves only its own buckets', () => {
  assert.equal(bucketOwner(7, []), undefined);
  assert.equal(bucketOwner(7, ['solo']), 'solo');
  const three = ['boot-a', 'boot-b', 'boot-c'];
  const share = new Map<string, number>();
  for (let b = 0; b < 256; b++) {
    const o = bucketOwner(b, three)!;
    assert.equal(bucketOwner(b, [...three].reverse()), o, 'independent of the order');
    share.set(o, (share.get(o) ?? 0) + 1);
    const survivors = three.filter((s) => s !== 'boot-c');
    // boot-c dies: its buckets go to a survivor, the others keep their owner.
    if (o !== 'boot-c') assert.equal(bucketOwner(b, survivors), o, `bucket ${b} kept its owner`);
    else assert.ok(survivors.includes(bucketOwner(b, survivors)!));
  }
  for (const s of three) assert.ok((share.get(s) ?? 0) > 40, `${s} owns a fair share: ${JSON.stringify([...share])}`);
  const two = new Map<string, number>();
  for (let b = 0; b < 256; b++) two.set(bucketOwner(b, ['bench-a', 'bench-b'])!, (two.get(bucketOwner(b, ['bench-a', 'bench-b'])!) ?? 0) + 1);
  assert.ok(two.get('bench-a')! > 80 && two.get('bench-b')! > 80, `two servers split the buckets: ${JSON.stringify([...two])}`);
});

test('silenceReason balanced: the owner answers, another server only once secs reach standby_secs, anyone when the live set is not known', () => {
  const p = { mode: 'balanced' as const, standbySecs: 3 };
  const mine: BalanceView = { self: 'a', owner: 'a', bucket: 9 };
  const theirs: BalanceView = { self: 'a', owner: 'b', bucket: 9 };
  assert.equal(silenceReason(p, 'discover', 0, 'n', mine), undefined);
  assert.match(silenceReason(p, 'discover', 0, '10.0.0.0/24', theirs) ?? '', /^balanced for 10\.0\.0\.0\/24: bucket 9 belongs to b, the client has tried for 0 s/);
  assert.equal(silenceReason(p, 'discover', 3, 'n', theirs), undefined, 'the owner is dead or slow');
  assert.ok(silenceReason(p, 'init-reboot', 1, 'n', theirs));
  assert.equal(silenceReason(p, 'selecting', 0, 'n', theirs), undefined, 'a REQUEST naming this server');
  assert.equal(silenceReason(p, 'renewing', 0, 'n', theirs), undefined, 'renewals and rebinds');
  assert.equal(silenceReason(p, 'discover', 0, 'n', undefined), undefined, 'live set unknown (database unreachable): answer as all');
});

function config(answer: string) {
  return configSchema.parse({ dhcp: { mode: 'full', range: ['10.0.0.10', '10.0.0.250'], router: '10.0.0.1', answer, standby_secs: 4 } }).dhcp;
}

function discover(mac: string, o: { secs?: number; clientId?: Buffer } = {}): DhcpPacket {
  const p = emptyPacket(1);
  p.xid = 0x77;
  macToBuffer(mac).copy(p.chaddr);
  p.secs = o.secs ?? 0;
  p.options.set(Opt.MessageType, enc.u8(MessageType.Discover));
  if (o.clientId) p.options.set(Opt.ClientId, o.clientId);
  return p;
}

const meta: RequestMeta = { via: 'dhcp', from: { address: '0.0.0.0', port: 68 }, now: T0 };

test('two handlers on one live set: each client is offered by exactly one; by both once its secs reach standby_secs; by both when the live set is not known', () => {
  const live = ['boot-a', 'boot-b'];
  let known = true;
  const handler = (self: string, address: string) => {
    const h = new DhcpHandler({
      config: config('balanced'),
      serverAddress: address,
      httpPort: 8080,
      backend: new MemoryDhcpBackend(),
      balance: (bucket) => (known ? { self, owner: bucketOwner(bucket, live)!, bucket } : undefined),
    });
    h.load(T0);
    return h;
  };
  const a = handler('boot-a', '10.0.0.2');
  const b = handler('boot-b', '10.0.0.3');
  const offers = { a: 0, b: 0 };
  for (let i = 0; i < 40; i++) {
    const mac = macN(1000 + i);
    const ra = a.handle(discover(mac), meta).replies.length;
    const rb = b.handle(discover(mac), meta).replies.length;
    assert.equal(ra + rb, 1, `${mac}: exactly one server offers`);
    const owner = bucketOwner(clientBucket(macToBuffer(mac)), live);
    assert.equal(ra === 1 ? 'boot-a' : 'boot-b', owner);
    offers.a += ra;
    offers.b += rb;
    // Its owner is silent (dead or slow): the retransmission with secs 4 is answered by both.
    assert.equal(a.handle(discover(mac, { secs: 4 }), meta).replies.length + b.handle(discover(mac, { secs: 4 }), meta).replies.length, 2);
  }
  assert.ok(offers.a > 0 && offers.b > 0, `both servers got clients: ${JSON.stringify(offers)}`);
  // The client identifier (option 61) is the key when sent: the bucket follows it, not chaddr.
  const id = Buffer.from([0xff, 1, 2, 3, 4, 5, 6, 7, 8]);
  const idOwner = bucketOwner(clientBucket(id), live);
  assert.equal(a.handle(discover(macN(5000), { clientId: id }), meta).replies.length, idOwner === 'boot-a' ? 1 : 0);
  assert.equal(b.handle(discover(macN(5000), { clientId: id }), meta).replies.length, idOwner === 'boot-b' ? 1 : 0);
  known = false;
  assert.equal(a.handle(discover(macN(6000)), meta).replies.length + b.handle(discover(macN(6000)), meta).replies.length, 2, 'unknown live set: both answer');
});

test("the server that does not own a client records only why it stayed silent, and ignores the client's REQUEST for its owner's offer without freeing anything", () => {
  const live = ['boot-a', 'boot-b'];
  let mac = '';
  for (let i = 0; !mac; i++) if (bucketOwner(clientBucket(macToBuffer(macN(i))), live) === 'boot-a') mac = macN(i);
  const backend = new MemoryDhcpBackend();
  const chosen: string[] = [];
  (backend as MemoryDhcpBackend & { otherServerChosen(mac: string): void }).otherServerChosen = (m) => chosen.push(m);
  const b = new DhcpHandler({ config: config('balanced'), serverAddress: '10.0.0.3', httpPort: 8080, backend, balance: (bucket) => ({ self: 'boot-b', owner: bucketOwner(bucket, live)!, bucket }) });
  b.load(T0);
  assert.equal(b.handle(discover(mac), meta).replies.length, 0);
  assert.deepEqual(backend.events.list.map((e) => e.kind), ['dhcp.ignored']);
  assert.match(String(backend.events.list[0]!.detail!.reason), /bucket \d+ belongs to boot-a/);
  const req = discover(mac);
  req.options.set(Opt.MessageType, enc.u8(MessageType.Request));
  req.options.set(Opt.ServerId, enc.ip('10.0.0.2'));
  req.options.set(Opt.RequestedIp, enc.ip('10.0.0.50'));
  assert.equal(b.handle(req, meta).replies.length, 0);
  assert.deepEqual(chosen, [], 'nothing of boot-b to free');
  assert.deepEqual(backend.events.list.map((e) => e.kind), ['dhcp.ignored'], 'no dhcp.request of another server\'s exchange');
  // Under `all` the same REQUEST is recorded and this server's offer freed, as before.
  const all = new MemoryDhcpBackend();
  (all as MemoryDhcpBackend & { otherServerChosen(mac: string): void }).otherServerChosen = (m) => chosen.push(m);
  const h = new DhcpHandler({ config: config('all'), serverAddress: '10.0.0.3', httpPort: 8080, backend: all });
  h.load(T0);
  h.handle(req, meta);
  assert.deepEqual(chosen, [mac]);
  assert.deepEqual(all.events.list.map((e) => e.kind), ['dhcp.request']);
});

test('config: balanced is accepted for dhcp.answer and dhcp.subnets[].answer', () => {
  assert.equal(config('balanced').answer, 'balanced');
  const c = configSchema.parse({ dhcp: { mode: 'full', range: ['10.0.0.10', '10.0.0.20'], subnets: [{ network: '10.2.0.0/24', range: ['10.2.0.10', '10.2.0.20'], answer: 'balanced' }] } });
  assert.equal(c.dhcp.subnets[0]!.answer, 'balanced');
  assert.ok(!configSchema.safeParse({ dhcp: { answer: 'balance' } }).success);
});

test('dhcp6.answer balanced: the DUID picks the bucket; its owner answers a Solicit, another server once Elapsed Time reaches standby_secs, anyone when the live set is not known', () => {
  const live = ['boot-a', 'boot-b'];
  const duid = Buffer.from('000300015254000000aa', 'hex');
  const owner = bucketOwner(clientBucket(duid), live)!;
  const other = live.find((s) => s !== owner)!;
  const solicit = (hundredths: number) => ({ type: MsgType.Solicit, xid: 1, options: [{ code: Opt6.ClientId, data: duid }, { code: Opt6.ElapsedTime, data: Buffer.from([hundredths >> 8, hundredths & 0xff]) }] });
  const cfg = { answer: 'balanced' as const, standby_secs: 3 };
  const as = (self: string) => (bucket: number) => ({ self, owner: bucketOwner(bucket, live)!, bucket });
  assert.equal(standbySilence(cfg, solicit(0), as(owner)), undefined);
  assert.match(standbySilence(cfg, solicit(0), as(other)) ?? '', new RegExp(`^dhcp6.answer balanced: bucket \\d+ belongs to ${owner}`));
  assert.equal(standbySilence(cfg, solicit(300), as(other)), undefined, 'the owner is silent');
  assert.equal(standbySilence(cfg, solicit(0), () => undefined), undefined, 'live set not known');
  assert.equal(standbySilence(cfg, { ...solicit(0), type: MsgType.Rebind }, as(other)), undefined, 'rebinds: any server');
  assert.equal(configSchema.parse({ dhcp6: { answer: 'balanced' } }).dhcp6.answer, 'balanced');
});
