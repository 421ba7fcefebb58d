/**
 * pxeherd_dhcp_messages_total{result="sent"} counts the offers, ACKs and NAKs that left, not the
 * decisions: on PostgreSQL a decided reply whose claim the database refused (backend.confirm) is
 * withheld, though its dhcp.offer event is recorded. A real UDP socket on loopback sends what
 * goes (the DISCOVERs carry ciaddr 127.0.0.1, so their offers are unicast to 127.0.0.1:68).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { configSchema } from '../../src/config/schema.js';
import { emptyPacket, encode } from '../../src/dhcp/codec.js';
import type { Reply } from '../../src/dhcp/handler.js';
import { MemoryDhcpBackend } from '../../src/dhcp/memory-backend.js';
import { enc, MessageType, Opt } from '../../src/dhcp/options.js';
import { DhcpServer } from '../../src/dhcp/server.js';
import { createMetrics } from '../../src/metrics/pxeherd.js';
import { macToBuffer } from '../../src/nodes/mac.js';
import { parseExposition, value } from './metrics-exposition.js';

const cfg = configSchema.parse({ dhcp: { mode: 'full', range: ['10.0.0.100', '10.0.0.200'] } }).dhcp;
const RINFO = { address: '127.0.0.1', port: 68, family: 'IPv4', size: 300 } as dgram.RemoteInfo;
const KEPT = '52:54:00:00:40:01';
const WITHHELD = '52:54:00:00:40:02';

function discover(mac: string): Buffer {
  const p = emptyPacket(1);
  macToBuffer(mac).copy(p.chaddr);
  p.ciaddr = '127.0.0.1';
  p.options.set(Opt.MessageType, enc.u8(MessageType.Discover));
  return encode(p);
}

test('an offer the shared database refused is not counted as sent; the one that left is', async () => {
  const backend = new MemoryDhcpBackend();
  const confirmed: string[] = [];
  // The PostgreSQL confirm's outcome for this slice: WITHHELD lost a race, its offer stays here.
  backend.confirm = async (replies: Reply[]) => {
    const mac = (r: Reply) => [...r.packet.chaddr.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    const ok = replies.filter((r) => mac(r) !== WITHHELD);
    confirmed.push(...ok.map(mac));
    return ok;
  };
  const server = new DhcpServer({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend });
  server.getHandler().load();
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const metrics = createMetrics({ nodes: { all: () => [] }, events: { subscribe: () => () => undefined } }, { subscribe: false, dhcpQueue: server });
  try {
    (server as unknown as { main: dgram.Socket }).main = sock;
    const s = server as unknown as { onMessage(b: Buffer, r: dgram.RemoteInfo, via: string): void };
    s.onMessage(discover(KEPT), RINFO, 'dhcp');
    s.onMessage(discover(WITHHELD), RINFO, 'dhcp');
    for (let i = 0; i < 200 && server.sent.offer === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(confirmed, [KEPT]);
    // Both offers were decided: both events are recorded (the timeline shows the decision).
    const offers = backend.events.list.filter((e) => e.kind === 'dhcp.offer');
    assert.deepEqual(offers.map((e) => e.mac).sort(), [KEPT, WITHHELD]);
    for (const ev of backend.events.list) metrics.observeEvent(ev);
    assert.deepEqual(server.sent, { offer: 1, ack: 0, nak: 0 }, 'one offer left');
    const m = parseExposition(await metrics.render());
    assert.equal(value(m, 'pxeherd_dhcp_messages_total', { type: 'offer', result: 'sent' }), 1, 'the withheld offer is not counted as sent');
    assert.equal(value(m, 'pxeherd_dhcp_messages_total', { type: 'discover', result: 'received' }), 2, 'received still from the events');
  } finally {
    metrics.close();
    sock.close();
  }
});

test('without a DHCP server to ask (events only), a dhcp.offer event counts as sent, as before', async () => {
  const metrics = createMetrics({ nodes: { all: () => [] }, events: { subscribe: () => () => undefined } }, { subscribe: false });
  metrics.observeEvent({ kind: 'dhcp.offer', mac: KEPT, detail: { ip: '10.0.0.100' } });
  const m = parseExposition(await metrics.render());
  assert.equal(value(m, 'pxeherd_dhcp_messages_total', { type: 'offer', result: 'sent' }), 1);
  metrics.close();
});
