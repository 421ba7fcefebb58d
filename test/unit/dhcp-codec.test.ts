import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode, encode, emptyPacket, MAGIC_COOKIE, type DhcpPacket } from '../../src/dhcp/codec.js';
import { clientKind } from '../../src/dhcp/boot.js';
import { decodeSubOptions, enc, encodeSubOptions, getArchs, getIp, getString, getUserClasses, messageType, MessageType, Opt } from '../../src/dhcp/options.js';

const FIX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/dhcp');
const fixture = (name: string) => Buffer.from(readFileSync(path.join(FIX, `${name}.hex`), 'utf8').replace(/\s+/g, ''), 'hex');

function mustDecode(buf: Buffer): DhcpPacket {
  const r = decode(buf);
  if (!r.ok) throw new Error(`decode failed: ${r.error} ${r.detail}`);
  return r.packet;
}

test('every captured client packet decodes and re-encodes to the same bytes', () => {
  const files = readdirSync(FIX).filter((f) => f.endsWith('.hex'));
  assert.ok(files.length >= 8, 'fixtures present');
  for (const f of files) {
    const raw = fixture(f.replace(/\.hex$/, ''));
    const p = mustDecode(raw);
    const again = encode(p, { maxSize: raw.length });
    // Clients pad after END differently; compare up to our length, then the rest must be padding.
    assert.deepEqual(again.subarray(0, Math.min(again.length, raw.length)), raw.subarray(0, Math.min(again.length, raw.length)), f);
    assert.ok(raw.subarray(again.length).every((b) => b === 0), `${f}: only padding after END`);
    assert.deepEqual(mustDecode(again), p, `${f}: decode(encode(p)) == p`);
  }
});

test('golden: udhcpc PXE BIOS discover carries vendor class, arch 0 and the MAC', () => {
  const p = mustDecode(fixture('udhcpc-discover-pxe-bios'));
  assert.equal(p.op, 1);
  assert.equal(messageType(p.options), MessageType.Discover);
  assert.equal(p.chaddr.subarray(0, 6).toString('hex'), '02790000000a');
  assert.equal(getString(p.options, Opt.VendorClass), 'PXEClient:Arch:00000:UNDI:002001');
  assert.deepEqual(getArchs(p.options), [0]);
  assert.deepEqual(clientKind(p.options), { arch: 0, vendorClass: 'PXEClient:Arch:00000:UNDI:002001', ipxe: false });
});

test('golden: udhcpc iPXE-class request is recognised as iPXE, arch 7, with requested IP and server id', () => {
  const p = mustDecode(fixture('udhcpc-request-ipxe-uefi'));
  assert.equal(messageType(p.options), MessageType.Request);
  assert.deepEqual(getUserClasses(p.options), ['iPXE']);
  assert.equal(clientKind(p.options).ipxe, true);
  assert.equal(clientKind(p.options).arch, 7);
  assert.equal(getIp(p.options, Opt.ServerId), '10.79.0.1');
  assert.match(getIp(p.options, Opt.RequestedIp) ?? '', /^10\.79\.0\.\d+$/);
});

test('golden: dhclient discover asks for the usual parameters and has no vendor class', () => {
  const p = mustDecode(fixture('dhclient-discover'));
  assert.equal(messageType(p.options), MessageType.Discover);
  assert.equal(getString(p.options, Opt.VendorClass), undefined);
  const prl = [...p.options.get(Opt.ParamRequestList)!];
  for (const c of [1, 3, 6, 15, 28]) assert.ok(prl.includes(c), `dhclient requests option ${c}`);
});

test('golden: our offer to the iPXE client carries 175.176=1, the script URL and option 97 echo rules', () => {
  const p = mustDecode(fixture('pxeherd-offer-ipxe-uefi'));
  assert.equal(p.op, 2);
  assert.equal(messageType(p.options), MessageType.Offer);
  assert.equal(p.file, 'http://10.79.0.1:8080/boot/02:79:00:00:00:0a.ipxe');
  assert.deepEqual(decodeSubOptions(p.options.get(Opt.Ipxe))?.get(176), Buffer.from([1]));
});

