import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../src/config/schema.js';
import { emptyPacket, type DhcpPacket } from '../../src/dhcp/codec.js';
import { DhcpHandler, type Outcome, type RequestMeta } from '../../src/dhcp/handler.js';
import { MemoryDhcpBackend, MemoryLeaseStore } from '../../src/dhcp/memory-backend.js';
import { decodeSubOptions, enc, getIp, getString, getU32, messageType, MessageType, Opt } from '../../src/dhcp/options.js';
import { macToBuffer } from '../../src/nodes/mac.js';

const T0 = 1_700_000_000_000;
const SERVER = '10.0.0.1';
const MAC = '52:54:00:00:00:01';
const MAC2 = '52:54:00:00:00:02';

function config(extra: Record<string, unknown> = {}) {
  return configSchema.parse({
    dhcp: {
      mode: 'full',
      range: ['10.0.0.100', '10.0.0.102'],
      router: '10.0.0.1',
      dns: ['10.0.0.53'],
      domain: 'cluster.test',
      lease_seconds: 600,
      subnets: [{ network: '10.2.0.0/24', range: ['10.2.0.10', '10.2.0.20'], router: '10.2.0.1', lease_seconds: 300 }],
      ...extra,
    },
  }).dhcp;
}

function setup(opts: { cfg?: ReturnType<typeof config>; backend?: MemoryDhcpBackend } = {}) {
  const backend = opts.backend ?? new MemoryDhcpBackend();
  const h = new DhcpHandler({ config: opts.cfg ?? config(), serverAddress: SERVER, httpPort: 8080, backend });
  h.load(T0);
  return { h, backend };
}

function pkt(type: MessageType, mac = MAC, o: Record<number, Buffer> = {}, f: Partial<DhcpPacket> = {}): DhcpPacket {
  const p = emptyPacket(1);
  p.xid = 0x1234;
  macToBuffer(mac).copy(p.chaddr);
  p.options.set(Opt.MessageType, enc.u8(type));
  for (const [k, v] of Object.entries(o)) p.options.set(Number(k), v);
  return Object.assign(p, f);
}

const meta = (now = T0, extra: Partial<RequestMeta> = {}): RequestMeta => ({ via: 'dhcp', from: { address: '0.0.0.0', port: 68 }, now, ...extra });
const PXE_BIOS = { [Opt.VendorClass]: enc.str('PXEClient:Arch:00000:UNDI:002001'), [Opt.ClientArch]: enc.u16(0), [Opt.ClientGuid]: Buffer.from('00' + '11'.repeat(16), 'hex') };

function only(out: Outcome) {
  assert.equal(out.replies.length, 1, 'exactly one reply');
  return out.replies[0]!;
}

function dora(h: DhcpHandler, mac = MAC, now = T0, o: Record<number, Buffer> = {}) {
  const offer = only(h.handle(pkt(MessageType.Discover, mac, o), meta(now)));
  const ack = h.handle(pkt(MessageType.Request, mac, { ...o, [Opt.ServerId]: enc.ip(SERVER), [Opt.RequestedIp]: enc.ip(offer.packet.yiaddr) }), meta(now));
  return { offer, ack };
}

test('DISCOVER gets an OFFER from the pool with server id, lease/renew/rebind times and network options, broadcast to 68', () => {
  const { h } = setup();
  const r = only(h.handle(pkt(MessageType.Discover), meta()));
  const p = r.packet;
  assert.equal(messageType(p.options), MessageType.Offer);
  assert.equal(p.yiaddr, '10.0.0.100');
  assert.equal(p.xid, 0x1234);
  assert.equal(getIp(p.options, Opt.ServerId), SERVER);
  assert.deepEqual([getU32(p.options, 51), getU32(p.options, 58), getU32(p.options, 59)], [600, 300, 525]);
  assert.equal(getIp(p.options, Opt.SubnetMask), '255.255.255.0');
  assert.equal(getIp(p.options, Opt.Router), '10.0.0.1');
  assert.equal(getIp(p.options, Opt.Broadcast), '10.0.0.255');
  assert.equal(getString(p.options, Opt.DomainName), 'cluster.test');
  assert.equal(getString(p.options, Opt.Hostname), 'n0000', 'the node name is the hostname');
  assert.deepEqual(r.to, { address: '255.255.255.255', port: 68 });
  assert.equal(p.file, '', 'a non-PXE client gets no boot file');
});

