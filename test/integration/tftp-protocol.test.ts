/**
 * The TFTP server on a real UDP socket (127.0.0.1, ephemeral port), driven by pxeherd's
 * own client with fault injection and by raw datagrams where exact packet counts matter.
 * Every test runs twice: with the native DATA pump (native/tftpdata) and in JavaScript.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { BootEvent } from '../../src/nodes/types.js';
import { ackPacket, decode, encode, type Packet } from '../../src/tftp/codec.js';
import { tftpGet, TftpClientError } from '../../src/tftp/client.js';
import { TftpServer, type TftpServerOptions } from '../../src/tftp/server.js';
import { loadNativeEngine } from '../../src/tftp/native.js';

/** The engine of the test running now (top-level tests in a file run one at a time). */
let engine: 'native' | 'js' = 'js';
const nativeBuilt = loadNativeEngine() !== undefined;
/** Register `name` once per engine; the native run skips, saying why, when the addon is not built. */
function both(name: string, fn: () => Promise<void>): void {
  test(`[native] ${name}`, { skip: nativeBuilt ? false : 'native/tftpdata not built (make -C native)' }, async () => {
    engine = 'native';
    await fn();
  });
  test(`[js] ${name}`, async () => {
    engine = 'js';
    await fn();
  });
}

let root: string;
const files: Record<string, Buffer> = {};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

before(() => {
  root = mkdtempSync(path.join(tmpdir(), 'phtftp-proto-'));
  files['small.bin'] = randomBytes(300 * 1024 + 17);
  files['exact.bin'] = randomBytes(512 * 40);
  files['rollover.bin'] = randomBytes(8 * 70_000 + 5); // > 65535 blocks at blksize 8
  files['text.cfg'] = Buffer.from('line one\nline two\r\nend\n');
  for (const [n, b] of Object.entries(files)) writeFileSync(path.join(root, n), b);
});
after(() => rmSync(root, { recursive: true, force: true }));

async function withServer(
  opts: Partial<TftpServerOptions>,
  fn: (port: number, server: TftpServer, events: BootEvent[]) => Promise<void>,
): Promise<void> {
  const events: BootEvent[] = [];
  const server = new TftpServer({ root, port: 0, address: '127.0.0.1', engine, events: { record: (e) => events.push(e) }, ...opts });
  const { port } = await server.start();
  try {
    await fn(port, server, events);
  } finally {
    await server.stop();
  }
}

/** Deterministic PRNG so a lossy run is reproducible. */
function lossy(seed: number, rate: number): () => boolean {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff < rate;
  };
}

