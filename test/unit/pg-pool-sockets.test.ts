/**
 * The wedged-connection rule of a pool's sockets (src/store/pg/connect.ts PoolSockets): a socket
 * that connected and was closed a second or more later without one byte written is a connection
 * postgres.js wedged (porsager/postgres#1208), and the pool is told so. Against a real listening
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
  server = net.createServer((c) => c.on('error', () => undefined));
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

test('a connection closed after 1 s of silence is reported as wedged, once, with the reason', async () => {
  const said: string[] = [];
  const sockets = new PoolSockets(undefined, (why) => said.push(why));
  await openAndClose(sockets, { afterMs: 1100 });
  assert.equal(said.length, 1);
  assert.match(said[0]!, /never sent its startup message in 1 s .*postgres#1208/);
});

test('a connection that wrote, or closed at once, is not wedged', async () => {
  const said: string[] = [];
  const sockets = new PoolSockets(undefined, (why) => said.push(why));
  await openAndClose(sockets, { write: true, afterMs: 1100 });
  await openAndClose(sockets, { afterMs: 0 });
  assert.deepEqual(said, []);
});

test('a refused connection is no wedge (it never connected), nor are the sockets of a retired pool', async () => {
  const said: string[] = [];
  const sockets = new PoolSockets(undefined, (why) => said.push(why));
  const refused = (await sockets.open({ path: path.join(dir, 'nothing-here'), host: [], port: [] })) as net.Socket;
  await new Promise((r) => refused.once('close', r).once('error', () => undefined));
  const s = (await sockets.open({ path: sockPath, host: [], port: [] })) as net.Socket;
  await new Promise<void>((r) => s.once('connect', () => r()));
  await sleep(1100);
  const closed = new Promise((r) => s.once('close', r));
  sockets.retire();
  await closed;
  assert.deepEqual(said, []);
  assert.throws(() => sockets.open({ path: sockPath, host: [], port: [] }), /replaced/);
});
