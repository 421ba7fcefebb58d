/**
 * The DHCP server over the production backend (src/server/backends.ts on a real SQLite store),
 * driven without sockets: slices classify DISCOVERs, register new MACs, write events and leases
 * in one transaction. Checks what users see: one node per MAC, the event timeline in order with
 * node names, the lease on disk before the ACK leaves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type dgram from 'node:dgram';
import { configSchema } from '../../src/config/schema.js';
import { Store } from '../../src/store/store.js';
import { DhcpServer } from '../../src/dhcp/server.js';
import { dhcpBackend, eventSink } from '../../src/server/backends.js';
import { emptyPacket, encode } from '../../src/dhcp/codec.js';
import { enc, MessageType, Opt } from '../../src/dhcp/options.js';
import { macToBuffer } from '../../src/nodes/mac.js';
import type { Reply } from '../../src/dhcp/handler.js';

type Driven = { send(r: Reply): void; onMessage(b: Buffer, r: dgram.RemoteInfo, via: string): void };
const RINFO = { address: '0.0.0.0', port: 68, family: 'IPv4', size: 300 } as dgram.RemoteInfo;
const turn = () => new Promise((r) => setImmediate(r));

function packet(type: MessageType, mac: string, ip?: string): Buffer {
  const p = emptyPacket(1);
  macToBuffer(mac).copy(p.chaddr);
  p.xid = 7;
  p.options.set(Opt.MessageType, enc.u8(type));
  if (ip) {
    p.options.set(Opt.ServerId, enc.ip('10.0.0.1'));
    p.options.set(Opt.RequestedIp, enc.ip(ip));
  }
  return encode(p);
}

test('production backend: new and known MACs in one slice, one node each, timeline in order with names, lease stored before the ACK', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-store-'));
  const store = Store.open(dir);
  try {
    const cfg = configSchema.parse({ dhcp: { mode: 'full', range: ['10.0.0.100', '10.0.0.200'] }, nodes: { name_pattern: 'n###' } });
    store.nodes.register('52:54:00:00:40:99', { pattern: 'n###', firstNumber: 1, defaultGroup: '', defaultVnfs: '' }, { preferredName: 'old' });
    const server = new DhcpServer({ config: cfg.dhcp, serverAddress: '10.0.0.1', httpPort: 8080, backend: dhcpBackend(store, cfg, eventSink(store)) });
    server.getHandler().load();
    const s = server as unknown as Driven;
    const sent: { type: number; mac: string; ip: string; leaseOnDisk: boolean }[] = [];
    s.send = (r) => {
      const mac = [...r.packet.chaddr.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
      sent.push({ type: r.packet.options.get(Opt.MessageType)![0]!, mac, ip: r.packet.yiaddr, leaseOnDisk: store.leases.byMac(mac)?.state === 'bound' });
    };
    const macs = ['52:54:00:00:40:01', '52:54:00:00:40:02', '52:54:00:00:40:99'];
    // The same new MAC twice in one slice (a retransmission): still one node.
    for (const m of [...macs, macs[0]!]) s.onMessage(packet(MessageType.Discover, m), RINFO, 'dhcp');
    await turn();
    const offers = sent.splice(0);
    assert.equal(offers.length, 4);
    assert.ok(offers.every((o) => o.type === MessageType.Offer));
    for (const o of offers.slice(0, 3)) s.onMessage(packet(MessageType.Request, o.mac, o.ip), RINFO, 'dhcp');
    await turn();
    assert.equal(sent.length, 3);
    assert.ok(sent.every((a) => a.type === MessageType.Ack && a.leaseOnDisk), 'every ACK left after its lease was stored');
    assert.equal(store.nodes.count(), 3);
    const names = macs.map((m) => store.nodes.byMac(m)?.name);
    assert.deepEqual(names, ['n000', 'n001', 'old']);
    const ev = store.events.query({ mac: macs[0], order: 'asc' });
    assert.deepEqual(
      ev.map((e) => `${e.kind} ${e.node ?? '-'}`),
      ['dhcp.discover -', 'node.register n000', 'dhcp.offer n000', 'dhcp.discover n000', 'dhcp.offer n000', 'dhcp.request n000', 'dhcp.ack n000'],
    );
    const known = store.events.query({ mac: macs[2], order: 'asc' });
    assert.deepEqual(known.map((e) => `${e.kind} ${e.node ?? '-'}`), ['dhcp.discover old', 'dhcp.offer old', 'dhcp.request old', 'dhcp.ack old']);
    assert.equal(store.events.query({ kind: 'node.register' }).length, 2);
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('production backend: events name the node the MAC was at that moment, in the store and in the live feed alike', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-store-'));
  const store = Store.open(dir);
  try {
    const cfg = configSchema.parse({ dhcp: { mode: 'full', range: ['10.0.0.100', '10.0.0.200'] }, nodes: { name_pattern: 'n###' } });
    store.nodes.register('52:54:00:00:41:99', { pattern: 'n###', firstNumber: 1, defaultGroup: '', defaultVnfs: '' }, { preferredName: 'old' });
    const live: string[] = [];
    store.events.subscribe((e) => live.push(`${e.kind} ${e.mac} ${e.node ?? '-'}`));
    const server = new DhcpServer({ config: cfg.dhcp, serverAddress: '10.0.0.1', httpPort: 8080, backend: dhcpBackend(store, cfg, eventSink(store)) });
    server.getHandler().load();
    const s = server as unknown as Driven;
    s.send = () => {};
    const fresh = '52:54:00:00:41:01';
    // A REQUEST (for this server) of a MAC that is no node yet: it registers the MAC, and its
    // own event, which came before, names no node; a known node's REQUEST for another server:
    // no lookup of its own.
    s.onMessage(packet(MessageType.Request, fresh, '10.0.0.150'), RINFO, 'dhcp');
    const other = emptyPacket(1);
    macToBuffer('52:54:00:00:41:99').copy(other.chaddr);
    other.options.set(Opt.MessageType, enc.u8(MessageType.Request));
    other.options.set(Opt.ServerId, enc.ip('10.0.0.9'));
    other.options.set(Opt.RequestedIp, enc.ip('10.0.0.151'));
    s.onMessage(encode(other), RINFO, 'dhcp');
    await turn();
    // And a DISCOVER of the same MAC in a later slice: named.
    s.onMessage(packet(MessageType.Discover, fresh), RINFO, 'dhcp');
    await turn();
    const name = store.nodes.byMac(fresh)?.name;
    assert.equal(name, 'n000');
    const stored = store.events.query({ order: 'asc' }).map((e) => `${e.kind} ${e.mac} ${e.node ?? '-'}`);
    assert.deepEqual(stored.slice(0, 2), [`dhcp.request ${fresh} -`, `node.register ${fresh} n000`]);
    assert.ok(stored.includes('dhcp.request 52:54:00:00:41:99 old'), stored.join('\n'));
    assert.ok(stored.includes(`dhcp.discover ${fresh} n000`), stored.join('\n'));
    for (const e of stored.slice(2)) if (e.includes(fresh)) assert.ok(e.endsWith(' n000'), e);
    assert.deepEqual(live, stored, 'the live feed shows what is stored');
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