/** A raw UDP peer that records every datagram it receives. */
async function rawPeer() {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const got: Array<{ p: Packet; port: number }> = [];
  sock.on('message', (m, r) => {
    const d = decode(m);
    if (d.ok) got.push({ p: d.packet, port: r.port });
  });
  return {
    got,
    port: sock.address().port,
    send: (b: Buffer, port: number) => sock.send(b, port, '127.0.0.1'),
    close: () => sock.close(),
  };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

both('negotiated options come back in the OACK and the file arrives intact', async () => {
  await withServer({}, async (port, _s, events) => {
    const r = await tftpGet({ host: '127.0.0.1', port, file: 'small.bin', options: { tsize: '0', blksize: '1468', windowsize: '16', timeout: '2' } });
    assert.deepEqual(r.oack, { tsize: String(files['small.bin']!.length), blksize: '1468', windowsize: '16', timeout: '2' });
    assert.equal(sha(r.data), sha(files['small.bin']!));
    assert.notEqual(r.serverPort, port, 'the transfer runs on its own ephemeral port');
    await until(() => events.some((e) => e.kind === 'tftp.done'));
    const done = events.find((e) => e.kind === 'tftp.done');
    assert.ok(done, 'tftp.done event');
    assert.equal(done.detail?.file, 'small.bin');
    assert.equal(done.detail?.bytes, files['small.bin']!.length);
    assert.equal(done.detail?.peer, '127.0.0.1');
    assert.equal(done.detail?.blksize, 1468);
    assert.equal(done.detail?.windowsize, 16);
    assert.equal(typeof done.detail?.durationMs, 'number');
    assert.equal(done.detail?.engine, engine, 'the data path this run is about served it');
    assert.deepEqual(events.map((e) => e.kind), ['tftp.start', 'tftp.done']);
  });
});

both('each transfer gets a new ephemeral port', async () => {
  await withServer({}, async (port) => {
    const a = await tftpGet({ host: '127.0.0.1', port, file: 'text.cfg' });
    const b = await tftpGet({ host: '127.0.0.1', port, file: 'text.cfg' });
    assert.notEqual(a.serverPort, port);
    assert.notEqual(b.serverPort, port);
    assert.notEqual(a.serverPort, b.serverPort);
  });
});

both('a lossy client (3% DATA and ACK dropped) still gets the right bytes, lock-step and windowed', async () => {
  await withServer({ timeoutMs: 60, retries: 20 }, async (port, server) => {
    for (const ws of ['1', '8']) {
      const r = await tftpGet({
        host: '127.0.0.1',
        port,
        file: 'small.bin',
        options: { blksize: '1024', windowsize: ws },
        dropData: lossy(7 + Number(ws), 0.03),
        dropAck: lossy(99 + Number(ws), 0.03),
        timeoutMs: 100,
        retries: 30,
        deadlineMs: 30_000,
      });
      assert.equal(sha(r.data), sha(files['small.bin']!), `windowsize ${ws}`);
    }
    assert.ok(server.stats().retransmits > 0, 'losses were recovered by retransmission');
  });
});

both('a client that ends negotiation with error 8 and asks again gets the file (UEFI tsize probe)', async () => {
  await withServer({}, async (port, _s, events) => {
    const probe = await tftpGet({ host: '127.0.0.1', port, file: 'small.bin', options: { tsize: '0' }, refuseOack: true });
    assert.equal(probe.oack?.tsize, String(files['small.bin']!.length));
    const r = await tftpGet({ host: '127.0.0.1', port, file: 'small.bin', options: { tsize: '0', blksize: '1468' } });
    assert.equal(sha(r.data), sha(files['small.bin']!));
    await until(() => events.some((e) => e.kind === 'tftp.error'));
    const err = events.find((e) => e.kind === 'tftp.error')!;
    assert.equal(err.detail?.code, 8);
    assert.equal(err.detail?.probe, true, 'marked as a probe, not a failure');
  });
});

both('block numbers roll over past 65535 (70001 blocks at blksize 8)', async () => {
  await withServer({}, async (port) => {
    const r = await tftpGet({ host: '127.0.0.1', port, file: 'rollover.bin', options: { blksize: '8', windowsize: '16' }, deadlineMs: 50_000 });
    assert.equal(r.data.length, files['rollover.bin']!.length);
    assert.equal(sha(r.data), sha(files['rollover.bin']!));
  });
});

both('a file that is an exact multiple of blksize ends with an empty DATA', async () => {
  await withServer({}, async (port) => {
    const r = await tftpGet({ host: '127.0.0.1', port, file: 'exact.bin' });
    assert.equal(sha(r.data), sha(files['exact.bin']!));
  });
});

both('duplicate ACKs never cause a duplicate burst', async () => {
  await withServer({ timeoutMs: 5000 }, async (port) => {
    // Lock-step: DATA 1, then ACK 1 three times -> exactly one DATA 2.
    const a = await rawPeer();
    try {
      a.send(encode({ op: 'rrq', filename: 'small.bin', mode: 'octet', options: {}, optionOrder: [] }), port);
      await until(() => a.got.length === 1);
      const tid = a.got[0]!.port;
      for (let i = 0; i < 3; i++) a.send(ackPacket(1), tid);
      await sleep(300);
      assert.deepEqual(a.got.map((g) => (g.p.op === 'data' ? g.p.block : g.p.op)), [1, 2]);
    } finally {
      a.close();
    }
    // Windowed: after ACK 4 (x3) exactly one window 5..8.
    const b = await rawPeer();
    try {
      b.send(encode({ op: 'rrq', filename: 'small.bin', mode: 'octet', options: { windowsize: '4' }, optionOrder: ['windowsize'] }), port);
      await until(() => b.got.length === 1);
      const tid = b.got[0]!.port;
      assert.equal(b.got[0]!.p.op, 'oack');
      b.send(ackPacket(0), tid);
      await until(() => b.got.length === 5);
      for (let i = 0; i < 3; i++) b.send(ackPacket(4), tid);
      await sleep(300);
      assert.deepEqual(b.got.map((g) => (g.p.op === 'data' ? g.p.block : g.p.op)), ['oack', 1, 2, 3, 4, 5, 6, 7, 8]);
    } finally {
      b.close();
    }
  });
});

both('beyond the transfer cap a request gets a clear error; idle transfers are reaped', async () => {
  await withServer({ maxTransfers: 2, timeoutMs: 100, retries: 2 }, async (port, server) => {
    const stalled = [await rawPeer(), await rawPeer()];
    const third = await rawPeer();
    try {
      for (const s of stalled) s.send(encode({ op: 'rrq', filename: 'small.bin', mode: 'octet', options: {}, optionOrder: [] }), port);
      await until(() => stalled.every((s) => s.got.length > 0));
      assert.equal(server.stats().active, 2);
      third.send(encode({ op: 'rrq', filename: 'small.bin', mode: 'octet', options: {}, optionOrder: [] }), port);
      await until(() => third.got.length > 0);
      const e = third.got[0]!.p;
      assert.ok(e.op === 'error');
      assert.equal(e.code, 0);
      assert.match(e.message, /server busy: 2 transfers in progress/);
      // The two silent clients are given up on after timeout x retries.
      await until(() => server.stats().active === 0, 10_000);
      assert.ok(stalled.every((s) => s.got.some((g) => g.p.op === 'error' && /timed out/.test(g.p.message))));
      const r = await tftpGet({ host: '127.0.0.1', port, file: 'text.cfg' });
      assert.deepEqual(r.data, files['text.cfg']);
    } finally {
      for (const s of [...stalled, third]) s.close();
    }
  });
});

both('write requests are refused with access violation (error 2)', async () => {
  await withServer({}, async (port, _s, events) => {
    const p = await rawPeer();
    try {
      p.send(encode({ op: 'wrq', filename: 'upload.bin', mode: 'octet', options: {}, optionOrder: [] }), port);
      await until(() => p.got.length > 0);
      const e = p.got[0]!.p;
      assert.ok(e.op === 'error');
      assert.equal(e.code, 2);
      assert.match(e.message, /read-only/);
      assert.equal(events[0]?.kind, 'tftp.error');
    } finally {
      p.close();
    }
  });
});

both('error codes: missing file 1, traversal 2, mail mode 4', async () => {
  await withServer({}, async (port) => {
    const code = async (file: string, mode?: 'netascii'): Promise<number> => {
      try {
        await tftpGet({ host: '127.0.0.1', port, file, mode });
        return -1;
      } catch (e) {
        assert.ok(e instanceof TftpClientError, String(e));
        return e.code;
      }
    };
    assert.equal(await code('nope.bin'), 1);
    assert.equal(await code('../../etc/passwd'), 2);
    assert.equal(await code('..\\..\\etc\\passwd'), 2);
    const p = await rawPeer();
    try {
      p.send(Buffer.from('\x00\x01text.cfg\x00mail\x00', 'latin1'), port);
      await until(() => p.got.length > 0);
      assert.ok(p.got[0]!.p.op === 'error' && p.got[0]!.p.code === 4);
    } finally {
      p.close();
    }
  });
});

both('malformed packets are dropped and counted; the server keeps serving', async () => {
  await withServer({}, async (port, server) => {
    const p = await rawPeer();
    try {
      const junk = [Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 9, 1]), Buffer.from([0, 4, 0, 1]), Buffer.from([0, 3, 0, 1, 5]), Buffer.from('\x00\x01noterminator', 'latin1'), randomBytes(600)];
      for (const j of junk) p.send(j, port);
      await until(() => server.stats().badPackets >= junk.length);
      // Only the malformed *request* is answered (error 4); stray packets get no reply.
      await sleep(100);
      assert.ok(p.got.every((g) => g.p.op === 'error' && g.p.code === 4));
      const r = await tftpGet({ host: '127.0.0.1', port, file: 'text.cfg' });
      assert.deepEqual(r.data, files['text.cfg']);
    } finally {
      p.close();
    }
  });
});