test('REQUEST after the OFFER is ACKed, and the ACK carries the lease that must be stored first', () => {
  const { h } = setup();
  const { offer, ack } = dora(h);
  const r = only(ack);
  assert.equal(messageType(r.packet.options), MessageType.Ack);
  assert.equal(r.packet.yiaddr, offer.packet.yiaddr);
  assert.equal(ack.persist.length, 1);
  assert.deepEqual({ ...ack.persist[0]!, updatedAt: 0 }, { mac: MAC, ip: '10.0.0.100', expiresAt: T0 + 600_000, hostname: '', state: 'bound', subnet: '10.0.0.0/24', updatedAt: 0 });
  assert.deepEqual(r.bound, { mac: MAC, ip: '10.0.0.100' });
});

test('two clients get different addresses; the pool runs out and the third is not offered anything', () => {
  const { h, backend } = setup();
  const ips = ['a', 'b', 'c'].map((_, i) => dora(h, `52:54:00:00:01:0${i}`).offer.packet.yiaddr);
  assert.deepEqual(ips, ['10.0.0.100', '10.0.0.101', '10.0.0.102']);
  assert.equal(h.handle(pkt(MessageType.Discover, '52:54:00:00:01:09'), meta()).replies.length, 0);
  assert.ok(backend.events.list.some((e) => e.kind === 'dhcp.ignored' && /exhausted/.test(String(e.detail?.reason))));
});

test("a reservation (node.ip) is offered even outside the range, and the pool skips it for others", () => {
  const backend = new MemoryDhcpBackend({ nodes: [{ mac: MAC, ip: '10.0.0.5', name: 'fixed1' }, { mac: MAC2, ip: '10.0.0.100', name: 'fixed2' }] });
  const { h } = setup({ backend });
  assert.equal(dora(h, MAC).offer.packet.yiaddr, '10.0.0.5');
  assert.equal(dora(h, '52:54:00:00:00:09').offer.packet.yiaddr, '10.0.0.101', '10.0.0.100 is reserved for another node');
});

test('a reservation outside every configured subnet is not offered; the client gets a pool address', () => {
  const backend = new MemoryDhcpBackend({ nodes: [{ mac: MAC, ip: '192.168.9.9' }] });
  const { h } = setup({ backend });
  assert.equal(dora(h).offer.packet.yiaddr, '10.0.0.100');
});

test('a client REQUESTing an address other than its reservation is NAKed (broadcast)', () => {
  const backend = new MemoryDhcpBackend({ nodes: [{ mac: MAC, ip: '10.0.0.5' }] });
  const { h } = setup({ backend });
  const r = only(h.handle(pkt(MessageType.Request, MAC, { [Opt.RequestedIp]: enc.ip('10.0.0.101') }), meta()));
  assert.equal(messageType(r.packet.options), MessageType.Nak);
  assert.equal(r.packet.yiaddr, '0.0.0.0');
  assert.deepEqual(r.to, { address: '255.255.255.255', port: 68 });
  assert.match(getString(r.packet.options, Opt.Message)!, /10\.0\.0\.5/);
});

test('INIT-REBOOT for an address on another network is NAKed; for a free pool address it is ACKed', () => {
  const { h } = setup();
  const nak = only(h.handle(pkt(MessageType.Request, MAC, { [Opt.RequestedIp]: enc.ip('192.168.1.50') }), meta()));
  assert.equal(messageType(nak.packet.options), MessageType.Nak);
  const ack = only(h.handle(pkt(MessageType.Request, MAC, { [Opt.RequestedIp]: enc.ip('10.0.0.101') }), meta()));
  assert.equal(messageType(ack.packet.options), MessageType.Ack);
});

