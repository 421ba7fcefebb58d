/**
 * Listening sockets absorb a burst: a rack powering on sends its RRQs (and DISCOVERs) within
 * milliseconds, faster than one thread reads them. The listener's receive buffer must hold the
 * whole burst, past net.core.rmem_max when pxeherd may lift the cap (SO_RCVBUFFORCE through the
 * native addon); otherwise every dropped request costs its machine a 1 s retransmission.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs, { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decode, encode } from '../../src/tftp/codec.js';
import { TftpServer } from '../../src/tftp/server.js';
import { deepenRecvBuffer, loadSocketAddon } from '../../src/util/sockopts.js';

const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8').trim());
const root = process.getuid?.() === 0;
const canForce = root && typeof loadSocketAddon()?.forceRecvBuffer === 'function';

async function udp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return s;
}

test('a buffer within net.core.rmem_max is set with plain SO_RCVBUF', async () => {
  const s = await udp();
  try {
    const want = Math.min(rmemMax, 128 * 1024);
    const r = deepenRecvBuffer(s, want, 'test');
    assert.equal(r.via, 'rcvbuf');
    assert.ok(r.effective >= want, `effective ${r.effective} < ${want}`);
    assert.equal(r.warning, undefined);
  } finally {
    s.close();
  }
});

test('past net.core.rmem_max: forced when allowed, else a warning that names the sysctl', async () => {
  const s = await udp();
  try {
    const want = rmemMax * 2 + (1 << 20);
    const r = deepenRecvBuffer(s, want, 'TEST');
    if (canForce) {
      assert.equal(r.via, 'force');
      assert.ok(r.effective >= want, `effective ${r.effective} < ${want}`);
      assert.equal(r.warning, undefined);
    } else {
      assert.ok(r.effective < want);
      assert.match(r.warning ?? '', /^TEST: receive buffer is \d+ KiB, not \d+ KiB \(net\.core\.rmem_max caps it; .*\); .*sysctl -w net\.core\.rmem_max=\d+$/);
    }
  } finally {
    s.close();
  }
});

test('a buffer that cannot be had is a warning, never an exception', async () => {
  const s = await udp();
  try {
    // More than SO_RCVBUFFORCE accepts (1 GiB), so even root ends up with what the cap allows.
    const r = deepenRecvBuffer(s, (1 << 30) + 4096, 'TFTP');
    assert.equal(r.via, 'rcvbuf');
    assert.ok(r.effective > 0 && r.effective < r.requested);
    assert.match(r.warning ?? '', /^TFTP: receive buffer is \d+ KiB, not 1048580 KiB \(net\.core\.rmem_max caps it; .+\); requests from many machines booting at once will be dropped/);
  } finally {
    s.close();
  }
});

test('the forcing call reports bad arguments instead of crashing', { skip: canForce ? false : 'needs root and native/bindtodevice built (make -C native)' }, () => {
  const force = loadSocketAddon()!.forceRecvBuffer!;
  assert.throws(() => force(-1, 1024), /fd must be a non-negative integer/);
  assert.throws(() => force(0, 0), /bytes must be between 1 and 1 GiB/);
  assert.throws(() => force(987654, 1024), /SO_RCVBUFFORCE.*Bad file descriptor/);
});

describeBurst();

function describeBurst(): void {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'phsockbuf-'));
    writeFileSync(path.join(dir, 'loader.bin'), Buffer.alloc(100, 1));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  // 3000 requests queue up while the server's thread is busy (here: busy sending them). With the
  // stock 208 KiB buffer about 150 fit; the server must see every one of them.
  const BURST = 3000;
  const enough = canForce || rmemMax >= 4 << 20;
  test(`TFTP: ${BURST} requests sent while the server's thread is busy are all answered`, { skip: enough ? false : `needs root or net.core.rmem_max >= 4 MiB (is ${rmemMax})` }, async () => {
    const server = new TftpServer({ root: dir, port: 0, address: '127.0.0.1', engine: 'js', maxTransfers: BURST });
    const { port } = await server.start();
    const clients = await Promise.all(Array.from({ length: 30 }, udp));
    let answers = 0;
    try {
      let done!: () => void;
      const all = new Promise<void>((r) => (done = r));
      for (const c of clients) {
        c.setRecvBufferSize(Math.min(rmemMax, 1 << 20));
        c.on('message', (m) => {
          const d = decode(m);
          // A missing file is refused at once with an ERROR from the listener's own port.
          if (d.ok && d.packet.op === 'error' && d.packet.code === 1) answers++;
          if (answers === BURST) done();
        });
      }
      // The loop never yields, so all of them wait in the listener's buffer before it reads one.
      for (let i = 0; i < BURST; i++) {
        const c = clients[i % clients.length]!;
        c.send(encode({ op: 'rrq', filename: `missing-${i}.bin`, mode: 'octet', options: {}, optionOrder: [] }), port, '127.0.0.1');
      }
      await Promise.race([all, new Promise((r) => setTimeout(r, 10_000))]);
      assert.equal(server.stats().requests, BURST, `the server read ${server.stats().requests} of ${BURST} requests`);
      assert.equal(answers, BURST, 'every request answered with file not found');
    } finally {
      for (const c of clients) c.close();
      await server.stop();
    }
  });
}

test('the metrics see the drops: pxeherd_udp_receive_drops counts what the kernel dropped at a listening port', async () => {
  const { createMetrics, udpDropsByPort } = await import('../../src/metrics/pxeherd.js');
  const { parseExposition, value } = await import('../unit/metrics-exposition.js');
  const rx = await udp();
  rx.setRecvBufferSize(4096); // the kernel's minimum: a few datagrams
  const port = rx.address().port;
  const tx = await udp();
  await new Promise<void>((r) => tx.connect(port, '127.0.0.1', r));
  try {
    // A connected socket sends at once (no address lookup): all of these reach rx's buffer
    // before this thread lets rx read one.
    for (let i = 0; i < 400; i++) tx.send(Buffer.alloc(1000, i));
    const proc = fs.readFileSync('/proc/self/net/udp', 'utf8');
    const drops = udpDropsByPort(proc, [port]).get(port)!;
    assert.ok(drops > 300, `the kernel dropped ${drops} of 400`);
    const m = createMetrics({ nodes: { all: () => [] }, events: { subscribe: () => () => undefined } }, { udpPorts: [{ port, service: 'tftp' }, { port: 1, service: 'dhcp' }] });
    const s = parseExposition(await m.render());
    assert.ok(value(s, 'pxeherd_udp_receive_drops', { service: 'tftp', port: String(port) })! >= drops);
    assert.equal(value(s, 'pxeherd_udp_receive_drops', { service: 'dhcp', port: '1' }), 0);
    m.close();
  } finally {
    tx.close();
    rx.close();
  }
});
