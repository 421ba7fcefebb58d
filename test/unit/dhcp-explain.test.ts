import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../src/config/schema.js';
import { explain, formatExplanation } from '../../src/dhcp/explain.js';
import { MemoryDhcpBackend, MemoryLeaseStore } from '../../src/dhcp/memory-backend.js';

const T0 = 1_700_000_000_000;
const cfg = configSchema.parse({ dhcp: { mode: 'full', range: ['10.0.0.100', '10.0.0.110'], router: '10.0.0.1' } }).dhcp;
const ctx = { config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, autoRegister: true, now: T0 };

test('explain a known node with a reservation booting BIOS PXE: address, source, boot file, options, reasons', () => {
  const b = new MemoryDhcpBackend({ nodes: [{ mac: '52:54:00:00:00:01', name: 'n0001', ip: '10.0.0.7' }] });
  const e = explain(b, ctx, { mac: '52-54-00-00-00-01', arch: 0 });
  assert.equal(e.address, '10.0.0.7');
  assert.equal(e.addressSource, 'reservation');
  assert.equal(e.bootFile, 'undionly.kpxe');
  assert.equal(e.node, 'n0001');
  assert.ok(e.options.some((o) => o.code === 54 && o.name === 'server-id' && o.value === '10.0.0.1'));
  assert.ok(e.reasons.some((r) => /undionly\.kpxe/.test(r)));
  assert.match(formatExplanation(e), /address +10\.0\.0\.7 +\[reservation\]/);
});

test('explain changes nothing: no node registered, no lease stored', () => {
  const leases = new MemoryLeaseStore();
  const b = new MemoryDhcpBackend({ leases });
  const e = explain(b, ctx, { mac: '52:54:00:00:00:02', ipxe: true });
  assert.equal(e.addressSource, 'pool');
  assert.equal(e.bootUrl, 'http://10.0.0.1:8080/boot/52:54:00:00:00:02.ipxe');
  assert.equal(b.nodes.size, 0);
  assert.equal(leases.leases.size, 0);
  assert.equal(b.events.list.length, 0);
});

test('explain uses the existing lease of a client', () => {
  const leases = new MemoryLeaseStore();
  leases.putMany([{ mac: '52:54:00:00:00:03', ip: '10.0.0.105', expiresAt: T0 + 1e6, hostname: '', state: 'bound', subnet: '10.0.0.0/24', updatedAt: T0 }]);
  const e = explain(new MemoryDhcpBackend({ leases }), ctx, { mac: '52:54:00:00:00:03' });
  assert.deepEqual([e.address, e.addressSource, e.bootFile], ['10.0.0.105', 'lease', undefined]);
});

test('explain an unknown client with auto_register off: ignored, with the reason', () => {
  const e = explain(new MemoryDhcpBackend(), { ...ctx, autoRegister: false }, { mac: '52:54:00:00:00:04', arch: 7 });
  assert.equal(e.reply, undefined);
  assert.equal(e.addressSource, 'none');
  assert.ok(e.reasons.some((r) => /auto_register is off/.test(r)));
});

test('explain --proxy: no address, UEFI loader, PXEClient vendor options', () => {
  const e = explain(new MemoryDhcpBackend(), ctx, { mac: '52:54:00:00:00:05', arch: 7, proxy: true });
  assert.equal(e.mode, 'proxy');
  assert.equal(e.address, undefined);
  assert.equal(e.bootFile, 'ipxe.efi');
  assert.ok(e.options.some((o) => o.code === 60 && o.value === 'PXEClient'));
  assert.ok(e.options.some((o) => o.code === 43 && o.value.includes('43.6=08')));
});

test('explain a UEFI HTTP boot client', () => {
  const e = explain(new MemoryDhcpBackend(), ctx, { mac: '52:54:00:00:00:06', httpClient: true });
  assert.equal(e.bootUrl, 'http://10.0.0.1:8080/tftp/ipxe.efi');
  assert.ok(e.options.some((o) => o.code === 60 && o.value === 'HTTPClient'));
});