test('golden: an OFFER from dnsmasq (another implementation) decodes: boot file in option 67, TFTP server in 66', () => {
  const p = mustDecode(fixture('dnsmasq-offer'));
  assert.equal(p.op, 2);
  assert.equal(messageType(p.options), MessageType.Offer);
  assert.equal(p.xid, 0x11223344);
  assert.equal(p.yiaddr, '10.79.0.156');
  assert.equal(getIp(p.options, Opt.ServerId), '10.79.0.2');
  assert.equal(getString(p.options, Opt.BootFile), 'pxelinux.0');
  assert.equal(getString(p.options, Opt.TftpServer), 'boot');
  assert.equal(p.file, '', 'dnsmasq used the options, not the BOOTP field, because the client asked for 66/67');
});

test('a long option is split into 255-byte pieces and joined again on decode (RFC 3396)', () => {
  const p = emptyPacket(2);
  const long = Buffer.alloc(600, 7);
  p.options.set(Opt.MessageType, enc.u8(2));
  p.options.set(Opt.VendorSpecific, long);
  const buf = encode(p, { maxSize: 1500 });
  const i = buf.indexOf(Buffer.from([43, 255]), 240);
  assert.ok(i > 0, 'first piece is 255 bytes');
  assert.deepEqual(mustDecode(buf).options.get(Opt.VendorSpecific), long);
});

test('options that do not fit in 576 bytes overflow into file and sname with option 52', () => {
  const p = emptyPacket(2);
  p.options.set(Opt.MessageType, enc.u8(5));
  for (let c = 200; c < 210; c++) p.options.set(c, Buffer.alloc(40, c));
  const buf = encode(p);
  assert.ok(buf.length <= 548, `${buf.length} bytes fits the default limit`);
  assert.notEqual(buf.indexOf(Buffer.from([52, 1])), -1, 'overload option present');
  const back = mustDecode(buf);
  for (let c = 200; c < 210; c++) assert.deepEqual(back.options.get(c), Buffer.alloc(40, c), `option ${c} survives`);
  assert.equal(back.file, '');
  assert.equal(back.sname, '');
});

test('an overloaded file field from a peer is read as options (file before sname)', () => {
  const p = emptyPacket(1);
  p.options.set(Opt.MessageType, enc.u8(1));
  const buf = encode(p);
  // Hand-build: put option 12 "abc" in the file field and add overload=1 in the main area.
  Buffer.from([12, 3, 0x61, 0x62, 0x63, 255]).copy(buf, 108);
  const main = buf.indexOf(255, 240);
  Buffer.from([52, 1, 1, 255]).copy(buf, main);
  const back = mustDecode(buf);
  assert.equal(getString(back.options, Opt.Hostname), 'abc');
  assert.equal(back.file, '');
});

test('malformed packets come back as typed errors, never exceptions', () => {
  const good = fixture('udhcpc-discover-plain');
  const cases: Array<[Buffer, string]> = [
    [Buffer.alloc(0), 'short'],
    [good.subarray(0, 239), 'short'],
    [Buffer.concat([Buffer.from([3]), good.subarray(1)]), 'bad-op'],
    [(() => { const b = Buffer.from(good); b[2] = 17; return b; })(), 'bad-hlen'],
    [(() => { const b = Buffer.from(good); b.writeUInt32BE(0, 236); return b; })(), 'no-cookie'],
    [Buffer.concat([good.subarray(0, 240), Buffer.from([53, 5, 1])]), 'truncated-option'],
    [Buffer.concat([good.subarray(0, 240), Buffer.from([53, 1, 1, 52, 1, 9, 255])]), 'bad-overload'],
  ];
  for (const [buf, err] of cases) {
    const r = decode(buf);
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.error, err);
  }
});

test('a packet without END (options run to the end of the datagram) is accepted', () => {
  const b = Buffer.alloc(244);
  b[0] = 1; b[1] = 1; b[2] = 6;
  b.writeUInt32BE(MAGIC_COOKIE, 236);
  Buffer.from([53, 1, 1, 0]).copy(b, 240);
  const r = decode(b);
  assert.ok(r.ok);
  if (r.ok) assert.equal(messageType(r.packet.options), MessageType.Discover);
});