both('netascii transfers convert line ends and tsize reports the converted size', async () => {
  await withServer({}, async (port) => {
    const r = await tftpGet({ host: '127.0.0.1', port, file: 'text.cfg', mode: 'netascii', options: { tsize: '0' } });
    const want = Buffer.from('line one\r\nline two\r\x00\r\nend\r\n', 'latin1');
    assert.deepEqual(r.data, want);
    assert.equal(r.oack?.tsize, String(want.length));
  });
});

both('generated pxelinux/grub files are served with their real tsize; declined names fall back to the root', async () => {
  const calls: string[] = [];
  const generate: TftpServerOptions['generate'] = async (req, peer) => {
    calls.push(`${req.kind}:${req.mac ?? '-'}:${req.path}:${peer.address}`);
    if (req.mac === '52:54:00:00:00:01') return Buffer.from(`DEFAULT node1 # ${req.kind}\n`);
    return undefined;
  };
  writeFileSync(path.join(root, 'grub.cfg'), 'static grub\n');
  await withServer({ generate }, async (port) => {
    const r = await tftpGet({ host: '127.0.0.1', port, file: '/pxelinux.cfg/01-52-54-00-00-00-01', options: { tsize: '0' } });
    assert.equal(r.data.toString(), 'DEFAULT node1 # pxelinux\n');
    assert.equal(r.oack?.tsize, String(r.data.length));
    const g = await tftpGet({ host: '127.0.0.1', port, file: 'grub/grub.cfg-01-52-54-00-00-00-01' });
    assert.equal(g.data.toString(), 'DEFAULT node1 # grub\n');
    await assert.rejects(tftpGet({ host: '127.0.0.1', port, file: 'pxelinux.cfg/01-52-54-00-00-00-02' }), (e: unknown) => e instanceof TftpClientError && e.code === 1);
    const s = await tftpGet({ host: '127.0.0.1', port, file: 'grub.cfg' });
    assert.equal(s.data.toString(), 'static grub\n');
    assert.deepEqual(calls, [
      'pxelinux:52:54:00:00:00:01:pxelinux.cfg/01-52-54-00-00-00-01:127.0.0.1',
      'grub:52:54:00:00:00:01:grub/grub.cfg-01-52-54-00-00-00-01:127.0.0.1',
      'pxelinux:52:54:00:00:00:02:pxelinux.cfg/01-52-54-00-00-00-02:127.0.0.1',
      'grub:-:grub.cfg:127.0.0.1',
    ]);
  });
});

