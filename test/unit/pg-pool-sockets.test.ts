/**
 * What a pool's sockets tell it (src/store/pg/connect.ts PoolSockets): a socket that connected and
 * wrote nothing for a second is a connection postgres.js wedged (porsager/postgres#1208): it is
 * closed and the pool told so; a connection the server closed is told as lost. Against a real listening
 * unix socket; the real wedge under PostgreSQL restarts is test/integration/pg-reconnect.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PoolSockets } from '../../src/store/pg/connect.js';

let dir: string;
let server: net.Server;
let sockPath: string;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-poolsockets-'));
  sockPath = path.join(dir, '.s.PGSQL.5432');
  server = net.createServer((c) => c.on('error', () => undefined).resume());
  await new Promise<void>((r) => server.listen(sockPath, r));
});

after(async () => {
  await new Promise((r) => server.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function openAndClose(sockets: PoolSockets, o: { write?: boolean; afterMs: number }): Promise<void> {
  const s = (await sockets.open({ path: sockPath, host: [], port: [] })) as net.Socket;
  await new Promise<void>((r) => s.once('connect', () => r()));
  if (o.write) s.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]));
  await sleep(o.afterMs);
  const closed = new Promise((r) => s.once('close', r));
  s.destroy();
  await closed;
}

function recorder() {
  const said: string[] = [];
  const sockets = new PoolSockets(undefined, { wedged: (why) => said.push(`wedged: ${why}`), lost: (why) => said.push(`lost: ${why}`) });
  return { said, sockets };
}

test('a connection silent for 1 s after connecting is closed and reported as wedged, once, with the reason', async () => {
  const { said, sockets } = recorder();
  const s = (await sockets.open({ path: sockPath, host: [], port: [] })) as net.Socket;
  const closed = new Promise((r) => s.once('close', r));
  await closed; // nobody closes it but the rule
  assert.equal(said.length, 1, said.join('; '));
  assert.match(said[0]!, /^wedged: .*sent nothing in 1 s .*postgres#1208/);
});

test('a connection that wrote, or closed at once, is not wedged', async () => {
  const { said, sockets } = recorder();
  await openAndClose(sockets, { write: true, afterMs: 1100 });
  await openAndClose(sockets, { afterMs: 0 });
  assert.deepEqual(said, []);
});

test('a connection the server closes is lost; one that we end is not', async () => {
  const { said, sockets } = recorder();
  // A server of its own: the earlier tests' connections may still be arriving at the shared one.
  const own = path.join(dir, 'own.sock');
  const peers: net.Socket[] = [];
  const srv = net.createServer((c) => (c.on('error', () => undefined), c.resume(), peers.push(c)));
  await new Promise<void>((r) => srv.listen(own, r));
  const peer = async (n: number) => {
    while (peers.length < n) await sleep(10);
    return peers[n - 1]!;
  };
  try {
    const s = (await sockets.open({ path: own, host: [], port: [] })) as net.Socket;
    s.write('x');
    const closed = new Promise((r) => s.once('close', r));
    (await peer(1)).end();
    await closed;
    assert.deepEqual(said, ['lost: the server closed a connection of the pool']);
    said.length = 0;
    const ours = (await sockets.open({ path: own, host: [], port: [] })) as net.Socket;
    ours.write('x');
    const p2 = await peer(2);
    p2.on('end', () => p2.end()); // the server answers our end with its own
    const closed2 = new Promise((r) => ours.once('close', r));
    ours.end();
    await closed2;
    assert.deepEqual(said, []);
  } finally {
    for (const c of peers) c.destroy();
    await new Promise((r) => srv.close(r));
  }
});

test('a refused connection is no wedge (it never connected), nor are the sockets of a retired pool', async () => {
  const { said, sockets } = recorder();
  const refused = (await sockets.open({ path: path.join(dir, 'nothing-here'), host: [], port: [] })) as net.Socket;
  await new Promise((r) => refused.once('close', r).once('error', () => undefined));
  const s = (await sockets.open({ path: sockPath, host: [], port: [] })) as net.Socket;
  await new Promise<void>((r) => s.once('connect', () => r()));
  await sleep(200);
  const closed = new Promise((r) => s.once('close', r));
  sockets.retire();
  await sleep(1100);
  await closed;
  assert.deepEqual(said, []);
  assert.throws(() => sockets.open({ path: sockPath, host: [], port: [] }), /replaced/);
});
