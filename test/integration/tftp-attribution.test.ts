/**
 * Which node a TFTP transfer's events name, through the server's real event sink over SQLite:
 * the sink is asked who the peer is once, at tftp.start, and the end event carries that
 * answer, so a lease that changes mid-transfer does not split a transfer between two nodes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ackPacket, decode, encode } from '../../src/tftp/codec.js';
import { TftpServer } from '../../src/tftp/server.js';
import { Store } from '../../src/store/store.js';
import { eventSink } from '../../src/server/backends.js';

const policy = { pattern: 'n####', firstNumber: 1, defaultGroup: 'cluster', defaultVnfs: '' };
const A = '52:54:00:21:00:0a';
const B = '52:54:00:21:00:0b';

function lease(store: Store, mac: string): void {
  store.db.prepare("DELETE FROM leases WHERE ip = '127.0.0.1'").run();
  store.leases.putMany([{ mac, ip: '127.0.0.1', expiresAt: Date.now() + 3600_000, hostname: '', state: 'bound', subnet: '', updatedAt: Date.now() }]);
}

/** One RRQ of a one-block file; `between` runs after DATA 1 arrived and before it is acknowledged. */
async function fetchOneBlock(port: number, between: () => void): Promise<void> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  try {
    const data = new Promise<{ port: number }>((resolve) =>
      sock.on('message', (msg, rinfo) => {
        const d = decode(msg);
        if (d.ok && d.packet.op === 'data') resolve({ port: rinfo.port });
      }),
    );
    sock.send(encode({ op: 'rrq', filename: 'one.bin', mode: 'octet', options: {}, optionOrder: [] }), port, '127.0.0.1');
    const from = await data;
    between();
    sock.send(ackPacket(1), from.port, '127.0.0.1');
  } finally {
    // Give the server's transfer a moment to see the ACK before the socket goes.
    await new Promise((r) => setTimeout(r, 50));
    sock.close();
  }
}

async function tftpEvents(store: Store, done: number): Promise<Array<{ kind: string; mac?: string; node?: string }>> {
  for (let i = 0; i < 200; i++) {
    const evs = store.events.query({ kind: 'tftp', order: 'asc' });
    if (evs.filter((e) => e.kind !== 'tftp.start').length >= done) return evs.map((e) => ({ kind: e.kind, mac: e.mac, node: e.node }));
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('the transfers did not end');
}

test('a TFTP transfer names the node its peer was at tftp.start in both events, though the lease moves mid-transfer; the next transfer names the new holder', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'phtftp-attr-'));
  const store = Store.open(dir);
  t.after(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(path.join(dir, 'one.bin'), Buffer.alloc(100, 7));
  const a = store.nodes.register(A, policy).node.name;
  const b = store.nodes.register(B, policy).node.name;
  lease(store, A);
  const server = new TftpServer({ root: dir, port: 0, address: '127.0.0.1', engine: 'js', events: eventSink(store) });
  const { port } = await server.start();
  try {
    await fetchOneBlock(port, () => lease(store, B));
    await fetchOneBlock(port, () => store.db.prepare("DELETE FROM leases WHERE ip = '127.0.0.1'").run());
    // No lease and no node at the address: no MAC on either event.
    await fetchOneBlock(port, () => lease(store, A));
    assert.deepEqual(await tftpEvents(store, 3), [
      { kind: 'tftp.start', mac: A, node: a },
      { kind: 'tftp.done', mac: A, node: a },
      { kind: 'tftp.start', mac: B, node: b },
      { kind: 'tftp.done', mac: B, node: b },
      { kind: 'tftp.start', mac: undefined, node: undefined },
      { kind: 'tftp.done', mac: undefined, node: undefined },
    ]);
  } finally {
    await server.stop();
  }
});