both('a generator that throws yields an error packet, not a crash', async () => {
  await withServer({ generate: async () => { throw new Error('template broken'); } }, async (port) => {
    await assert.rejects(tftpGet({ host: '127.0.0.1', port, file: 'pxelinux.cfg/default' }), (e: unknown) => e instanceof TftpClientError && /template broken/.test(e.message));
    const r = await tftpGet({ host: '127.0.0.1', port, file: 'text.cfg' });
    assert.deepEqual(r.data, files['text.cfg']);
  });
});

both('a copy of the RRQ that arrives after the client acknowledged the OACK does not restart the transfer', async () => {
  await withServer({ timeoutMs: 5000 }, async (port, server) => {
    const p = await rawPeer();
    try {
      const rrq = encode({ op: 'rrq', filename: 'small.bin', mode: 'octet', options: { blksize: '1024' }, optionOrder: ['blksize'] });
      p.send(rrq, port);
      await until(() => p.got.some((g) => g.p.op === 'oack'));
      const tid = p.got.find((g) => g.p.op === 'oack')!.port;
      p.send(ackPacket(0), tid);
      await until(() => p.got.some((g) => g.p.op === 'data'));
      // The retransmission the client sent before the OACK reached it, arriving late.
      p.send(rrq, port);
      await sleep(300);
      assert.equal(p.got.filter((g) => g.p.op === 'oack').length, 1, 'no second transfer');
      assert.ok(p.got.every((g) => g.port === tid), 'everything from the first transfer');
      assert.equal(server.stats().duplicateRequests, 1);
      assert.equal(server.stats().started, 1);
    } finally {
      p.close();
    }
  });
});

both('a repeated RRQ from the same port does not start a second transfer', async () => {
  await withServer({ timeoutMs: 5000 }, async (port, server) => {
    const p = await rawPeer();
    try {
      const rrq = encode({ op: 'rrq', filename: 'small.bin', mode: 'octet', options: { tsize: '0' }, optionOrder: ['tsize'] });
      p.send(rrq, port);
      p.send(rrq, port);
      await sleep(300);
      assert.equal(p.got.filter((g) => g.p.op === 'oack').length, 1);
      assert.equal(server.stats().duplicateRequests, 1);
      assert.equal(server.stats().started, 1);
    } finally {
      p.close();
    }
  });
});

