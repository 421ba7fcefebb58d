/**
 * The answer policy of several servers on one segment (src/dhcp/policy.ts), as pure functions
 * and through the DHCP handler without sockets: standby silence by the client's secs, option 54
 * naming another server, renewals/rebinds answered by any server, next-server = the answerer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../src/config/schema.js';
import { emptyPacket, type DhcpPacket } from '../../src/dhcp/codec.js';
import { DhcpHandler, type Outcome, type RequestMeta } from '../../src/dhcp/handler.js';
import { MemoryDhcpBackend } from '../../src/dhcp/memory-backend.js';
import { enc, getIp, messageType, MessageType, Opt } from '../../src/dhcp/options.js';
import { clientSecs, requestStep, silenceReason } from '../../src/dhcp/policy.js';
import { explain } from '../../src/dhcp/explain.js';
import { macToBuffer } from '../../src/nodes/mac.js';

const T0 = 1_700_000_000_000;
const SERVER = '10.0.0.2';
const PRIMARY = '10.0.0.1';
const MAC = '52:54:00:00:00:01';

function config(extra: Record<string, unknown> = {}) {
  return configSchema.parse({
    dhcp: { mode: 'full', range: ['10.0.0.100', '10.0.0.102'], router: '10.0.0.1', lease_seconds: 600, subnets: [{ network: '10.2.0.0/24', range: ['10.2.0.10', '10.2.0.20'] }], ...extra },
  }).dhcp;
}

function setup(cfg = config({ answer: 'standby' })) {
  const backend = new MemoryDhcpBackend();
  const chosen: { mac: string; ip: string | undefined }[] = [];
  (backend as MemoryDhcpBackend & { otherServerChosen(mac: string, ip: string | undefined): void }).otherServerChosen = (mac, ip) => chosen.push({ mac, ip });
  const h = new DhcpHandler({ config: cfg, serverAddress: SERVER, httpPort: 8080, backend });
  h.load(T0);
  return { h, backend, chosen };
}

function pkt(type: MessageType, o: Record<number, Buffer> = {}, f: Partial<DhcpPacket> = {}, mac = MAC): DhcpPacket {
  const p = emptyPacket(1);
  p.xid = 0x4242;
  macToBuffer(mac).copy(p.chaddr);
  p.options.set(Opt.MessageType, enc.u8(type));
  for (const [k, v] of Object.entries(o)) p.options.set(Number(k), v);
  return Object.assign(p, f);
}

const meta = (now = T0): RequestMeta => ({ via: 'dhcp', from: { address: '0.0.0.0', port: 68 }, now });
const PXE = { [Opt.VendorClass]: enc.str('PXEClient:Arch:00000:UNDI:002001'), [Opt.ClientArch]: enc.u16(0) };

function only(out: Outcome) {
  assert.equal(out.replies.length, 1, 'exactly one reply');
  return out.replies[0]!;
}

test('policy: secs read as clients send it (little-endian ROMs too), the REQUEST step, who stays silent', () => {
  assert.equal(clientSecs(0), 0);
  assert.equal(clientSecs(4), 4);
  assert.equal(clientSecs(0x0300), 3, 'a little-endian 3 (a PXE ROM bug) reads as 3');
  assert.equal(clientSecs(0x0301), 0x0301);
  assert.equal(requestStep('10.0.0.1', '10.0.0.100'), 'selecting');
  assert.equal(requestStep(undefined, '10.0.0.100'), 'init-reboot');
  assert.equal(requestStep(undefined, undefined), 'renewing');
  const standby = { mode: 'standby' as const, standbySecs: 3 };
  assert.equal(silenceReason(undefined, 'discover', 0, 'x'), undefined);
  assert.equal(silenceReason({ mode: 'all', standbySecs: 3 }, 'discover', 0, 'x'), undefined);
  assert.match(silenceReason(standby, 'discover', 2, '10.0.0.0/24') ?? '', /standby for 10\.0\.0\.0\/24: the client has tried for 2 s/);
  assert.equal(silenceReason(standby, 'discover', 3, 'x'), undefined);
  assert.ok(silenceReason(standby, 'init-reboot', 0, 'x'));
  assert.equal(silenceReason(standby, 'init-reboot', 9, 'x'), undefined);
  assert.equal(silenceReason(standby, 'selecting', 0, 'x'), undefined, 'a REQUEST for its own offer is answered');
  assert.equal(silenceReason(standby, 'renewing', 0, 'x'), undefined, 'renewals and rebinds are answered');
});

test('config: answer defaults to all, subnets inherit dhcp.answer and override it; bad values are refused by name', () => {
  assert.equal(config().answer, 'all');
  assert.equal(config().standby_secs, 3);
  const r = configSchema.safeParse({ dhcp: { answer: 'sometimes' } });
  assert.ok(!r.success);
  assert.match(JSON.stringify(r.error.issues), /answer/);
  assert.ok(!configSchema.safeParse({ dhcp: { standby_secs: 0 } }).success);
});

test('standby: silent to a DISCOVER until the client has tried for standby_secs, then it offers with its own next-server', () => {
  const { h, backend } = setup(config({ answer: 'standby', standby_secs: 4 }));
  assert.deepEqual(h.handle(pkt(MessageType.Discover, PXE, { secs: 0 }), meta()).replies, []);
  assert.deepEqual(h.handle(pkt(MessageType.Discover, PXE, { secs: 3 }), meta()).replies, []);
  assert.equal(backend.nodes.size, 0, 'a silent standby registers nothing');
  const ignored = backend.events.list.filter((e) => e.kind === 'dhcp.ignored');
  assert.equal(ignored.length, 1, 'one event per client per minute');
  assert.match(String(ignored[0]!.detail!.reason), /standby for 10\.0\.0\.0\/24: the client has tried for 0 s \(secs\), under standby_secs 4 s/);
  const offer = only(h.handle(pkt(MessageType.Discover, PXE, { secs: 4 }), meta()));
  assert.equal(messageType(offer.packet.options), MessageType.Offer);
  assert.equal(offer.packet.siaddr, SERVER, 'next-server is the answering server');
  assert.equal(getIp(offer.packet.options, Opt.ServerId), SERVER);
  // Its REQUEST (option 54 = this server) is answered whatever its secs.
  const ack = only(h.handle(pkt(MessageType.Request, { ...PXE, [Opt.ServerId]: enc.ip(SERVER), [Opt.RequestedIp]: enc.ip(offer.packet.yiaddr) }, { secs: 0 }), meta()));
  assert.equal(messageType(ack.packet.options), MessageType.Ack);
  assert.equal(ack.packet.siaddr, SERVER);
});

test('standby: an INIT-REBOOT REQUEST waits for secs too; all answers at once', () => {
  const { h } = setup();
  const reboot = (secs: number) => h.handle(pkt(MessageType.Request, { [Opt.RequestedIp]: enc.ip('10.0.0.100') }, { secs }), meta());
  assert.deepEqual(reboot(1).replies, []);
  assert.equal(messageType(only(reboot(5)).packet.options), MessageType.Ack);
  const all = setup(config()).h;
  assert.equal(messageType(only(all.handle(pkt(MessageType.Discover, {}, { secs: 0 }), meta())).packet.options), MessageType.Offer);
});

test("a SELECTING REQUEST naming another server is not ACKed; this server's offer is freed and reported", () => {
  const { h, chosen } = setup(config());
  const macs = ['52:54:00:00:00:0a', '52:54:00:00:00:0b', '52:54:00:00:00:0c'];
  const offers = macs.map((m) => only(h.handle(pkt(MessageType.Discover, {}, {}, m), meta())).packet.yiaddr);
  assert.deepEqual(offers.sort(), ['10.0.0.100', '10.0.0.101', '10.0.0.102'], 'the pool of three is held by three offers');
  assert.deepEqual(h.handle(pkt(MessageType.Discover, {}, {}, '52:54:00:00:00:0d'), meta()).replies, [], 'exhausted');
  const taken = only(h.handle(pkt(MessageType.Discover, {}, {}, macs[0]), meta())).packet.yiaddr;
  const out = h.handle(pkt(MessageType.Request, { [Opt.ServerId]: enc.ip(PRIMARY), [Opt.RequestedIp]: enc.ip('10.0.0.150') }, {}, macs[0]), meta());
  assert.deepEqual(out.replies, [], 'not ACKed by this server');
  assert.deepEqual(chosen, [{ mac: macs[0], ip: '10.0.0.150' }], 'the backend hears which address the client takes elsewhere');
  const next = only(h.handle(pkt(MessageType.Discover, {}, {}, '52:54:00:00:00:0d'), meta()));
  assert.equal(next.packet.yiaddr, taken, 'the offered address is free again');
});

test('standby: a REBINDING client (ciaddr, no option 54) whose lease another server gave is ACKed from the shared lease, naming this server', () => {
  const { h } = setup();
  // The lease as PostgreSQL holds it, written by the primary (the replica hands it to the handler).
  h.noteLease(MAC, { mac: MAC, ip: '10.0.0.101', expiresAt: T0 + 100_000, hostname: '', state: 'bound', subnet: '10.0.0.0/24', updatedAt: T0 - 500_000 });
  const out = h.handle(pkt(MessageType.Request, PXE, { ciaddr: '10.0.0.101', secs: 0 }), meta());
  const ack = only(out);
  assert.equal(messageType(ack.packet.options), MessageType.Ack);
  assert.equal(ack.packet.yiaddr, '10.0.0.101');
  assert.equal(getIp(ack.packet.options, Opt.ServerId), SERVER, 'the client renews with this server from now on');
  assert.equal(ack.packet.siaddr, SERVER, 'next-server: this server, not the silent one');
  assert.deepEqual(ack.to, { address: '10.0.0.101', port: 68 });
  assert.equal(out.persist[0]?.state, 'bound');
  assert.equal(out.persist[0]!.expiresAt, T0 + 600_000, 'the lease is extended');
  // Another client's address is refused (NAK), standby or not.
  const nak = only(h.handle(pkt(MessageType.Request, {}, { ciaddr: '10.0.0.101' }, '52:54:00:00:00:77'), meta()));
  assert.equal(messageType(nak.packet.options), MessageType.Nak);
});

test('per subnet: a standby relayed subnet under an answering dhcp.range pool', () => {
  const { h } = setup(config({ subnets: [{ network: '10.2.0.0/24', range: ['10.2.0.10', '10.2.0.20'], answer: 'standby', standby_secs: 2 }] }));
  assert.equal(messageType(only(h.handle(pkt(MessageType.Discover), meta())).packet.options), MessageType.Offer, 'the local pool answers at once');
  const relayed = (secs: number) => h.handle(pkt(MessageType.Discover, {}, { giaddr: '10.2.0.1', secs }, '52:54:00:00:00:09'), meta());
  assert.deepEqual(relayed(0).replies, []);
  assert.equal(only(relayed(2)).packet.yiaddr.startsWith('10.2.0.'), true);
});

test('explain on a standby says a fresh DISCOVER is not answered, and why', () => {
  const cfg = config({ answer: 'standby' });
  const e = explain(new MemoryDhcpBackend(), { config: cfg, serverAddress: SERVER, httpPort: 8080, autoRegister: true, now: T0 }, { mac: MAC, arch: 0 });
  assert.equal(e.address, undefined);
  assert.ok(e.reasons.some((r) => /standby for 10\.0\.0\.0\/24: the client has tried for 0 s/.test(r)), JSON.stringify(e.reasons));
});