test("an address leased to another client is NAKed to a second client asking for it", () => {
  const { h } = setup();
  dora(h, MAC);
  const r = only(h.handle(pkt(MessageType.Request, MAC2, { [Opt.RequestedIp]: enc.ip('10.0.0.100') }), meta()));
  assert.equal(messageType(r.packet.options), MessageType.Nak);
  assert.match(getString(r.packet.options, Opt.Message)!, /in use/);
});

test('RENEWING (ciaddr, no server id) is ACKed by unicast to ciaddr and extends the lease', () => {
  const { h } = setup();
  dora(h);
  const later = T0 + 300_000;
  const out = h.handle(pkt(MessageType.Request, MAC, {}, { ciaddr: '10.0.0.100' }), meta(later));
  const r = only(out);
  assert.equal(messageType(r.packet.options), MessageType.Ack);
  assert.equal(r.packet.ciaddr, '10.0.0.100');
  assert.deepEqual(r.to, { address: '10.0.0.100', port: 68 });
  assert.equal(out.persist[0]!.expiresAt, later + 600_000);
});

test('the broadcast flag or no address yet means a broadcast reply; ciaddr means unicast', () => {
  const { h } = setup();
  const b = only(h.handle(pkt(MessageType.Discover, MAC, {}, { flags: 0x8000 }), meta()));
  assert.equal(b.to.address, '255.255.255.255');
  assert.equal(b.packet.flags, 0x8000, 'broadcast flag echoed');
});

test('a REQUEST naming another server frees our offer for the next client', () => {
  const { h } = setup();
  const o = only(h.handle(pkt(MessageType.Discover, MAC), meta()));
  assert.equal(h.handle(pkt(MessageType.Request, MAC, { [Opt.ServerId]: enc.ip('10.0.0.9'), [Opt.RequestedIp]: enc.ip('10.0.0.200') }), meta()).replies.length, 0);
  // Cursor moved on, but the freed address is no longer held: the requested-IP path can take it.
  const o2 = only(h.handle(pkt(MessageType.Discover, MAC2, { [Opt.RequestedIp]: enc.ip(o.packet.yiaddr) }), meta()));
  assert.equal(o2.packet.yiaddr, o.packet.yiaddr);
});

test('RELEASE keeps the record: the returning client gets its old address back', () => {
  const { h } = setup();
  dora(h, MAC);
  const rel = h.handle(pkt(MessageType.Release, MAC, { [Opt.ServerId]: enc.ip(SERVER) }, { ciaddr: '10.0.0.100' }), meta(T0 + 1000));
  assert.equal(rel.replies.length, 0);
  assert.equal(rel.persist[0]!.state, 'released');
  dora(h, MAC2, T0 + 2000); // takes another address, not the released one
  assert.equal(dora(h, MAC, T0 + 3000).offer.packet.yiaddr, '10.0.0.100');
});

test('DECLINE takes the address out of the pool; the client is offered a different one', () => {
  const { h, backend } = setup();
  dora(h, MAC);
  const d = h.handle(pkt(MessageType.Decline, MAC, { [Opt.ServerId]: enc.ip(SERVER), [Opt.RequestedIp]: enc.ip('10.0.0.100') }), meta(T0 + 1000));
  assert.equal(d.persist[0]!.state, 'declined');
  assert.ok(backend.events.list.some((e) => e.kind === 'dhcp.decline'));
  assert.equal(dora(h, MAC, T0 + 2000).offer.packet.yiaddr, '10.0.0.101');
  assert.notEqual(dora(h, MAC2, T0 + 3000).offer.packet.yiaddr, '10.0.0.100');
});