both('files above the in-memory limit are streamed from disk in chunks, also windowed', async () => {
  await withServer({ cache: { maxFileBytes: 64 * 1024, chunkBytes: 100 * 1024 } }, async (port) => {
    for (const ws of ['1', '16']) {
      const r = await tftpGet({ host: '127.0.0.1', port, file: 'small.bin', options: { blksize: '1468', windowsize: ws, tsize: '0' } });
      assert.equal(r.oack?.tsize, String(files['small.bin']!.length));
      assert.equal(sha(r.data), sha(files['small.bin']!), `windowsize ${ws}`);
    }
  });
});

both('a port already in use is reported in one clear error', async () => {
  await withServer({}, async (port) => {
    const other = new TftpServer({ root, port, address: '127.0.0.1', engine });
    await assert.rejects(other.start(), /TFTP: cannot listen on 127\.0\.0\.1:\d+\/udp: EADDRINUSE \(another TFTP server/);
  });
});

both('transfers spread over worker threads complete intact, also with loss', async () => {
  await withServer({ threads: 3, timeoutMs: 60, retries: 20 }, async (port, server) => {
    const runs = Array.from({ length: 6 }, (_, i) =>
      tftpGet({
        host: '127.0.0.1',
        port,
        file: 'small.bin',
        options: { blksize: i % 2 ? '1468' : '512', windowsize: i % 3 ? '4' : '1', tsize: '0' },
        dropData: lossy(1000 + i, 0.02),
        dropAck: lossy(2000 + i, 0.02),
        timeoutMs: 100,
        retries: 30,
        deadlineMs: 30_000,
      }),
    );
    for (const r of await Promise.all(runs)) assert.equal(sha(r.data), sha(files['small.bin']!));
    await until(() => server.stats().completed === 6);
    assert.equal(server.stats().active, 0);
  });
});

both('stopping the server aborts running transfers on every thread with an error to the client', async () => {
  const events: BootEvent[] = [];
  const server = new TftpServer({ root, port: 0, address: '127.0.0.1', engine, threads: 2, timeoutMs: 5000, events: { record: (e) => events.push(e) } });
  const { port } = await server.start();
  const peers = [await rawPeer(), await rawPeer()];
  try {
    for (const p of peers) p.send(encode({ op: 'rrq', filename: 'small.bin', mode: 'octet', options: {}, optionOrder: [] }), port);
    await until(() => peers.every((p) => p.got.length > 0));
    await server.stop();
    await until(() => peers.every((p) => p.got.some((g) => g.p.op === 'error' && /shutting down/.test(g.p.message))));
    assert.equal(events.filter((e) => e.kind === 'tftp.error').length, 2);
  } finally {
    for (const p of peers) p.close();
  }
});

both('with tftp.streams 1, a client that never answers holds its stream only streamHoldMs, the next request in line is served, and the silent transfer still ends on its own clock', async () => {
  await withServer({ streams: 1, streamHoldMs: 100, timeoutMs: 300, retries: 2 }, async (port, server, events) => {
    const silent = await rawPeer();
    try {
      // An RRQ whose client has gone away (it never acknowledges the OACK).
      silent.send(encode({ op: 'rrq', filename: 'small.bin', mode: 'octet', options: { blksize: '1024' }, optionOrder: ['blksize'] }), port);
      await until(() => silent.got.some((g) => g.p.op === 'oack'));
      const r = await tftpGet({ host: '127.0.0.1', port, file: 'small.bin', timeoutMs: 2000, deadlineMs: 30_000 });
      assert.equal(sha(r.data), sha(files['small.bin']!));
      assert.ok(server.stats().streamHoldsExpired >= 1, 'the silent transfer gave its stream up');
      // Its own retransmissions, then the timeout: it was never simply dropped.
      await until(() => events.some((e) => e.kind === 'tftp.error' && /timed out/.test(String(e.detail?.error))), 10_000);
      assert.ok(silent.got.filter((g) => g.p.op === 'oack').length >= 2, 'the OACK was retransmitted');
      assert.equal(server.stats().waiting, 0);
    } finally {
      silent.close();
    }
  });
});

both('with tftp.streams 2, requests beyond the streams wait (stats().waiting) and are all served in arrival order', async () => {
  // Holds long enough here: the unanswered first DATA must keep its stream while we look.
  await withServer({ streams: 2, streamHoldMs: 60_000 }, async (port, server, events) => {
    const peers = await Promise.all([0, 1, 2, 3, 4].map(() => rawPeer()));
    try {
      // Five RRQs, one after the other, none acknowledged yet: two start, three wait.
      const rrq = encode({ op: 'rrq', filename: 'exact.bin', mode: 'octet', options: {}, optionOrder: [] });
      for (const p of peers) {
        p.send(rrq, port);
        await sleep(20);
      }
      await until(() => server.stats().requests === 5);
      // Native engine: the line is on its pump thread, whose starts reach this thread on a later turn.
      await until(() => server.stats().waiting === 3);
      assert.equal(server.stats().waiting, 3);
      // Acknowledge every DATA as it comes: the waiting ones start as the first ones end.
      const acked = peers.map(() => 0);
      await until(() => {
        peers.forEach((p, i) => {
          for (const g of p.got) {
            if (g.p.op === 'data' && g.p.block > acked[i]!) {
              acked[i] = g.p.block;
              p.send(ackPacket(g.p.block), g.port);
            }
          }
        });
        return events.filter((e) => e.kind === 'tftp.done').length === 5;
      }, 20_000);
      const starts = events.filter((e) => e.kind === 'tftp.start').map((e) => Number(e.detail?.port));
      const ports = peers.map((p) => p.port);
      assert.deepEqual(starts.slice(2), ports.slice(2), 'the waiting requests started in arrival order');
      assert.equal(server.stats().waiting, 0);
    } finally {
      for (const p of peers) p.close();
    }
  });
});

test('[native] with tftp.streams 1, a client that keeps answering keeps its stream past streamHoldMs (the native line expires only silent holders)', { skip: nativeBuilt ? false : 'native/tftpdata not built (make -C native)' }, async () => {
  engine = 'native';
  // exact.bin is 41 lock-step blocks; answering each after 100 ms makes the transfer last
  // over 4 s, longer than the 3 s hold, with no silence anywhere near it.
  await withServer({ streams: 1, streamHoldMs: 3000, streamWaitMs: 600_000 }, async (port, server, events) => {
    const a = await rawPeer();
    const b = await rawPeer();
    try {
      const rrq = encode({ op: 'rrq', filename: 'exact.bin', mode: 'octet', options: {}, optionOrder: [] });
      a.send(rrq, port);
      await until(() => a.got.some((g) => g.p.op === 'data'), 10_000);
      b.send(rrq, port);
      await until(() => server.stats().waiting === 1, 10_000);
      let acked = 0;
      const started = Date.now();
      while (acked < 41) {
        const next = a.got.find((g) => g.p.op === 'data' && g.p.block === acked + 1);
        if (!next) {
          await sleep(5);
          if (Date.now() - started > 60_000) throw new Error(`stuck after block ${acked}`);
          continue;
        }
        await sleep(100);
        acked++;
        a.send(ackPacket(acked), next.port);
        // While A is served, B waits (no DATA to it, still counted as waiting).
        if (acked < 41) assert.equal(b.got.filter((g) => g.p.op === 'data').length, 0, `B got DATA while A held the stream (block ${acked})`);
      }
      assert.ok(Date.now() - started > 3000, 'A outlived the hold');
      await until(() => b.got.some((g) => g.p.op === 'data'), 10_000);
      assert.equal(server.stats().streamHoldsExpired, 0, 'a client that answers never loses its stream');
      const kinds = events.filter((e) => e.kind === 'tftp.start' || e.kind === 'tftp.done').map((e) => `${e.kind}:${String(e.detail?.port)}`);
      assert.deepEqual(kinds.slice(0, 3), [`tftp.start:${a.port}`, `tftp.done:${a.port}`, `tftp.start:${b.port}`]);
    } finally {
      a.close();
      b.close();
    }
  });
});

both('a mounted directory (vnfs/ for GRUB under Secure Boot) is served under its prefix, confined like the root', async () => {
  const vnfs = mkdtempSync(path.join(tmpdir(), 'phtftp-vnfs-'));
  try {
    const kernel = randomBytes(70_000);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.join(vnfs, 'stage1'));
    writeFileSync(path.join(vnfs, 'stage1', 'vmlinuz'), kernel);
    await withServer({ mounts: { 'vnfs/': vnfs } }, async (port, _server, events) => {
      const r = await tftpGet({ host: '127.0.0.1', port, file: '/vnfs/stage1/vmlinuz', options: { blksize: '1428' } });
      assert.equal(sha(r.data), sha(kernel));
      assert.equal(events.find((e) => e.kind === 'tftp.start')?.detail?.file, '/vnfs/stage1/vmlinuz');
      for (const bad of ['vnfs/../small.bin', 'vnfs/stage1/../../../etc/passwd', 'vnfs/stage1/missing']) {
        await assert.rejects(tftpGet({ host: '127.0.0.1', port, file: bad }), (e: unknown) => e instanceof TftpClientError, bad);
      }
      // The root still serves its own files.
      assert.equal(sha((await tftpGet({ host: '127.0.0.1', port, file: 'small.bin' })).data), sha(files['small.bin']!));
    });
  } finally {
    rmSync(vnfs, { recursive: true, force: true });
  }
});

