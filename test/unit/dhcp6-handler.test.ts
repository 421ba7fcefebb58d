import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, encode, MsgType, type Dhcp6Message, type Dhcp6Option } from '../../src/dhcp6/codec.js';
import { Dhcp6Handler, type Trace6 } from '../../src/dhcp6/handler.js';
import { MemoryDhcp6Backend, MemoryLease6Store } from '../../src/dhcp6/memory-backend.js';
import { duidLl, enc6, first, formatOption6, iaAddrOption, iaNaOption, Opt6, parseIaNa, parseStatus, Status } from '../../src/dhcp6/options.js';
import type { Dhcp6Config } from '../../src/dhcp6/pool.js';

const SERVER_DUID = duidLl('02:00:00:00:00:01');
const cfg = (o: Partial<Dhcp6Config> = {}): Dhcp6Config => ({
  mode: 'full',
  port: 547,
  address: '',
  prefix: 'fd00:77::/64',
  range: ['fd00:77::1000', 'fd00:77::1002'],
  lease_seconds: 3600,
  dns: ['fd00:77::53'],
  domain_search: ['lab.example'],
  rapid_commit: true,
  ra: true,
  slaac: true,
  ...o,
});
const BOOT = { bios: 'undionly.kpxe', uefi_x64: 'ipxe.efi', uefi_arm64: '', uefi_http: 'ipxe.efi' };
const FROM = { address: 'fe80::5054:ff:fe00:1%br0', port: 546 };

function setup(o: Partial<Dhcp6Config> = {}, backend = new MemoryDhcp6Backend()) {
  const h = new Dhcp6Handler({ config: cfg(o), serverDuid: SERVER_DUID, serverAddress: 'fd00:77::1', httpPort: 8080, bootFiles: BOOT, backend });
  h.load(0);
  return { h, backend };
}

function msg(type: number, options: Dhcp6Option[], xid = 0x123456): Dhcp6Message {
  // Through the codec, as the server does, so the test sends only what could arrive.
  const r = decode(encode({ type, xid, options }));
  assert.ok(r.ok);
  return r.packet as Dhcp6Message;
}
const cid = (mac = '52:54:00:00:00:01') => ({ code: Opt6.ClientId, data: duidLl(mac) });
const sid = { code: Opt6.ServerId, data: SERVER_DUID };
const ia = (iaid = 1, addrs: string[] = []) => iaNaOption(iaid, 0, 0, addrs.map((a) => iaAddrOption(a, 0, 0)));
const oro = (...codes: number[]) => ({ code: Opt6.Oro, data: Buffer.concat(codes.map(enc6.u16)) });
const addrOf = (m: Dhcp6Message) => {
  const v = first(m.options, Opt6.IaNa);
  return v ? parseIaNa(v).addresses[0]?.address : undefined;
};
const url = (m: Dhcp6Message) => first(m.options, Opt6.BootfileUrl)?.toString();

test('Solicit -> Advertise -> Request -> Reply: an address from the range, persisted before the reply, node registered', () => {
  const { h, backend } = setup();
  const a = h.handle(msg(MsgType.Solicit, [cid(), ia(), oro(23, 59)]), { from: FROM, now: 1000 });
  const adv = a.replies[0]!.message;
  assert.equal(adv.type, MsgType.Advertise);
  assert.equal(adv.xid, 0x123456);
  assert.equal(a.replies[0]!.to, FROM, 'answered at the link-local source');
  assert.equal(addrOf(adv), 'fd00:77::1000');
  assert.equal(first(adv.options, Opt6.Preference)?.[0], 255);
  assert.equal(a.persist.length, 0, 'an Advertise binds nothing');
  assert.deepEqual(first(adv.options, Opt6.ServerId), SERVER_DUID);
  const r = h.handle(msg(MsgType.Request, [cid(), sid, ia(1, ['fd00:77::1000'])]), { from: FROM, now: 2000 });
  const rep = r.replies[0]!.message;
  assert.equal(rep.type, MsgType.Reply);
  assert.equal(addrOf(rep), 'fd00:77::1000');
  const iaOut = parseIaNa(first(rep.options, Opt6.IaNa)!);
  assert.deepEqual([iaOut.t1, iaOut.t2, iaOut.addresses[0]!.valid], [1800, 2880, 3600]);
  assert.deepEqual(r.persist.map((l) => [l.mac, l.ip, l.state, l.iaid]), [['52:54:00:00:00:01', 'fd00:77::1000', 'bound', 1]]);
  assert.equal(r.persist[0]!.duid, duidLl('52:54:00:00:00:01').toString('hex'));
  assert.deepEqual(r.replies[0]!.bound, { mac: '52:54:00:00:00:01', ip: 'fd00:77::1000' });
  assert.equal(backend.nodes.get('52:54:00:00:00:01')?.name, 'n0000');
  const kinds = backend.list.map((e) => e.kind);
  assert.deepEqual(kinds, ['dhcp6.solicit', 'node.register', 'dhcp6.advertise', 'dhcp6.request', 'dhcp6.reply']);
  assert.equal(first(rep.options, Opt6.DnsServers)?.length, 16);
});

