/**
 * Interface binding (native addon, SO_BINDTODEVICE): a server configured for br0 answers a client
 * on br0 and stays silent for a client on br1 of the same host. Without the binding Node cannot
 * tell the two apart and would hand br1's client an address of br0's network.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLab, eventEnv, labUnavailable, nsExec, startServer, writeEnvScript, type Lab } from './dhcp-lab.js';
import { loadBindToDevice } from '../../src/dhcp/bindtodevice.js';

const skip =
  labUnavailable(['busybox']) ??
  (loadBindToDevice() ? undefined : 'native addon not built: make -C native/bindtodevice');
const SECOND = 'phdhcp-eif';
let lab: Lab;
let dir: string;
let script: string;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-if-'));
  script = writeEnvScript(dir);
  lab = await createLab('if', { clientMac: '02:79:00:00:04:01', second: { name: SECOND, mac: '02:79:00:00:04:02' } });
});

after(async () => {
  if (skip) return;
  await lab?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const udhcpc = (ns: string) =>
  nsExec(ns, 'busybox', ['udhcpc', '-f', '-q', '-n', '-t', '3', '-T', '1', '-i', 'eth0', '-s', script], 30_000).then(
    (r) => r.stdout,
    (e) => String(e.stdout ?? ''),
  );

const CONFIG = { serverAddress: '10.79.0.1', dhcp: { mode: 'full', range: ['10.79.0.100', '10.79.0.150'] } };

test('bound to br0: the client on br0 gets a lease, the client on br1 gets no answer', { skip }, async () => {
  const server = await startServer(lab.server, { ...CONFIG, interface: 'br0' });
  try {
    assert.match(eventEnv(await udhcpc(lab.client), 'bound')?.ip ?? '', /^10\.79\.0\.1\d\d$/);
    assert.equal(eventEnv(await udhcpc(SECOND), 'bound'), undefined, 'no lease on br1');
  } finally {
    const { events } = await server.stop();
    assert.equal(events.filter((e) => e.mac === '02:79:00:00:04:02').length, 0, 'the br1 client never reached the handler');
  }
});

test('without an interface the same server hears the br1 client and offers it a br0 address (what the binding prevents)', { skip }, async () => {
  const server = await startServer(lab.server, CONFIG);
  await udhcpc(SECOND);
  const { events } = await server.stop();
  const offer = events.find((e) => e.mac === '02:79:00:00:04:02' && e.kind === 'dhcp.offer');
  assert.ok(offer, 'the handler saw the br1 client');
  assert.match(String(offer.detail?.ip), /^10\.79\.0\./);
});

test('an interface that does not exist is reported by start() in one line', { skip }, async () => {
  await assert.rejects(startServer(lab.server, { ...CONFIG, interface: 'nosuch0' }), /ERROR DHCP: cannot bind to interface nosuch0: .*No such device/);
});