both('with tftp.streams 1 (and no wait limit), requests that arrive together are sent one after the other in arrival order, and all complete', async () => {
  // No hold limit either: on a loaded machine a transfer can take longer than the default 250 ms
  // hold and would then give its stream to the next one (correct, but not what is checked here).
  await withServer({ streams: 1, streamWaitMs: 600_000, streamHoldMs: 600_000 }, async (port, _server, events) => {
    const got = await Promise.all([0, 1, 2, 3].map(() => tftpGet({ host: '127.0.0.1', port, file: 'small.bin', timeoutMs: 2000, deadlineMs: 30_000 })));
    for (const g of got) assert.equal(sha(g.data), sha(files['small.bin']!));
    // The server sees the last ACK after the client returned.
    for (let i = 0; i < 100 && events.filter((e) => e.kind === 'tftp.done').length < 4; i++) await new Promise((r) => setTimeout(r, 20));
    const kinds = events.filter((e) => e.kind === 'tftp.start' || e.kind === 'tftp.done').map((e) => e.kind);
    assert.deepEqual(kinds, ['tftp.start', 'tftp.done', 'tftp.start', 'tftp.done', 'tftp.start', 'tftp.done', 'tftp.start', 'tftp.done'], 'one transfer at a time');
  });
});

for (const mode of ['on', 'off'] as const) {
  test(`[native] tftp.pump_poll ${mode}: concurrent transfers, some losing DATA or ACKs, all complete intact (pump ${mode === 'on' ? 'polls before it sleeps' : 'always sleeps'})`, { skip: nativeBuilt ? false : 'native/tftpdata not built (make -C native)' }, async () => {
    engine = 'native';
    const native = loadNativeEngine()!;
    const before0 = native.pollStats();
    await withServer({ pumpPoll: mode, streams: 4 }, async (port) => {
      // Twelve at once over four streams: the pump always has several transfers; every third
      // client loses one DATA and every fourth one ACK, so retransmission runs while it polls.
      const got = await Promise.all(
        Array.from({ length: 12 }, (_, i) => {
          let droppedData = false;
          let droppedAck = false;
          return tftpGet({
            host: '127.0.0.1',
            port,
            file: 'small.bin',
            options: { blksize: '1024' },
            timeoutMs: 2000,
            retries: 20,
            deadlineMs: 120_000,
            dropData: (b) => i % 3 === 0 && b === 7 && !droppedData && (droppedData = true),
            dropAck: (b) => i % 4 === 0 && b === 11 && !droppedAck && (droppedAck = true),
          });
        }),
      );
      for (const g of got) assert.equal(sha(g.data), sha(files['small.bin']!));
      assert.equal(native.pollStats().workersPolling, mode === 'on' ? native.workers : 0, 'the mode reached the pump');
    });
    const after0 = native.pollStats();
    assert.ok(after0.sleeps + after0.polls > before0.sleeps + before0.polls, 'the pump ran its several-transfer loop');
    if (mode === 'off') assert.equal(after0.polls, before0.polls, 'never polled when told not to');
  });
}