test('Rapid Commit: one Solicit, one Reply that binds and says rapid commit', () => {
  const { h } = setup();
  const r = h.handle(msg(MsgType.Solicit, [cid(), ia(), { code: Opt6.RapidCommit, data: Buffer.alloc(0) }]), { from: FROM, now: 0 });
  const rep = r.replies[0]!.message;
  assert.equal(rep.type, MsgType.Reply);
  assert.ok(first(rep.options, Opt6.RapidCommit));
  assert.equal(r.persist[0]?.state, 'bound');
  const off = setup({ rapid_commit: false }).h.handle(msg(MsgType.Solicit, [cid(), ia(), { code: Opt6.RapidCommit, data: Buffer.alloc(0) }]), { from: FROM, now: 0 });
  assert.equal(off.replies[0]!.message.type, MsgType.Advertise, 'dhcp6.rapid_commit: false -> the four-message exchange');
});

test('boot-file URL by client kind: UEFI PXE -> tftp://, HTTPClient -> http:// with vendor class, iPXE -> its script', () => {
  const { h } = setup();
  const arch = (n: number) => ({ code: Opt6.ClientArchType, data: enc6.u16(n) });
  const vc = (s: string) => ({ code: Opt6.VendorClass, data: Buffer.concat([enc6.u32(343), enc6.opaqueList([s])]) });
  const pxe = h.handle(msg(MsgType.Solicit, [cid(), ia(), oro(59), arch(7), vc('PXEClient:Arch:00007:UNDI:003016')]), { from: FROM, now: 0 });
  assert.equal(url(pxe.replies[0]!.message), 'tftp://[fd00:77::1]/ipxe.efi');
  const http = h.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:02'), ia(), oro(59), arch(16), vc('HTTPClient:Arch:00016:UNDI:003016')]), { from: FROM, now: 0 });
  const hm = http.replies[0]!.message;
  assert.equal(url(hm), 'http://[fd00:77::1]:8080/tftp/ipxe.efi');
  assert.match(first(hm.options, Opt6.VendorClass)!.toString('latin1'), /HTTPClient/);
  const ipxe = h.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:03'), ia(), oro(59), { code: Opt6.UserClass, data: enc6.opaqueList(['iPXE']) }]), { from: FROM, now: 0 });
  assert.equal(url(ipxe.replies[0]!.message), 'http://[fd00:77::1]:8080/boot/52:54:00:00:00:03.ipxe');
  const plain = h.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:04'), ia()]), { from: FROM, now: 0 });
  assert.equal(url(plain.replies[0]!.message), undefined, 'a plain host gets no boot URL');
  const asked = h.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:05'), ia(), oro(59)]), { from: FROM, now: 0 });
  assert.equal(url(asked.replies[0]!.message), undefined, 'asking for 59 without saying what it is gets no loader');
  assert.equal(first(pxe.replies[0]!.message.options, Opt6.BootfileParam), undefined, 'no dhcp6.boot_params: no option 60');
  const withParams = setup({ boot_params: ['console=ttyS0', 'quiet'] }).h.handle(msg(MsgType.Solicit, [cid(), ia(), oro(59, 60), arch(7)]), { from: FROM, now: 0 });
  const p = first(withParams.replies[0]!.message.options, Opt6.BootfileParam)!;
  assert.equal(formatOption6({ code: Opt6.BootfileParam, data: p }), '"console=ttyS0" "quiet"', 'option 60: length-prefixed parameters (RFC 5970 §3.2)');
});

