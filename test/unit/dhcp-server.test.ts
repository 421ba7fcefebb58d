import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { configSchema } from '../../src/config/schema.js';
import { emptyPacket, encode } from '../../src/dhcp/codec.js';
import type { Reply } from '../../src/dhcp/handler.js';
import { MemoryDhcpBackend, MemoryLeaseStore } from '../../src/dhcp/memory-backend.js';
import { enc, MessageType, Opt } from '../../src/dhcp/options.js';
import { DhcpServer } from '../../src/dhcp/server.js';
import { macToBuffer } from '../../src/nodes/mac.js';
import type { Lease } from '../../src/nodes/types.js';

const cfg = configSchema.parse({ dhcp: { mode: 'full', range: ['10.0.0.100', '10.0.0.200'] } }).dhcp;

function request(i: number) {
  const p = emptyPacket(1);
  macToBuffer(`52:54:00:00:10:${String(i).padStart(2, '0')}`).copy(p.chaddr);
  p.options.set(Opt.MessageType, enc.u8(MessageType.Request));
  p.options.set(Opt.RequestedIp, enc.ip(`10.0.0.${100 + i}`));
  return encode(p);
}

test('ACKs decided in one event-loop turn are stored in one putMany, and none is sent before it returns', async () => {
  const log: string[] = [];
  class SpyStore extends MemoryLeaseStore {
    override putMany(leases: Lease[]) {
      log.push(`put ${leases.length}`);
      super.putMany(leases);
    }
  }
  const backend = new MemoryDhcpBackend({ leases: new SpyStore() });
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend });
  server.getHandler().load();
  // Drive the socket path without sockets: replace the sender, deliver datagrams as the socket would.
  const s = server as unknown as { send(r: Reply): void; onMessage(b: Buffer, r: dgram.RemoteInfo, via: string): void };
  s.send = (r) => log.push(`send ${r.packet.yiaddr}`);
  const rinfo = { address: '0.0.0.0', port: 68, family: 'IPv4', size: 300 } as dgram.RemoteInfo;
  for (let i = 0; i < 3; i++) s.onMessage(request(i), rinfo, 'dhcp');
  assert.deepEqual(log, [], 'nothing sent or stored synchronously');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(log, ['put 3', 'send 10.0.0.100', 'send 10.0.0.101', 'send 10.0.0.102']);
  assert.deepEqual(backend.boundCalls.map((b) => b.ip), ['10.0.0.100', '10.0.0.101', '10.0.0.102']);
});

test('when the lease store fails, the ACKs of that batch are not sent and the failure is counted', async () => {
  const sent: string[] = [];
  const leases = new MemoryLeaseStore();
  leases.putMany = () => {
    throw new Error('disk full');
  };
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend: new MemoryDhcpBackend({ leases }) });
  const s = server as unknown as { send(r: Reply): void; onMessage(b: Buffer, r: dgram.RemoteInfo, via: string): void };
  s.send = (r) => sent.push(r.packet.yiaddr);
  s.onMessage(request(1), { address: '0.0.0.0', port: 68, family: 'IPv4', size: 300 }, 'dhcp');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sent, []);
  assert.equal(server.counters.storeErrors, 1);
});

function discover(i: number) {
  const p = emptyPacket(1);
  macToBuffer(`52:54:00:00:20:${String(i).padStart(2, '0')}`).copy(p.chaddr);
  p.options.set(Opt.MessageType, enc.u8(MessageType.Discover));
  return encode(p);
}

type Driven = { send(r: Reply): void; onMessage(b: Buffer, r: dgram.RemoteInfo, via: string): void };
const RINFO = { address: '0.0.0.0', port: 68, family: 'IPv4', size: 300 } as dgram.RemoteInfo;
const turn = () => new Promise((r) => setImmediate(r));

test('requests that finish an exchange are answered before DISCOVERs that arrived earlier', async () => {
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend: new MemoryDhcpBackend() });
  server.getHandler().load();
  const s = server as unknown as Driven;
  const order: string[] = [];
  s.send = (r) => order.push(`${r.packet.options.get(Opt.MessageType)![0] === MessageType.Offer ? 'offer' : 'ack'} ${r.packet.yiaddr}`);
  for (let i = 0; i < 3; i++) s.onMessage(discover(i), RINFO, 'dhcp');
  s.onMessage(request(5), RINFO, 'dhcp');
  await turn();
  assert.equal(order[0], 'ack 10.0.0.105', 'the REQUEST goes first');
  assert.deepEqual(order.slice(1).map((o) => o.split(' ')[0]), ['offer', 'offer', 'offer']);
});

test("under congestion a known node's DISCOVER is answered before the new MACs' DISCOVERs that arrived earlier", async () => {
  let now = 0;
  const backend = new MemoryDhcpBackend();
  const knownMac = '52:54:00:00:30:01';
  (backend as { isKnown?: (mac: string) => boolean }).isKnown = (mac) => mac === knownMac;
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend, clock: () => now });
  server.getHandler().load();
  const s = server as unknown as Driven;
  const order: string[] = [];
  s.send = (r) => order.push(r.packet.chaddr.subarray(0, 6).toString('hex'));
  for (let i = 0; i < 40; i++) s.onMessage(discover(i), RINFO, 'dhcp');
  const known = emptyPacket(1);
  macToBuffer(knownMac).copy(known.chaddr);
  known.options.set(Opt.MessageType, enc.u8(MessageType.Discover));
  s.onMessage(encode(known), RINFO, 'dhcp');
  now = 200; // the oldest new DISCOVER has waited 200 ms: congested
  await turn();
  await turn(); // 41 datagrams read in one turn: the first turn reads on (libuv reads 32 a turn)
  assert.equal(order[0], '525400003001', 'the known node goes first');
});