test('INFORM gets an ACK with options but no address and no lease time, unicast to ciaddr', () => {
  const { h } = setup();
  const r = only(h.handle(pkt(MessageType.Inform, MAC, PXE_BIOS, { ciaddr: '10.0.0.77' }), meta()));
  assert.equal(messageType(r.packet.options), MessageType.Ack);
  assert.equal(r.packet.yiaddr, '0.0.0.0');
  assert.equal(r.packet.options.has(Opt.LeaseTime), false);
  assert.equal(r.packet.file, 'undionly.kpxe');
  assert.deepEqual(r.to, { address: '10.0.0.77', port: 68 });
});

test('a relayed DISCOVER uses the pool of the relay (giaddr) and is answered to the relay on port 67, 82 echoed last', () => {
  const { h } = setup();
  const r82 = Buffer.from([1, 4, 0, 0, 0, 7, 2, 2, 0xab, 0xcd]);
  const r = only(h.handle(pkt(MessageType.Discover, MAC, { [Opt.RelayAgent]: r82 }, { giaddr: '10.2.0.1', hops: 1 }), meta()));
  assert.equal(r.packet.yiaddr, '10.2.0.10');
  assert.equal(r.packet.giaddr, '10.2.0.1');
  assert.deepEqual(r.to, { address: '10.2.0.1', port: 67 });
  assert.equal(getIp(r.packet.options, Opt.Router), '10.2.0.1');
  assert.equal(getU32(r.packet.options, Opt.LeaseTime), 300);
  assert.deepEqual(r.packet.options.get(Opt.RelayAgent), r82);
  assert.equal([...r.packet.options.keys()].at(-1), Opt.RelayAgent);
});

test('a relayed request from a network with no configured subnet is ignored with an event', () => {
  const { h, backend } = setup();
  assert.equal(h.handle(pkt(MessageType.Discover, MAC, {}, { giaddr: '172.16.0.1' }), meta()).replies.length, 0);
  assert.ok(backend.events.list.some((e) => e.kind === 'dhcp.ignored' && /172\.16\.0\.1/.test(String(e.detail?.reason))));
});

test('a relayed NAK goes to the relay with the broadcast bit set', () => {
  const { h } = setup();
  const r = only(h.handle(pkt(MessageType.Request, MAC, { [Opt.RequestedIp]: enc.ip('10.9.9.9') }, { giaddr: '10.2.0.1' }), meta()));
  assert.equal(messageType(r.packet.options), MessageType.Nak);
  assert.deepEqual(r.to, { address: '10.2.0.1', port: 67 });
  assert.equal(r.packet.flags & 0x8000, 0x8000);
});

test('BIOS PXE client: siaddr = server, file undionly.kpxe, option 67, GUID (97) echoed', () => {
  const { h } = setup();
  const r = only(h.handle(pkt(MessageType.Discover, MAC, PXE_BIOS), meta()));
  assert.equal(r.packet.siaddr, SERVER);
  assert.equal(r.packet.file, 'undionly.kpxe');
  assert.equal(getString(r.packet.options, Opt.BootFile), 'undionly.kpxe');
  assert.deepEqual(r.packet.options.get(Opt.ClientGuid), PXE_BIOS[Opt.ClientGuid]);
});

test('iPXE client: the offer has the boot-script URL and 175.176 = 1', () => {
  const { h } = setup();
  const r = only(h.handle(pkt(MessageType.Discover, MAC, { [Opt.UserClass]: enc.str('iPXE'), [Opt.VendorClass]: enc.str('PXEClient:Arch:00007:UNDI:003010') }), meta()));
  assert.equal(r.packet.file, `http://${SERVER}:8080/boot/${MAC}.ipxe`);
  assert.deepEqual(decodeSubOptions(r.packet.options.get(Opt.Ipxe))!.get(176), Buffer.from([1]));
});

test('UEFI HTTP boot client gets the URL and option 60 HTTPClient', () => {
  const { h } = setup();
  const r = only(h.handle(pkt(MessageType.Discover, MAC, { [Opt.VendorClass]: enc.str('HTTPClient:Arch:00016:UNDI:003001'), [Opt.ClientArch]: enc.u16(16) }), meta()));
  assert.equal(r.packet.file, `http://${SERVER}:8080/tftp/ipxe.efi`);
  assert.equal(getString(r.packet.options, Opt.VendorClass), 'HTTPClient');
});