test('Renew extends, Release frees, a returning client gets its address back, Renew of an unknown IA says NoBinding', () => {
  const { h, backend } = setup();
  const store = backend.leases as MemoryLease6Store;
  const bind = h.handle(msg(MsgType.Solicit, [cid(), ia(), { code: Opt6.RapidCommit, data: Buffer.alloc(0) }]), { from: FROM, now: 0 });
  store.putMany(bind.persist);
  const ren = h.handle(msg(MsgType.Renew, [cid(), sid, ia(1, ['fd00:77::1000'])]), { from: FROM, now: 1_000_000 });
  assert.equal(ren.persist[0]!.expiresAt, 1_000_000 + 3_600_000);
  const nob = h.handle(msg(MsgType.Renew, [cid(), sid, ia(9, ['fd00:77::1001'])]), { from: FROM, now: 0 });
  const st = first(parseIaNa(first(nob.replies[0]!.message.options, Opt6.IaNa)!).options, Opt6.StatusCode)!;
  assert.equal(parseStatus(st).code, Status.NoBinding);
  const rel = h.handle(msg(MsgType.Release, [cid(), sid, ia(1, ['fd00:77::1000'])]), { from: FROM, now: 2_000_000 });
  assert.equal(rel.persist[0]!.state, 'released');
  assert.equal(parseStatus(first(rel.replies[0]!.message.options, Opt6.StatusCode)!).code, Status.Success);
  store.putMany(rel.persist);
  // Another client takes the next address, not the released one (it is remembered for its owner).
  const other = h.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:09'), ia()]), { from: FROM, now: 3_000_000 });
  assert.equal(addrOf(other.replies[0]!.message), 'fd00:77::1001');
  const back = h.handle(msg(MsgType.Solicit, [cid(), ia()]), { from: FROM, now: 3_000_000 });
  assert.equal(addrOf(back.replies[0]!.message), 'fd00:77::1000');
});

test('the pool runs out: NoAddrsAvail in the IA, never an address twice', () => {
  const { h } = setup();
  const got = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const r = h.handle(msg(MsgType.Solicit, [cid(`52:54:00:00:01:0${i}`), ia(), { code: Opt6.RapidCommit, data: Buffer.alloc(0) }]), { from: FROM, now: 0 });
    const a = addrOf(r.replies[0]!.message);
    if (a) got.add(a);
    else {
      const st = first(parseIaNa(first(r.replies[0]!.message.options, Opt6.IaNa)!).options, Opt6.StatusCode)!;
      assert.equal(parseStatus(st).code, Status.NoAddrsAvail);
    }
  }
  assert.equal(got.size, 3);
});

test('Decline keeps the address out; Confirm says on-link or not; Information-request gets config without addresses', () => {
  const { h } = setup();
  const b = h.handle(msg(MsgType.Solicit, [cid(), ia(), { code: Opt6.RapidCommit, data: Buffer.alloc(0) }]), { from: FROM, now: 0 });
  const ip = b.persist[0]!.ip;
  const d = h.handle(msg(MsgType.Decline, [cid(), sid, ia(1, [ip])]), { from: FROM, now: 10 });
  assert.equal(d.persist[0]!.state, 'declined');
  const again = h.handle(msg(MsgType.Solicit, [cid(), ia()]), { from: FROM, now: 20 });
  assert.notEqual(addrOf(again.replies[0]!.message), ip);
  const ok = h.handle(msg(MsgType.Confirm, [cid(), ia(1, ['fd00:77::1234'])]), { from: FROM, now: 0 });
  assert.equal(parseStatus(first(ok.replies[0]!.message.options, Opt6.StatusCode)!).code, Status.Success);
  const no = h.handle(msg(MsgType.Confirm, [cid(), ia(1, ['fd00:99::1'])]), { from: FROM, now: 0 });
  assert.equal(parseStatus(first(no.replies[0]!.message.options, Opt6.StatusCode)!).code, Status.NotOnLink);
  const inf = h.handle(msg(MsgType.InformationRequest, [cid(), oro(23, 24, 59)]), { from: FROM, now: 0 });
  const im = inf.replies[0]!.message;
  assert.equal(im.type, MsgType.Reply);
  assert.equal(first(im.options, Opt6.IaNa), undefined);
  assert.ok(first(im.options, Opt6.DomainList));
});

test('RFC 8415 §16 violations are dropped and counted; another server chosen is ignored', () => {
  const { h } = setup();
  assert.equal(h.handle(msg(MsgType.Solicit, [ia()]), { from: FROM }).replies.length, 0, 'no client id');
  assert.equal(h.handle(msg(MsgType.Solicit, [cid(), sid, ia()]), { from: FROM }).replies.length, 0, 'server id in a Solicit');
  assert.equal(h.handle(msg(MsgType.Request, [cid(), ia()]), { from: FROM }).replies.length, 0, 'no server id in a Request');
  assert.equal(h.counters.malformed, 3);
  const other = { code: Opt6.ServerId, data: duidLl('02:00:00:00:00:99') };
  assert.equal(h.handle(msg(MsgType.Request, [cid(), other, ia()]), { from: FROM }).replies.length, 0);
  assert.equal(h.handle(msg(MsgType.Advertise, [cid(), other]), { from: FROM }).replies.length, 0, 'server messages are not answered');
  assert.equal(h.counters.ignored, 2);
});

