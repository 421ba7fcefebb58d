import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decode, encode, MsgType, type Dhcp6Message } from '../../src/dhcp6/codec.js';
import { bigIntToIp6, ip6FromBuffer, ip6ToBigInt, ip6ToBuffer, macFromEui64, parsePrefix6 } from '../../src/dhcp6/ip6.js';
import { clientArchs, duidLl, enc6, formatOption6, iaAddrOption, iaNaOption, macFromDuid, Opt6, parseIaNa, requested, userClasses, vendorClasses } from '../../src/dhcp6/options.js';
import { clientKind6, bootDecision6 } from '../../src/dhcp6/handler.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** A Solicit as OVMF's PXE sends it (hand-assembled from RFC 8415 / RFC 5970 fields). */
function ovmfSolicit(): Buffer {
  const m: Dhcp6Message = {
    type: MsgType.Solicit,
    xid: 0xabcdef,
    options: [
      { code: Opt6.ClientId, data: hex('0004 00112233445566778899aabbccddeeff') },
      { code: Opt6.IaNa, data: hex('00000001 00000000 00000000') },
      { code: Opt6.ElapsedTime, data: hex('0000') },
      { code: Opt6.Oro, data: hex('003b 003c 0017 0018') },
      { code: Opt6.ClientArchType, data: hex('0007') },
      { code: Opt6.Nii, data: hex('010300') },
      { code: Opt6.VendorClass, data: Buffer.concat([hex('00000157'), enc6.opaqueList(['PXEClient:Arch:00007:UNDI:003016'])]) },
    ],
  };
  return encode(m);
}

test('IPv6 text <-> bytes <-> bigint, RFC 5952 output', () => {
  for (const [inp, out] of [
    ['fd00:77::1', 'fd00:77::1'],
    ['FD00:0077:0000:0000:0000:0000:0000:0001', 'fd00:77::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::ffff:10.0.0.1', '::ffff:a00:1'],
    ['fe80::5054:ff:fe12:3456%br0', 'fe80::5054:ff:fe12:3456'],
  ]) {
    assert.equal(ip6FromBuffer(ip6ToBuffer(inp!)!), out, inp);
  }
  for (const bad of ['', '1.2.3.4', 'fd00::1::2', 'g::1', '1:2:3:4:5:6:7:8:9']) assert.equal(ip6ToBuffer(bad), undefined, bad);
  assert.equal(bigIntToIp6(ip6ToBigInt('fd00:77::ffff')! + 1n), 'fd00:77::1:0');
  const p = parsePrefix6('fd00:77::1/64');
  assert.ok(typeof p !== 'string');
  assert.equal(p.text, 'fd00:77::/64');
  assert.equal(typeof parsePrefix6('fd00::/129'), 'string');
  assert.equal(macFromEui64(ip6ToBuffer('fe80::5054:ff:fe12:3456')!), '52:54:00:12:34:56');
  assert.equal(macFromEui64(ip6ToBuffer('fe80::1')!), undefined);
});