test('unknown client with auto_register off is ignored, with one dhcp.ignored event per minute', () => {
  const backend = new MemoryDhcpBackend({ autoRegister: false });
  const { h } = setup({ backend });
  for (let i = 0; i < 3; i++) assert.equal(h.handle(pkt(MessageType.Discover), meta(T0 + i * 1000)).replies.length, 0);
  assert.equal(backend.events.list.filter((e) => e.kind === 'dhcp.ignored').length, 1);
});

test('unknown client with auto_register on is registered and answered', () => {
  const { h, backend } = setup();
  dora(h);
  assert.ok(backend.nodes.has(MAC));
  assert.deepEqual(backend.events.list.map((e) => e.kind), ['dhcp.discover', 'dhcp.offer', 'dhcp.request', 'dhcp.ack']);
});

test('leases in the store at start are honoured: a returning client gets its address, others do not get it', () => {
  const leases = new MemoryLeaseStore();
  leases.putMany([{ mac: MAC, ip: '10.0.0.101', expiresAt: T0 + 100_000, hostname: '', state: 'bound', subnet: '10.0.0.0/24', updatedAt: T0 }]);
  const { h } = setup({ backend: new MemoryDhcpBackend({ leases }) });
  assert.equal(dora(h, MAC2).offer.packet.yiaddr, '10.0.0.100');
  assert.equal(dora(h, '52:54:00:00:00:03').offer.packet.yiaddr, '10.0.0.102');
  assert.equal(dora(h, MAC).offer.packet.yiaddr, '10.0.0.101');
});

test('an expired lease is given back to its owner; another client gets it only when nothing else is free', () => {
  const leases = new MemoryLeaseStore();
  leases.putMany([{ mac: MAC, ip: '10.0.0.100', expiresAt: T0 - 1, hostname: '', state: 'bound', subnet: '10.0.0.0/24', updatedAt: T0 - 1000 }]);
  const { h } = setup({ backend: new MemoryDhcpBackend({ leases }) });
  assert.equal(dora(h, '52:54:00:00:00:07').offer.packet.yiaddr, '10.0.0.101');
  assert.equal(dora(h, '52:54:00:00:00:08').offer.packet.yiaddr, '10.0.0.102');
  assert.equal(dora(h, '52:54:00:00:00:09').offer.packet.yiaddr, '10.0.0.100', 'expired address reused last');
});

test('packets that are replies, BOOTP-only, or from a multicast MAC are dropped and counted', () => {
  const { h } = setup();
  const reply = pkt(MessageType.Offer);
  reply.op = 2;
  h.handle(reply, meta());
  const bootp = pkt(MessageType.Discover);
  bootp.options.delete(Opt.MessageType);
  h.handle(bootp, meta());
  h.handle(pkt(MessageType.Discover, '01:00:5e:00:00:01'), meta());
  assert.deepEqual([h.counters.received, h.counters.ignored, h.counters.malformed], [3, 1, 2]);
});

test('proxy mode: a PXE DISCOVER gets a ProxyDHCP OFFER without an address, with 60 PXEClient and 43 discovery control', () => {
  const { h } = setup({ cfg: config({ mode: 'proxy' }) });
  const r = only(h.handle(pkt(MessageType.Discover, MAC, PXE_BIOS), meta()));
  assert.equal(messageType(r.packet.options), MessageType.Offer);
  assert.equal(r.packet.yiaddr, '0.0.0.0');
  assert.equal(r.packet.siaddr, SERVER);
  assert.equal(r.packet.file, 'undionly.kpxe');
  assert.equal(getString(r.packet.options, Opt.VendorClass), 'PXEClient');
  assert.deepEqual(decodeSubOptions(r.packet.options.get(Opt.VendorSpecific))!.get(6), Buffer.from([8]));
  assert.deepEqual(r.packet.options.get(Opt.ClientGuid), PXE_BIOS[Opt.ClientGuid]);
  assert.equal(r.packet.options.has(Opt.LeaseTime), false);
});