test('the MAC: DUID-LL/LLT first, then the EUI-64 link-local source, then an earlier lease, then the neighbour table', () => {
  const backend = new MemoryDhcp6Backend();
  const { h } = setup({}, backend);
  const uuid = { code: Opt6.ClientId, data: Buffer.from('0004' + '11'.repeat(16), 'hex') };
  const t: Trace6 = { reasons: [] };
  h.handle(msg(MsgType.Solicit, [uuid, ia()]), { from: { address: 'fe80::5054:ff:feab:cdef%br0', port: 546 }, now: 0, trace: t });
  assert.equal(t.mac, '52:54:00:ab:cd:ef');
  assert.match(t.macSource!, /EUI-64/);
  const t2: Trace6 = { reasons: [] };
  backend.neighbours.set('fe80::1234', '52:54:00:00:77:77');
  h.handle(msg(MsgType.Solicit, [{ code: Opt6.ClientId, data: Buffer.from('0004' + '22'.repeat(16), 'hex') }, ia()]), { from: { address: 'fe80::1234%br0', port: 546 }, now: 0, trace: t2 });
  assert.equal(t2.mac, '52:54:00:00:77:77');
  assert.match(t2.macSource!, /neighbour/);
  const t3: Trace6 = { reasons: [] };
  const none = h.handle(msg(MsgType.Solicit, [{ code: Opt6.ClientId, data: Buffer.from('0004' + '33'.repeat(16), 'hex') }, ia()]), { from: { address: 'fe80::99%br0', port: 546 }, now: 0, trace: t3 });
  assert.equal(none.replies.length, 0);
  assert.match(t3.reasons.join(' '), /no MAC address/);
  assert.ok(backend.list.some((e) => e.kind === 'dhcp6.ignored'));
});

