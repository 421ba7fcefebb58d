/**
 * SendGate: large bodies go out through a few streams in arrival order, each holding its place
 * until it ends or for at most holdMs. Unit checks on the gate itself, then the real HTTP app:
 * many concurrent downloads through one stream all arrive intact, and small files, HEAD and
 * Range requests never wait behind a stalled download.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { Response } from 'express';
import { createHttpApp } from '../../src/http/app.js';
import { vnfsRouter } from '../../src/http/vnfs.js';
import { FileCache, SendGate } from '../../src/http/files.js';
import { listen } from './http-curl.js';

class FakeRes extends EventEmitter {
  destroyed = false;
}
const fake = () => new FakeRes() as unknown as Response & FakeRes;

test('a full gate starts the next response in arrival order when one finishes or closes', () => {
  const gate = new SendGate(2, 60_000);
  const started: number[] = [];
  const rs = Array.from({ length: 5 }, fake);
  rs.forEach((r, i) => gate.admit(r, () => started.push(i)));
  assert.deepEqual(started, [0, 1]);
  rs[1]!.emit('finish');
  assert.deepEqual(started, [0, 1, 2]);
  rs[0]!.emit('close');
  assert.deepEqual(started, [0, 1, 2, 3]);
  // 'close' after 'finish' (what Node emits for every response) frees one place, not two.
  rs[1]!.emit('close');
  assert.deepEqual(started, [0, 1, 2, 3]);
  rs[2]!.emit('finish');
  rs[2]!.emit('close');
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  assert.deepEqual(gate.stats, { admitted: 5, queued: 3, maxQueue: 3, expired: 0 });
  for (const r of rs) r.emit('finish');
});

test('a response that is gone before its turn is skipped and takes no place', () => {
  const gate = new SendGate(1, 60_000);
  const started: number[] = [];
  const rs = Array.from({ length: 3 }, fake);
  rs.forEach((r, i) => gate.admit(r, () => started.push(i)));
  rs[1]!.destroyed = true;
  rs[0]!.emit('finish');
  assert.deepEqual(started, [0, 2]);
  rs[2]!.emit('finish');
});

test('a stalled download gives up its place after holdMs, once', async () => {
  const gate = new SendGate(1, 40);
  const started: number[] = [];
  const rs = Array.from({ length: 3 }, fake);
  rs.forEach((r, i) => gate.admit(r, () => started.push(i)));
  assert.deepEqual(started, [0]);
  await new Promise((r) => setTimeout(r, 70));
  assert.deepEqual(started, [0, 1], 'the second starts although the first never ended');
  assert.equal(gate.stats.expired, 1);
  // The first ending late must not free a second place: the third still waits for the second.
  rs[0]!.emit('finish');
  assert.deepEqual(started, [0, 1]);
  rs[1]!.emit('finish');
  assert.deepEqual(started, [0, 1, 2]);
  rs[2]!.emit('finish');
});

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-http-gate-'));
const img = path.join(dir, 'vnfs', 'img');
fs.mkdirSync(img, { recursive: true });
const kernel = crypto.randomBytes(3 << 20);
fs.writeFileSync(path.join(img, 'vmlinuz'), kernel);
fs.writeFileSync(path.join(img, 'small.cfg'), 'console=ttyS0\n');
const gate = new SendGate(1, 60_000);
const server = await listen(
  createHttpApp({ routers: [vnfsRouter({ vnfsRoot: path.join(dir, 'vnfs'), backend: { vnfs: () => ({ kernel: 'vmlinuz', initrd: 'x' }), nodeName: () => undefined }, events: { record: () => {} }, cache: new FileCache({ settleMs: 0 }), gate })] }),
  0,
);
after(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function get(p: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: Buffer; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${server.base}${p}`, { agent: false, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), res }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

test('20 concurrent kernel downloads through one stream all arrive whole', async () => {
  const before = gate.stats.admitted;
  const all = await Promise.all(Array.from({ length: 20 }, () => get('/vnfs/img/vmlinuz')));
  for (const r of all) {
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(kernel));
  }
  assert.equal(gate.stats.admitted - before, 20);
  assert.ok(gate.stats.maxQueue >= 1, 'some waited for the stream');
});

test('while a download is stalled, small files, HEAD and Range requests are answered at once', async () => {
  // Hold the only stream: read the headers and one chunk, then stop reading.
  const stalled = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.get(`${server.base}/vnfs/img/vmlinuz`, { agent: false }, (res) => {
      res.once('data', () => {
        res.pause();
        resolve(res);
      });
    });
    req.on('error', reject);
  });
  try {
    const small = await get('/vnfs/img/small.cfg');
    assert.equal(small.body.toString(), 'console=ttyS0\n');
    const head = await get('/vnfs/img/vmlinuz', {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.res.headers['content-length'], String(kernel.length));
    const part = await get('/vnfs/img/vmlinuz', { Range: 'bytes=100-199' });
    assert.equal(part.status, 206);
    assert.ok(part.body.equals(kernel.subarray(100, 200)));
  } finally {
    stalled.destroy();
  }
  // The stalled client went away: its place is free again.
  const next = await get('/vnfs/img/vmlinuz');
  assert.ok(next.body.equals(kernel));
});

test('a queued start that throws costs only its own connection, not the server', () => {
  const gate = new SendGate(1, 60_000);
  const first = fake();
  const second = fake() as ReturnType<typeof fake> & { destroy: (e?: Error) => void; destroyedWith?: Error };
  second.destroy = (e?: Error) => {
    second.destroyedWith = e;
    second.destroyed = true;
    second.emit('close');
  };
  const third = fake();
  const started: string[] = [];
  gate.admit(first, () => started.push('first'));
  gate.admit(second, () => {
    throw new Error('boom');
  });
  gate.admit(third, () => started.push('third'));
  assert.doesNotThrow(() => first.emit('finish'));
  assert.equal(second.destroyedWith?.message, 'boom');
  assert.deepEqual(started, ['first', 'third'], 'the place went on to the next response');
  third.emit('finish');
});

test('the metrics show streams running and waiting', async () => {
  const { createMetrics } = await import('../../src/metrics/pxeherd.js');
  const { parseExposition, value } = await import('../unit/metrics-exposition.js');
  const g = new SendGate(2, 60_000);
  const rs = Array.from({ length: 5 }, fake);
  for (const r of rs) g.admit(r, () => undefined);
  const m = createMetrics({ nodes: { all: () => [] }, events: { subscribe: () => () => undefined } }, { httpStreams: g });
  let s = parseExposition(await m.render());
  assert.equal(value(s, 'pxeherd_http_streams', { state: 'active' }), 2);
  assert.equal(value(s, 'pxeherd_http_streams', { state: 'waiting' }), 3);
  for (const r of rs) r.emit('finish');
  s = parseExposition(await m.render());
  assert.equal(value(s, 'pxeherd_http_streams', { state: 'active' }), 0);
  assert.equal(value(s, 'pxeherd_http_streams', { state: 'waiting' }), 0);
  m.close();
});
