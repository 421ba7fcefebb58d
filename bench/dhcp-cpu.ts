/**
 * CPU per DHCP exchange of the production path (what `pxeherd serve` runs: src/server/backends.ts
 * over SQLite, every unknown MAC registered, every event stored, leases durable before their
 * ACK), without the network: DISCOVERs and REQUESTs of new MACs are handed to DhcpServer as if
 * read from its socket, in rounds of --batch exchanges (each round's DISCOVERs queue with the
 * previous round's REQUESTs, as under load), and its replies are encoded but not sent.
 *
 *   node --import tsx bench/dhcp-cpu.ts [--exchanges 20000] [--batch 12] [--runs 3] [--prof]
 *
 * Prints process CPU µs (user + system, all threads: the WAL checkpoint worker included) per
 * DORA for each run. On a shared machine this is much steadier than perfdhcp's DORA/s, so it is
 * what to compare when changing the hot path; bench/dhcp.ts still says how it fares against Kea.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configSchema } from '../src/config/schema.js';
import { Store } from '../src/store/store.js';
import { DhcpServer } from '../src/dhcp/server.js';
import { dhcpBackend, eventSink } from '../src/server/backends.js';
import { emptyPacket, encode, decode } from '../src/dhcp/codec.js';
import { MessageType, Opt } from '../src/dhcp/options.js';
import type { Reply } from '../src/dhcp/handler.js';

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const EXCHANGES = Number(opt('exchanges', '20000'));
const BATCH = Number(opt('batch', '12'));
const RUNS = Number(opt('runs', '3'));
const SERVER = '10.79.0.1';
const RELAY = '10.79.0.2';

function mac(i: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(0x02000000 + i, 1);
  b[0] = 0x02;
  return b;
}

function datagram(type: MessageType, chaddr: Buffer, xid: number, ip?: string): Buffer {
  const p = emptyPacket(1);
  p.htype = 1;
  p.hlen = 6;
  p.xid = xid;
  p.giaddr = RELAY;
  p.chaddr = chaddr;
  p.options.set(Opt.MessageType, Buffer.from([type]));
  if (ip) {
    p.options.set(Opt.ServerId, Buffer.from(SERVER.split('.').map(Number)));
    p.options.set(Opt.RequestedIp, Buffer.from(ip.split('.').map(Number)));
  }
  p.options.set(Opt.ParamRequestList, Buffer.from([1, 3, 6, 15, 28]));
  return encode(p);
}

async function run(n: number): Promise<{ usPerDora: number; acks: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-cpu-'));
  const cfg = configSchema.parse({ dhcp: { mode: 'full', range: ['10.79.1.0', '10.79.255.254'], netmask: '255.255.0.0' }, nodes: { name_pattern: 'n######' } });
  const store = Store.open(dir);
  store.checkpointInBackground(() => {});
  const server = new DhcpServer({ config: cfg.dhcp, serverAddress: SERVER, httpPort: 8080, backend: dhcpBackend(store, cfg, eventSink(store)) });
  server.getHandler().load();
  const offers: Buffer[] = [];
  let acks = 0;
  // The server's socket side: encode each reply (as send() does), keep the OFFERs for the REQUESTs.
  const s = server as unknown as { send(r: Reply): void; onMessage(buf: Buffer, rinfo: { address: string; port: number }, via: 'dhcp'): void };
  s.send = (r: Reply) => {
    const buf = encode(r.packet, { maxSize: r.maxSize });
    if (r.packet.options.get(Opt.MessageType)?.[0] === MessageType.Offer) offers.push(buf);
    else acks++;
  };
  const from = { address: RELAY, port: 67 };
  const idle = () => new Promise<void>((resolve) => {
    const check = () => (server.queued() === 0 ? resolve() : setImmediate(check));
    setImmediate(check);
  });
  const t0 = process.cpuUsage();
  for (let i = 0; i < n; i += BATCH) {
    const answered = offers.splice(0);
    for (let j = i; j < Math.min(n, i + BATCH); j++) s.onMessage(datagram(MessageType.Discover, mac(j), j), from, 'dhcp');
    for (const o of answered) {
      const d = decode(o);
      if (d.ok) s.onMessage(datagram(MessageType.Request, d.packet.chaddr, d.packet.xid, d.packet.yiaddr), from, 'dhcp');
    }
    await idle();
  }
  for (const o of offers.splice(0)) {
    const d = decode(o);
    if (d.ok) s.onMessage(datagram(MessageType.Request, d.packet.chaddr, d.packet.xid, d.packet.yiaddr), from, 'dhcp');
  }
  await idle();
  const t = process.cpuUsage(t0);
  store.events.flush();
  store.close();
  rmSync(dir, { recursive: true, force: true });
  return { usPerDora: (t.user + t.system) / acks, acks };
}

for (let r = 1; r <= RUNS; r++) {
  const { usPerDora, acks } = await run(EXCHANGES);
  console.log(`run ${r}: ${acks} DORA, ${usPerDora.toFixed(0)} µs CPU per DORA (batch ${BATCH})`);
}
