/**
 * A boot script carries its node's token, so a machine the master knows to be node A (by its
 * active lease, or the kernel's neighbour table) must not fetch node B's script: it would
 * then hold B's token. Built with the server's own wiring (bootParts) on a real store, over
 * real HTTP with curl from 127.0.0.1.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../../src/store/store.js';
import type { BootEvent } from '../../src/nodes/types.js';
import { parseConfig } from '../../src/config/load.js';
import { bootParts } from '../../src/boot/wiring.js';
import { createHttpApp } from '../../src/http/app.js';
import { curl, listen } from './http-curl.js';

const statedir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-http-owner-'));
const store = Store.open(statedir);
const events: BootEvent[] = [];
const policy = { pattern: 'n####', firstNumber: 1, defaultGroup: 'cluster', defaultVnfs: '' };
store.vnfs.put({ name: 'centos', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: '' });
const A = '52:54:00:00:0a:01';
const B = '52:54:00:00:0a:02';
store.nodes.add({ mac: A, name: 'alpha', vnfs: 'centos' }, policy);
store.nodes.add({ mac: B, name: 'bravo', vnfs: 'centos' }, policy);

function serve(nodeTokens: boolean) {
  const config = parseConfig({ statedir, security: { node_tokens: nodeTokens } });
  const parts = bootParts({ config, store, serverAddress: '127.0.0.1', events: { record: (e) => void events.push(e) } });
  return listen(createHttpApp({ routers: parts.routers }), 0);
}
const lease = (mac: string, expiresAt: number) =>
  store.leases.putMany([{ mac, ip: '127.0.0.1', expiresAt, hostname: '', state: 'bound', subnet: '', updatedAt: Date.now() }]);

const srv = await serve(true);
after(async () => {
  await srv.close();
  store.close();
  fs.rmSync(statedir, { recursive: true, force: true });
});

test('without a lease or neighbour entry for the asker, any node script is served (admin, proxy, unknown address)', async () => {
  const r = await curl(`${srv.base}/boot/52-54-00-00-0a-02.ipxe`);
  assert.equal(r.status, 200);
  assert.match(r.body.toString(), /pxeherd\.token=/);
});

test("the holder of node A's lease gets its own script but a 403 for node B's, with a security.denied event", async () => {
  lease(A, Date.now() + 600_000);
  const own = await curl(`${srv.base}/boot/52-54-00-00-0a-01.ipxe`);
  assert.equal(own.status, 200);
  assert.match(own.body.toString(), /pxeherd\.token=/);
  for (const url of [`/boot/52-54-00-00-0a-02.ipxe`, `/boot/52:54:00:00:0A:02.ipxe`, `/boot.ipxe?mac=525400000a02`]) {
    const other = await curl(`${srv.base}${url}`);
    assert.equal(other.status, 403, url);
    const text = other.body.toString();
    assert.match(text, /asked for from .*127\.0\.0\.1, which is node alpha \(52:54:00:00:0a:01\)/);
    assert.doesNotMatch(text, /token=/);
  }
  const denied = events.filter((e) => e.kind === 'security.denied' && e.mac === B);
  assert.equal(denied.length, 3);
  assert.equal(denied[0]!.detail?.asker, 'alpha');
});

test('an expired lease no longer ties the address to node A', async () => {
  lease(A, Date.now() - 1000);
  const r = await curl(`${srv.base}/boot/52-54-00-00-0a-02.ipxe`);
  assert.equal(r.status, 200);
});

test('with node tokens off (trusted LAN) nothing is checked', async () => {
  lease(A, Date.now() + 600_000);
  const open = await serve(false);
  try {
    const r = await curl(`${open.base}/boot/52-54-00-00-0a-02.ipxe`);
    assert.equal(r.status, 200);
  } finally {
    await open.close();
  }
});