test('proxy mode: non-PXE clients and plain REQUESTs on port 67 are left to the site DHCP server', () => {
  const { h } = setup({ cfg: config({ mode: 'proxy' }) });
  assert.equal(h.handle(pkt(MessageType.Discover), meta()).replies.length, 0);
  assert.equal(h.handle(pkt(MessageType.Request, MAC, { ...PXE_BIOS, [Opt.RequestedIp]: enc.ip('10.0.0.50') }), meta()).replies.length, 0);
});

test('proxy mode: a REQUEST on port 4011 gets an ACK to its source with the boot file and the boot item echoed', () => {
  const { h } = setup({ cfg: config({ mode: 'proxy' }) });
  const item = Buffer.from([0x80, 0x00, 0x00, 0x00]);
  const o = { ...PXE_BIOS, [Opt.VendorSpecific]: encodeItem(item) };
  const r = only(h.handle(pkt(MessageType.Request, MAC, o, { ciaddr: '10.0.0.50' }), meta(T0, { via: 'proxy', from: { address: '10.0.0.50', port: 4011 } })));
  assert.equal(messageType(r.packet.options), MessageType.Ack);
  assert.deepEqual(r.to, { address: '10.0.0.50', port: 4011 });
  assert.equal(r.via, 'proxy');
  assert.equal(r.packet.file, 'undionly.kpxe');
  assert.deepEqual(decodeSubOptions(r.packet.options.get(Opt.VendorSpecific))!.get(71), item);
});

function encodeItem(item: Buffer) {
  return Buffer.from([71, 4, ...item, 255]);
}

test('proxy mode: an iPXE client gets its boot-script URL as a ProxyDHCP offer (60 PXEClient), recorded as dhcp.proxy', () => {
  const { h, backend } = setup({ cfg: config({ mode: 'proxy' }) });
  const r = only(h.handle(pkt(MessageType.Discover, MAC, { [Opt.UserClass]: enc.str('iPXE'), [Opt.VendorClass]: enc.str('PXEClient:Arch:00000:UNDI:002001') }), meta()));
  assert.equal(r.packet.file, `http://${SERVER}:8080/boot/${MAC}.ipxe`);
  assert.equal(getString(r.packet.options, Opt.VendorClass), 'PXEClient');
  assert.equal(r.packet.yiaddr, '0.0.0.0');
  assert.ok(backend.events.list.some((e) => e.kind === 'dhcp.proxy' && e.detail?.boot === 'ipxe-script'));
});

test('proxy mode: a relayed PXE DISCOVER is answered to the relay on port 67', () => {
  const { h } = setup({ cfg: config({ mode: 'proxy' }) });
  const r = only(h.handle(pkt(MessageType.Discover, MAC, PXE_BIOS, { giaddr: '10.2.0.1' }), meta()));
  assert.deepEqual(r.to, { address: '10.2.0.1', port: 67 });
});

test('full mode: a renewing client of a relayed subnet unicasting directly is served from its own subnet', () => {
  const { h } = setup();
  const r = only(h.handle(pkt(MessageType.Request, MAC, {}, { ciaddr: '10.2.0.15' }), meta()));
  assert.equal(messageType(r.packet.options), MessageType.Ack);
  assert.equal(getU32(r.packet.options, Opt.LeaseTime), 300, 'lease time of 10.2.0.0/24');
});

test('INIT-REBOOT on the local link for an address of a relayed subnet is NAKed (wrong network)', () => {
  const { h } = setup();
  const r = only(h.handle(pkt(MessageType.Request, MAC, { [Opt.RequestedIp]: enc.ip('10.2.0.15') }), meta()));
  assert.equal(messageType(r.packet.options), MessageType.Nak);
  assert.match(getString(r.packet.options, Opt.Message)!, /not on network 10\.0\.0\.0\/24/);
});