test('datagrams that waited longer than queue_max_age_ms are shed unanswered and counted by type; fresh ones are answered', async () => {
  let now = 0;
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend: new MemoryDhcpBackend(), queueMaxAgeMs: 1000, clock: () => now });
  server.getHandler().load();
  const s = server as unknown as Driven;
  const sent: string[] = [];
  s.send = (r) => sent.push(r.packet.yiaddr);
  for (let i = 0; i < 4; i++) s.onMessage(discover(i), RINFO, 'dhcp'); // arrive at t=0
  s.onMessage(request(1), RINFO, 'dhcp');
  now = 1500; // the loop was busy for 1.5 s
  s.onMessage(discover(9), RINFO, 'dhcp'); // arrives now
  assert.equal(server.queued(), 6);
  await turn();
  assert.deepEqual(server.shed, { discover: 4, request: 1 });
  assert.equal(sent.length, 1, 'only the fresh DISCOVER is answered');
  assert.equal(server.queued(), 0);
});

test('a slice is one backend batch: registrations and leases of all its datagrams commit together before any reply; a failed batch sends nothing', async () => {
  const log: string[] = [];
  const backend = new MemoryDhcpBackend();
  backend.batch = (work) => {
    log.push('begin');
    work();
    log.push('commit');
  };
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend });
  server.getHandler().load();
  const s = server as unknown as Driven;
  s.send = (r) => log.push(`send ${r.packet.yiaddr}`);
  for (let i = 0; i < 3; i++) s.onMessage(request(i), RINFO, 'dhcp');
  s.onMessage(discover(1), RINFO, 'dhcp');
  await turn();
  assert.deepEqual(log.slice(0, 2), ['begin', 'commit']);
  assert.equal(log.length, 6, 'three ACKs and one OFFER after the one commit');
  assert.ok(log.slice(2).every((l) => l.startsWith('send ')));
  log.length = 0;
  backend.batch = () => {
    throw new Error('database is locked');
  };
  s.onMessage(request(7), RINFO, 'dhcp');
  await turn();
  assert.deepEqual(log, [], 'nothing of a failed batch is sent');
  assert.equal(server.counters.storeErrors, 1);
});

test('undecodable datagrams are counted as malformed and answered with nothing', () => {
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend: new MemoryDhcpBackend() });
  const out = server.receive(Buffer.from('not dhcp'), { via: 'dhcp', from: { address: '1.2.3.4', port: 68 } });
  assert.deepEqual(out.replies, []);
  assert.deepEqual([server.counters.received, server.counters.malformed], [1, 1]);
});

test('start() rejects with a one-line "already in use" error when the port is taken, and stop() is safe after', async () => {
  const holder = dgram.createSocket('udp4');
  await new Promise<void>((r) => holder.bind({ address: '127.0.0.1', port: 0 }, () => r()));
  const port = holder.address().port;
  const server = new DhcpServer({ config: { ...cfg, port }, serverAddress: '127.0.0.1', httpPort: 8080, backend: new MemoryDhcpBackend(), listenAddress: '127.0.0.1' });
  try {
    await assert.rejects(server.start(), (e: Error) => {
      assert.match(e.message, new RegExp(`^DHCP: cannot listen on UDP port ${port}: already in use`));
      assert.equal(e.message.includes('\n'), false);
      return true;
    });
    server.stop();
  } finally {
    holder.close();
  }
});

test('mode off starts nothing', async () => {
  const server = new DhcpServer({ config: { ...cfg, mode: 'off' }, serverAddress: '10.0.0.1', httpPort: 8080, backend: new MemoryDhcpBackend() });
  await server.start();
  server.stop();
});

test('a range outside its netmask makes start() reject with a one-line DHCP error naming the key', async () => {
  const bad = configSchema.parse({ dhcp: { mode: 'full', range: ['10.0.0.100', '10.0.1.200'] } }).dhcp;
  const server = new DhcpServer({ config: bad, serverAddress: '10.0.0.1', httpPort: 8080, backend: new MemoryDhcpBackend() });
  await assert.rejects(server.start(), /^Error: DHCP: dhcp\.range: 10\.0\.0\.100-10\.0\.1\.200 is not inside 10\.0\.0\.0\/24$/);
});

test('whether a DISCOVER is from a known node is asked inside the slice\'s batch (one store transaction), not as each datagram is read', async () => {
  const log: string[] = [];
  const backend = new MemoryDhcpBackend();
  let inBatch = false;
  (backend as { isKnown?: (mac: string) => boolean }).isKnown = (mac) => {
    log.push(`isKnown ${mac.slice(-2)} ${inBatch ? 'in batch' : 'OUTSIDE'}`);
    return false;
  };
  backend.batch = (work) => {
    inBatch = true;
    try {
      work();
    } finally {
      inBatch = false;
    }
  };
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend });
  server.getHandler().load();
  const s = server as unknown as Driven;
  const sent: string[] = [];
  s.send = (r) => sent.push(r.packet.yiaddr);
  for (let i = 0; i < 3; i++) s.onMessage(discover(i), RINFO, 'dhcp');
  assert.deepEqual(log, [], 'nothing asked while reading');
  assert.equal(server.queued(), 3);
  await turn();
  assert.deepEqual(log, ['isKnown 00 in batch', 'isKnown 01 in batch', 'isKnown 02 in batch']);
  assert.equal(sent.length, 3);
});