test('random and mutated datagrams never make decode throw (20 000 cases)', () => {
  const seeds = readdirSync(FIX).filter((f) => f.endsWith('.hex')).map((f) => fixture(f.replace(/\.hex$/, '')));
  let x = 0x12345678;
  const rnd = () => ((x = (x * 1103515245 + 12345) >>> 0) >>> 8) & 0xffff;
  for (let i = 0; i < 20000; i++) {
    let b: Buffer;
    if (i % 4 === 0) {
      b = Buffer.alloc(rnd() % 700);
      for (let j = 0; j < b.length; j++) b[j] = rnd() & 255;
      if (b.length > 240 && i % 8 === 0) b.writeUInt32BE(MAGIC_COOKIE, 236);
    } else {
      b = Buffer.from(seeds[i % seeds.length]!);
      for (let k = rnd() % 8; k >= 0; k--) b[240 + (rnd() % (b.length - 240))] = rnd() & 255;
      if (i % 5 === 0) b = b.subarray(0, 240 + (rnd() % (b.length - 240)));
    }
    const r = decode(b);
    if (r.ok) encode(r.packet); // whatever decodes must also encode
  }
});

test('sub-options of 43/175 round-trip and a truncated one is rejected', () => {
  const subs = new Map([[6, Buffer.from([8])], [71, Buffer.from([0x80, 0, 0, 0])]]);
  const b = encodeSubOptions(subs, true);
  assert.deepEqual(b, Buffer.from([6, 1, 8, 71, 4, 0x80, 0, 0, 0, 255]));
  assert.deepEqual(decodeSubOptions(b), subs);
  assert.equal(decodeSubOptions(Buffer.from([6, 5, 1])), undefined);
});

test('ipToInt accepts exactly dotted quads of 0-255', async () => {
  const { ipToInt, intToIp } = await import('../../src/dhcp/ip.js');
  assert.equal(ipToInt('10.79.0.1'), 0x0a4f0001);
  assert.equal(ipToInt('255.255.255.255'), 0xffffffff);
  assert.equal(intToIp(ipToInt('192.168.1.200')!), '192.168.1.200');
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1.2.3.', 'a.b.c.d', '1.2.3.4 ', '0001.2.3.4']) assert.equal(ipToInt(bad), undefined, bad);
});

test('a reply whose options fit is laid out option by option after the cookie, END last, zero-padded to 300 bytes', () => {
  const p = emptyPacket(2);
  p.xid = 0x01020304;
  p.yiaddr = '10.0.0.7';
  p.file = 'ipxe.efi';
  p.options.set(53, Buffer.from([2]));
  p.options.set(54, Buffer.from([10, 0, 0, 1]));
  p.options.set(12, Buffer.alloc(0));
  p.options.set(0, Buffer.from([9])); // PAD, END and overload in the map are never written as options
  p.options.set(255, Buffer.from([9]));
  const b = encode(p);
  assert.equal(b.length, 300);
  assert.equal(b.readUInt32BE(4), 0x01020304);
  assert.deepEqual([...b.subarray(16, 20)], [10, 0, 0, 7]);
  assert.equal(b.toString('latin1', 108, 116), 'ipxe.efi');
  assert.equal(b[116], 0);
  assert.equal(b.readUInt32BE(236), 0x63825363);
  assert.deepEqual([...b.subarray(240, 252)], [53, 1, 2, 54, 4, 10, 0, 0, 1, 12, 0, 255]);
  assert.ok(b.subarray(252).every((x) => x === 0));
  // An option longer than 255 bytes is split (RFC 3396) and still decodes whole.
  p.options.set(43, Buffer.alloc(300, 7));
  const long = decode(encode(p, { maxSize: 1500 }));
  assert.ok(long.ok);
  assert.equal(long.packet.options.get(43)!.length, 300);
  assert.equal(long.packet.file, 'ipxe.efi');
});
