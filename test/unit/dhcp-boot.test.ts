import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientKind, decideBoot, type BootContext } from '../../src/dhcp/boot.js';
import { enc, Opt } from '../../src/dhcp/options.js';

const ctx: BootContext = {
  mac: '52:54:00:12:34:56',
  serverAddress: '10.0.0.1',
  httpPort: 8080,
  bootFiles: { bios: 'undionly.kpxe', uefi_x64: 'ipxe.efi', uefi_arm64: '', uefi_http: 'ipxe.efi' },
};

const opts = (o: Record<number, Buffer>) => new Map(Object.entries(o).map(([k, v]) => [Number(k), v]));

test('iPXE by user class gets its boot script URL (loop-break) and the no-ProxyDHCP flag', () => {
  const k = clientKind(opts({ [Opt.UserClass]: enc.str('iPXE'), [Opt.VendorClass]: enc.str('PXEClient:Arch:00000:UNDI:002001') }));
  const d = decideBoot(k, ctx);
  assert.equal(d.kind, 'ipxe-script');
  assert.equal(d.bootFile, 'http://10.0.0.1:8080/boot/52:54:00:12:34:56.ipxe');
  assert.equal(d.ipxeNoProxyWait, true);
});

test('iPXE recognised by option 175 alone, and by an RFC 3004 length-prefixed user class', () => {
  assert.equal(clientKind(opts({ [Opt.Ipxe]: Buffer.from([177, 1, 1]) })).ipxe, true);
  assert.equal(clientKind(opts({ [Opt.UserClass]: Buffer.from([4, ...Buffer.from('iPXE')]) })).ipxe, true);
  assert.equal(clientKind(opts({ [Opt.UserClass]: enc.str('gPXE') })).ipxe, false);
});

test('BIOS PXE (arch 0) gets undionly.kpxe over TFTP', () => {
  const d = decideBoot(clientKind(opts({ [Opt.VendorClass]: enc.str('PXEClient:Arch:00000:UNDI:002001'), [Opt.ClientArch]: enc.u16(0) })), ctx);
  assert.deepEqual([d.kind, d.bootFile, d.bootUrl], ['bios', 'undionly.kpxe', undefined]);
});

test('UEFI x64 (arch 7 and 9) gets ipxe.efi; the arch is read from the vendor class when 93 is missing', () => {
  for (const a of [7, 9]) assert.equal(decideBoot({ arch: a, vendorClass: 'PXEClient', ipxe: false }, ctx).bootFile, 'ipxe.efi');
  const k = clientKind(opts({ [Opt.VendorClass]: enc.str('PXEClient:Arch:00007:UNDI:003016') }));
  assert.equal(k.arch, 7);
  assert.equal(decideBoot(k, ctx).kind, 'uefi-x64');
});

test("arm64 (arch 11) gets Debian's network GRUB unless an arm64 iPXE is configured", () => {
  const k = { arch: 11, vendorClass: 'PXEClient:Arch:00011', ipxe: false };
  assert.deepEqual([decideBoot(k, ctx).kind, decideBoot(k, ctx).bootFile], ['uefi-arm64', 'grubaa64.efi']);
  assert.match(decideBoot(k, ctx).reasons.join(' '), /uefi_arm64/);
  const d = decideBoot(k, { ...ctx, bootFiles: { ...ctx.bootFiles, uefi_arm64: 'ipxe-arm64.efi' } });
  assert.deepEqual([d.kind, d.bootFile], ['uefi-arm64', 'ipxe-arm64.efi']);
});

test('UEFI HTTP boot (arch 16 or vendor class HTTPClient) gets an HTTP URL under /tftp/ and HTTPClient back', () => {
  for (const k of [
    { arch: 16, vendorClass: 'PXEClient:Arch:00016', ipxe: false },
    { arch: 7, vendorClass: 'HTTPClient:Arch:00007:UNDI:003000', ipxe: false },
  ]) {
    const d = decideBoot(k, ctx);
    assert.equal(d.kind, 'uefi-http');
    assert.equal(d.bootUrl, 'http://10.0.0.1:8080/tftp/ipxe.efi');
    assert.equal(d.replyVendorClass, 'HTTPClient');
  }
});

test('a client with no PXE vendor class gets no boot file, whatever its arch option says', () => {
  assert.equal(decideBoot({ ipxe: false }, ctx).kind, 'none');
  assert.equal(decideBoot({ arch: 0, vendorClass: 'udhcp 1.35.0', ipxe: false }, ctx).bootFile, undefined);
});

test('an unknown architecture gets no boot file and a reason naming it', () => {
  const d = decideBoot({ arch: 25, vendorClass: 'PXEClient:Arch:00025', ipxe: false }, ctx);
  assert.equal(d.kind, 'none');
  assert.match(d.reasons[0]!, /arch 25/);
});