test('a firmware Solicit decodes, its fields read back, and it re-encodes to the same bytes', () => {
  const raw = ovmfSolicit();
  const r = decode(raw);
  assert.ok(r.ok, !r.ok ? r.detail : '');
  const m = r.packet as Dhcp6Message;
  assert.equal(m.type, MsgType.Solicit);
  assert.equal(m.xid, 0xabcdef);
  assert.deepEqual(requested(m.options), [59, 60, 23, 24]);
  assert.deepEqual(clientArchs(m.options), [7]);
  assert.deepEqual(vendorClasses(m.options), ['PXEClient:Arch:00007:UNDI:003016']);
  assert.deepEqual(clientKind6(m.options), { arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003016', ipxe: false });
  assert.equal(parseIaNa(m.options[1]!.data).iaid, 1);
  assert.deepEqual(encode(m), raw);
});

test('IA_NA with an IAADDR round-trips; DUIDs give the MAC they carry', () => {
  const ia = iaNaOption(7, 1800, 2880, [iaAddrOption('fd00:77::1000', 3600, 7200)]);
  const p = parseIaNa(ia.data);
  assert.deepEqual([p.iaid, p.t1, p.t2], [7, 1800, 2880]);
  assert.deepEqual(p.addresses.map((a) => [a.address, a.preferred, a.valid]), [['fd00:77::1000', 3600, 7200]]);
  assert.match(formatOption6(ia), /fd00:77::1000 preferred 3600s valid 7200s/);
  assert.equal(macFromDuid(duidLl('52:54:00:aa:bb:cc')), '52:54:00:aa:bb:cc');
  assert.equal(macFromDuid(hex('0001 0001 2f1e0d0c 02790000abcd')), '02:79:00:00:ab:cd', 'DUID-LLT');
  assert.equal(macFromDuid(hex('0004 00112233445566778899aabbccddeeff')), undefined, 'DUID-UUID carries none');
  assert.equal(macFromDuid(hex('0002 00000157 0102')), undefined, 'DUID-EN carries none');
  const m = decode(encode({ type: 1, xid: 1, options: [{ code: Opt6.UserClass, data: enc6.opaqueList(['iPXE']) }, { code: Opt6.ClientId, data: duidLl('52:54:00:00:00:01') }] }));
  assert.ok(m.ok);
  assert.deepEqual(userClasses(m.packet.options), ['iPXE']);
});

test('relay messages decode with their inner message checked too', () => {
  const inner = ovmfSolicit();
  const relay = encode({ type: 12, hopCount: 0, linkAddress: ip6ToBuffer('fd00:77::1')!, peerAddress: ip6ToBuffer('fe80::5054:ff:fe00:1')!, options: [{ code: Opt6.RelayMsg, data: inner }] });
  const r = decode(relay);
  assert.ok(r.ok);
  assert.deepEqual(encode(r.packet), relay);
  const broken = Buffer.from(relay);
  broken.writeUInt16BE(999, 34 + 4 + 4 + 2); // inner client-id length past the end
  const b = decode(broken);
  assert.ok(!b.ok);
  assert.equal(b.error, 'truncated-option');
});

test('malformed input gets a typed error naming what was wrong, never an exception', () => {
  const cases: Array<[Buffer, string, RegExp]> = [
    [hex('01'), 'short', /1 bytes/],
    [hex('00000001'), 'bad-type', /type 0/],
    [hex('0e000001'), 'bad-type', /type 14/],
    [hex('01000001 0001'), 'truncated-option', /stray/],
    [hex('01000001 0001 0010 0003'), 'truncated-option', /option 1 claims 16 bytes/],
    [hex('01000001 0008 0003 000000'), 'bad-option-length', /option 8 \(elapsed-time\) has 3 bytes/],
    [hex('01000001 0003 0004 00000001'), 'bad-option-length', /ia-na\) has 4 bytes/],
    [hex('01000001 0003 0010 00000001 00000000 00000000 0005 0004'), 'truncated-option', /ia-na: .*stray|ia-na/],
    [hex('01000001 000e 0001 00'), 'bad-option-length', /rapid-commit/],
    [hex('01000001 003d 0003 000700'), 'bad-option-length', /client-arch-type/],
  ];
  for (const [buf, error, re] of cases) {
    const r = decode(buf);
    assert.ok(!r.ok, buf.toString('hex'));
    assert.equal(r.error, error, buf.toString('hex'));
    assert.match(r.detail, re);
  }
  // Deep nesting is cut off, not recursed into without bound.
  let m = ovmfSolicit();
  for (let i = 0; i < 40; i++) m = encode({ type: 12, hopCount: 0, linkAddress: Buffer.alloc(16), peerAddress: Buffer.alloc(16), options: [{ code: 9, data: m }] });
  const deep = decode(m);
  assert.ok(!deep.ok);
  assert.equal(deep.error, 'too-deep');
});

test('random bytes: decode is total and every accepted datagram re-encodes to itself', () => {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed);
  const base = ovmfSolicit();
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    const buf = i % 2 ? Buffer.from(base) : Buffer.alloc(rnd() % 200);
    if (i % 2) for (let k = rnd() % 4; k >= 0; k--) buf[rnd() % buf.length] = rnd() & 0xff;
    else for (let k = 0; k < buf.length; k++) buf[k] = rnd() & 0xff;
    const r = decode(buf);
    if (r.ok) {
      accepted++;
      assert.deepEqual(encode(r.packet), buf);
    } else assert.ok(r.detail.length > 0);
  }
  assert.ok(accepted > 1000, `mutated packets are often still valid (${accepted})`);
});

test('boot URLs: TFTP loaders become tftp://[addr]/file, HTTP boot and iPXE get http://[addr]:port/...', () => {
  const ctx = { mac: '52:54:00:00:00:01', serverAddress: 'fd00:77::1', httpPort: 8080, bootFiles: { bios: 'undionly.kpxe', uefi_x64: 'ipxe.efi', uefi_arm64: '', uefi_http: 'ipxe.efi' } };
  assert.equal(bootDecision6({ arch: 7, vendorClass: 'PXEClient:Arch:00007:UNDI:003016', ipxe: false }, ctx).bootFile, 'tftp://[fd00:77::1]/ipxe.efi');
  assert.equal(bootDecision6({ arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003016', ipxe: false }, ctx).bootFile, 'http://[fd00:77::1]:8080/tftp/ipxe.efi');
  assert.equal(bootDecision6({ arch: 7, vendorClass: undefined, ipxe: true }, ctx).bootFile, 'http://[fd00:77::1]:8080/boot/52:54:00:00:00:01.ipxe');
  assert.equal(bootDecision6({ ipxe: false }, ctx).kind, 'none', 'a plain host gets an address only');
});
