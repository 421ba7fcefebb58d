import { test } from 'node:test';
import assert from 'node:assert/strict';
import { explain6, formatExplanation6 } from '../../src/dhcp6/explain.js';
import { MemoryLease6Store } from '../../src/dhcp6/memory-backend.js';
import { duidLl } from '../../src/dhcp6/options.js';
import { nodeRecord } from '../../src/nodes/types.js';

const ctx = (o: { mode?: 'full' | 'off'; autoRegister?: boolean } = {}) => {
  const leases = new MemoryLease6Store();
  return {
    leases,
    ctx: {
      config: { mode: o.mode ?? 'full', port: 547, address: '', prefix: 'fd00:77::/64', lease_seconds: 3600, dns: [], domain_search: [], rapid_commit: true, ra: true, slaac: true } as const,
      serverAddress: 'fd00:77::1',
      serverDuid: duidLl('02:00:00:00:00:01'),
      httpPort: 8080,
      bootFiles: { bios: 'undionly.kpxe', uefi_x64: 'ipxe.efi', uefi_arm64: '', uefi_http: 'ipxe.efi' },
      autoRegister: o.autoRegister ?? true,
      findNode: (m: string) => (m === '52:54:00:00:00:07' ? nodeRecord({ mac: m, name: 'known' }) : undefined),
      leases,
      now: 1000,
    },
  };
};

test('explain --v6 shows the Advertise a UEFI PXE, an HTTP boot and an iPXE client would get, decoded, and stores nothing', () => {
  const { ctx: c, leases } = ctx();
  const pxe = explain6(c, { mac: '52-54-00-00-00-07', arch: 7 });
  assert.equal(pxe.reply, 'ADVERTISE');
  assert.equal(pxe.node, 'known');
  assert.equal(pxe.address, 'fd00:77::1000');
  assert.equal(pxe.bootUrl, 'tftp://[fd00:77::1]/ipxe.efi');
  assert.ok(pxe.options.some((o) => o.name === 'iaaddr' || (o.name === 'ia-na' && /fd00:77::1000/.test(o.value))));
  assert.match(formatExplanation6(pxe), /59 bootfile-url\s+tftp:\/\/\[fd00:77::1\]\/ipxe\.efi/);
  assert.equal(explain6(c, { mac: '52:54:00:00:00:07', httpClient: true }).bootUrl, 'http://[fd00:77::1]:8080/tftp/ipxe.efi');
  assert.equal(explain6(c, { mac: '52:54:00:00:00:07', ipxe: true }).bootUrl, 'http://[fd00:77::1]:8080/boot/52:54:00:00:00:07.ipxe');
  assert.equal(leases.leases.size, 0, 'nothing stored');
});

test('explain --v6 says why there is no answer: mode off, unknown client with auto_register off', () => {
  assert.match(explain6(ctx({ mode: 'off' }).ctx, { mac: '52:54:00:00:00:01' }).reasons.join(), /dhcp6.mode is off/);
  const e = explain6(ctx({ autoRegister: false }).ctx, { mac: '52:54:00:00:00:01', arch: 7 });
  assert.equal(e.reply, undefined);
  assert.match(e.reasons.join(), /auto_register is off/);
});
