import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { Dhcp6Server } from '../../src/dhcp6/server.js';
import { MemoryDhcp6Backend, MemoryLease6Store } from '../../src/dhcp6/memory-backend.js';
import { decode, encode, MsgType, type Dhcp6Message } from '../../src/dhcp6/codec.js';
import { duidLl, first, iaNaOption, Opt6 } from '../../src/dhcp6/options.js';
import type { Dhcp6Config } from '../../src/dhcp6/pool.js';

const CFG: Dhcp6Config = { mode: 'full', port: 0, address: '', prefix: 'fd00:77::/64', lease_seconds: 600, dns: [], domain_search: [], rapid_commit: true, ra: false, slaac: true };
const BOOT = { bios: 'undionly.kpxe', uefi_x64: 'ipxe.efi', uefi_arm64: '', uefi_http: 'ipxe.efi' };

function server(port: number, backend = new MemoryDhcp6Backend()) {
  return new Dhcp6Server({ config: { ...CFG, port }, serverDuid: duidLl('02:00:00:00:00:01'), serverAddress: 'fd00:77::1', httpPort: 8080, bootFiles: BOOT, backend, listenAddress: '::1' });
}

test('over a real socket: a Rapid Commit Solicit gets its Reply only after the lease batch is stored; garbage is counted, not thrown', async () => {
  const leases = new MemoryLease6Store();
  const backend = new MemoryDhcp6Backend({ leases });
  // A free port for the server: bind, read, close.
  const probe = dgram.createSocket('udp6');
  await new Promise<void>((r) => probe.bind({ port: 0, address: '::1' }, () => r()));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const s = server(port, backend);
  await s.start();
  const client = dgram.createSocket('udp6');
  await new Promise<void>((r) => client.bind({ port: 0, address: '::1' }, () => r()));
  try {
    const got = new Promise<Buffer>((resolve) => client.once('message', (m) => resolve(m)));
    client.send(Buffer.from('not dhcpv6 at all'), port, '::1');
    const solicit: Dhcp6Message = { type: MsgType.Solicit, xid: 0x42, options: [{ code: Opt6.ClientId, data: duidLl('52:54:00:00:00:01') }, iaNaOption(1, 0, 0, []), { code: Opt6.RapidCommit, data: Buffer.alloc(0) }] };
    client.send(encode(solicit), port, '::1');
    const r = decode(await got);
    assert.ok(r.ok);
    const reply = r.packet as Dhcp6Message;
    assert.equal(reply.type, MsgType.Reply);
    assert.equal(reply.xid, 0x42);
    assert.ok(first(reply.options, Opt6.RapidCommit));
    assert.equal(leases.batches, 1, 'stored in one batch before the reply left');
    assert.equal(leases.byKey(duidLl('52:54:00:00:00:01').toString('hex'), 1, '52:54:00:00:00:01')?.state, 'bound');
    assert.equal(s.counters.malformed, 1);
    assert.deepEqual(backend.boundCalls, [{ mac: '52:54:00:00:00:01', ip: 'fd00:77::1000' }]);
  } finally {
    client.close();
    s.stop();
  }
});

test('a port another DHCPv6 server holds is reported in one line, not shared', async () => {
  const other = dgram.createSocket({ type: 'udp6', reuseAddr: true });
  await new Promise<void>((r) => other.bind({ port: 0, address: '::1' }, () => r()));
  const port = (other.address() as { port: number }).port;
  try {
    await assert.rejects(server(port).start(), /DHCPv6: cannot listen on UDP \[::1\]:\d+: already in use \(another DHCPv6 server/);
  } finally {
    other.close();
  }
});