test('auto_register off: an unknown client is ignored with an event, a known one is served', () => {
  const backend = new MemoryDhcp6Backend({ autoRegister: false, nodes: [{ mac: '52:54:00:00:00:02', name: 'known' }] });
  const { h } = setup({}, backend);
  assert.equal(h.handle(msg(MsgType.Solicit, [cid(), ia()]), { from: FROM, now: 0 }).replies.length, 0);
  assert.ok(backend.list.some((e) => e.kind === 'dhcp6.ignored' && /auto_register/.test(String(e.detail?.reason))));
  assert.equal(h.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:02'), ia()]), { from: FROM, now: 0 }).replies.length, 1);
});

test('leases survive a restart: a new handler loads them and the client keeps its address', () => {
  const store = new MemoryLease6Store();
  const { h } = setup({}, new MemoryDhcp6Backend({ leases: store }));
  const r = h.handle(msg(MsgType.Solicit, [cid(), ia(), { code: Opt6.RapidCommit, data: Buffer.alloc(0) }]), { from: FROM, now: 0 });
  store.putMany(r.persist);
  const { h: h2 } = setup({}, new MemoryDhcp6Backend({ leases: store }));
  const other = h2.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:08'), ia()]), { from: FROM, now: 10 });
  assert.notEqual(addrOf(other.replies[0]!.message), r.persist[0]!.ip, 'the loaded lease is in use');
  const same = h2.handle(msg(MsgType.Solicit, [cid(), ia()]), { from: FROM, now: 10 });
  assert.equal(addrOf(same.replies[0]!.message), r.persist[0]!.ip);
});

test('two machines sending the same DUID-UUID and IAID (all-zero SMBIOS UUID in VMs) get separate bindings by their MACs', () => {
  const store = new MemoryLease6Store();
  const { h } = setup({}, new MemoryDhcp6Backend({ leases: store }));
  const zero = { code: Opt6.ClientId, data: Buffer.from('0004' + '00'.repeat(16), 'hex') };
  const rc = { code: Opt6.RapidCommit, data: Buffer.alloc(0) };
  const a = h.handle(msg(MsgType.Solicit, [zero, ia(1), rc]), { from: { address: 'fe80::5054:ff:fe00:a%br0', port: 546 }, now: 0 });
  const b = h.handle(msg(MsgType.Solicit, [zero, ia(1), rc]), { from: { address: 'fe80::5054:ff:fe00:b%br0', port: 546 }, now: 0 });
  store.putMany([...a.persist, ...b.persist]);
  assert.deepEqual([a.persist[0]!.mac, b.persist[0]!.mac], ['52:54:00:00:00:0a', '52:54:00:00:00:0b']);
  assert.notEqual(a.persist[0]!.ip, b.persist[0]!.ip, 'never the same address');
  assert.equal(store.leases.size, 2, 'both bindings kept');
  const again = h.handle(msg(MsgType.Solicit, [zero, ia(1)]), { from: { address: 'fe80::5054:ff:fe00:a%br0', port: 546 }, now: 10 });
  assert.equal(addrOf(again.replies[0]!.message), a.persist[0]!.ip, 'each keeps its own');
});

test('answer standby (several servers on one database): a Solicit is answered only once its Elapsed Time reaches standby_secs; a Rebind always', () => {
  const { h, backend } = setup({ answer: 'standby', standby_secs: 3 });
  const elapsed = (hundredths: number) => ({ code: Opt6.ElapsedTime, data: enc6.u16(hundredths) });
  const trace: Trace6 = { reasons: [] };
  assert.equal(h.handle(msg(MsgType.Solicit, [cid(), ia(), elapsed(0)]), { from: FROM, now: 0, trace }).replies.length, 0, 'a fresh Solicit is the primary\'s');
  assert.match(trace.reasons.join('\n'), /standby: the client has tried for 0\.00 s/);
  assert.equal(backend.nodes.size, 0, 'a standby that stays silent registers nobody');
  assert.equal(h.handle(msg(MsgType.Solicit, [cid(), ia(), elapsed(299)]), { from: FROM, now: 0 }).replies.length, 0);
  const adv = h.handle(msg(MsgType.Solicit, [cid(), ia(), elapsed(300)]), { from: FROM, now: 0 }).replies[0]?.message;
  assert.equal(adv?.type, MsgType.Advertise, 'the primary is silent: the standby answers');
  const rebind = h.handle(msg(MsgType.Rebind, [cid('52:54:00:00:00:02'), ia(1, ['fd00:77::1001']), elapsed(0)]), { from: FROM, now: 0 }).replies[0]?.message;
  assert.equal(rebind?.type, MsgType.Reply, 'a Rebind goes to any server, standby included');
  assert.equal(addrOf(rebind!), 'fd00:77::1001');
});

test('replies carry their claims for a shared database; a binding another server wrote (reloadMacs) is followed, its decline keeps the address out', () => {
  const store = new MemoryLease6Store();
  const { h } = setup({}, new MemoryDhcp6Backend({ leases: store }));
  const a = h.handle(msg(MsgType.Solicit, [cid(), ia()]), { from: FROM, now: 0 });
  assert.deepEqual(a.replies[0]!.claims?.map((c) => [c.kind, c.lease.ip, c.lease.state]), [['offer', 'fd00:77::1000', 'offered']]);
  assert.equal(a.replies[0]!.mac, '52:54:00:00:00:01');
  const r = h.handle(msg(MsgType.Request, [cid(), sid, ia(1, ['fd00:77::1000'])]), { from: FROM, now: 0 });
  assert.deepEqual(r.replies[0]!.claims?.map((c) => [c.kind, c.lease.ip, c.lease.state]), [['bind', 'fd00:77::1000', 'bound']]);
  // Another server bound fd00:77::1001 to client 2 and saw fd00:77::1002 declined: the replica has them.
  const other = (mac: string, ip: string, state: 'bound' | 'declined') => ({ duid: duidLl(mac).toString('hex'), iaid: 1, mac, ip, state, expiresAt: 600_000, updatedAt: 0 });
  store.putMany([other('52:54:00:00:00:02', 'fd00:77::1001', 'bound'), other('52:54:00:00:00:03', 'fd00:77::1002', 'declined')]);
  h.reloadMacs(new Set(['52:54:00:00:00:02', '52:54:00:00:00:03']));
  const c4 = h.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:04'), ia()]), { from: FROM, now: 1000 });
  assert.equal(addrOf(c4.replies[0]!.message), undefined, 'the pool of three is used up: bound here, bound and declined elsewhere');
  const c2 = h.handle(msg(MsgType.Solicit, [cid('52:54:00:00:00:02'), ia()]), { from: FROM, now: 1000 });
  assert.equal(addrOf(c2.replies[0]!.message), 'fd00:77::1001', 'client 2 is offered the address the other server bound');
});
