import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startAdmin, type AdminFixture } from './admin-fixture.js';
import { CHROMIUM, launch, loadPlaywright, waitFor, type UiBrowser } from './ui-driver.js';
import { adminLink } from '../../src/admin/tokens.js';
import { ROOT } from '../helpers/cli.js';

const PORTS: [number, number] = [18240, 18259];
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">';

/**
 * The admin listener, a fresh Chromium profile and the browser, torn down in that order
 * reversed: the browser first (it writes to its profile until it exits), then the rest.
 */
async function setup(t: { after(fn: () => Promise<void>): void }): Promise<{ f: AdminFixture; profile: string; b: UiBrowser }> {
  const f = await startAdmin(PORTS);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-chromium-'));
  let b: UiBrowser | undefined;
  t.after(async () => {
    try {
      await b?.close();
    } finally {
      await f.close();
      fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    }
  });
  b = await launch(profile);
  return { f, profile, b };
}

const skip = fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing: apt-get install -y chromium`;

test('in Chromium: sign in by link, filter the node table, read a boot timeline, set the boot mode and disable a node', { skip, timeout: 60_000 }, async (t) => {
  const pw = await loadPlaywright();
  if (!pw) t.diagnostic('playwright-core is not installed: driving Chromium over the DevTools pipe instead');
  const { f, b } = await setup(t);
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  f.service.add({ mac: 'aa:bb:cc:00:00:01', name: 'n0000', group: 'compute', ip: '10.0.0.10' });
  f.service.add({ mac: 'aa:bb:cc:00:00:02', name: 'n0001', group: 'compute', attrs: { note: HOSTILE } });
  f.service.add({ mac: 'aa:bb:cc:00:00:03', name: 'n0002', group: 'gpu' });

  t.diagnostic(`driver: ${b.driver}`);

  // One click: the token link sets the session cookie and is replaced by a clean URL.
  await b.goto(adminLink('127.0.0.1', f.port, f.tokens.admin));
  assert.equal(await b.eval('location.href'), `${f.base}/`);
  assert.equal(await b.eval('document.cookie'), '', 'the session cookie is HttpOnly');
  assert.deepEqual(await b.eval(`[...document.querySelectorAll('#nodes tbody tr')].map(r => r.dataset.node)`), ['n0000', 'n0001', 'n0002']);
  assert.equal(await b.eval(`document.querySelector('#nodes tr[data-node="n0000"] .ip').textContent`), '10.0.0.10');

  // Filter with the query language.
  await b.fill('#q', 'group:compute and not name:n0001');
  await b.clickAndWait('#filter');
  assert.deepEqual(await b.eval(`[...document.querySelectorAll('#nodes tbody tr')].map(r => r.dataset.node)`), ['n0000']);
  assert.match(await b.eval<string>('location.search'), /^\?q=group%3Acompute/);
  await b.fill('#q', 'group:compute and (');
  await b.clickAndWait('#filter');
  assert.match(await b.eval<string>(`document.getElementById('error').textContent`), /bad query/);

  // A simulated boot, recorded as the protocol servers record it.
  const mac = 'aa:bb:cc:00:00:01';
  const t0 = Date.now() - 60_000;
  const boot = [
    { dt: 0, kind: 'dhcp.discover', mac },
    { dt: 15, kind: 'dhcp.offer', mac, node: 'n0000', detail: { ip: '10.0.0.10', boot: 'bios-pxe', file: 'undionly.kpxe' } },
    { dt: 1020, kind: 'dhcp.ack', mac, node: 'n0000', detail: { ip: '10.0.0.10' } },
    { dt: 1400, kind: 'tftp.done', detail: { file: 'undionly.kpxe', peer: '10.0.0.10', bytes: 70_000, durationMs: 320 } },
    { dt: 5200, kind: 'http.ipxe', mac, node: 'n0000', detail: { mode: 'provision', template: 'default' } },
    { dt: 5400, kind: 'http.kernel', mac, node: 'n0000', detail: { vnfs: 'deb', file: 'vmlinuz', status: 200, bytes: 8 << 20, ms: 90 } },
    { dt: 9000, kind: 'provision.start', mac, node: 'n0000', detail: { state: 'init', via: 'http' } },
    { dt: 9300, kind: 'nodescript.fail', mac, node: 'n0000', detail: { script: 'init/all/20-disks', reason: 'exit code 2', stderr: 'mkfs: /dev/sda: <no such device>' } },
    { dt: 9310, kind: 'provision.end', mac, node: 'n0000', detail: { state: 'init', ok: false, durationMs: 310, failed: ['init/all/20-disks'] } },
  ];
  for (const e of boot) f.store.events.record({ time: t0 + e.dt, mac: e.mac, node: e.node, kind: e.kind, detail: e.detail });
  f.store.events.flush();

  await b.goto(`${f.base}/`);
  await b.clickAndWait('#nodes tr[data-node="n0000"] a');
  assert.equal(await b.eval('location.pathname'), '/ui/nodes/n0000');
  const rows = await b.eval<[string, string][]>(`[...document.querySelectorAll('#timeline tbody tr')].map(r => [r.dataset.kind, r.cells[1].textContent])`);
  assert.deepEqual(
    rows.map((r) => r[0]),
    boot.map((e) => e.kind),
    'every DHCP/TFTP/HTTP/provision event of the boot, TFTP matched by the node address',
  );
  assert.equal(rows[3]![1], '+1.400 s');
  assert.equal(rows[8]![1], '+9.310 s');
  assert.equal(await b.eval(`document.querySelector('tr[data-kind="nodescript.fail"] pre.stderr').textContent`), 'mkfs: /dev/sda: <no such device>');
  assert.equal(await b.eval(`document.querySelector('tr[data-kind="nodescript.fail"]').classList.contains('failed')`), true);
  await b.screenshot(path.join(ARTIFACTS, 'ui-node-timeline.png'));

  // Set the boot mode with the form; the change is in the database.
  await b.select('#mode', 'local');
  await b.clickAndWait('#set-boot');
  assert.equal(await b.eval(`document.getElementById('changed').textContent`), 'boot mode set to local');
  assert.equal(await b.eval(`document.getElementById('boot').textContent`), 'local');
  assert.equal(f.store.nodes.byName('n0000')!.boot, 'local');
  await b.select('#mode', 'once');
  await b.clickAndWait('#set-boot');
  assert.equal(f.store.nodes.byName('n0000')!.boot, 'once');
  await b.clickAndWait('#disable');
  assert.equal(await b.eval(`document.getElementById('enabled').textContent`), 'no');
  assert.equal(f.store.nodes.byName('n0000')!.enabled, false);
  await b.clickAndWait('#enable');
  assert.equal(f.store.nodes.byName('n0000')!.enabled, true);

  // A hostile attribute value is shown as text and never runs.
  await b.goto(`${f.base}/ui/nodes/n0001`);
  assert.equal(await b.eval('document.querySelector("#attrs .attr-value").textContent'), HOSTILE);
  assert.equal(await b.eval('window.__pwned ?? null'), null);
  assert.equal(await b.eval('document.querySelectorAll("main script, main img").length'), 0);

  // Live feed: a new event appears without a reload.
  await b.goto(`${f.base}/ui/events`);
  await waitFor(b, `document.getElementById('live-status').textContent === 'live'`);
  f.store.events.record({ kind: 'provision.start', mac: 'aa:bb:cc:00:00:03', node: 'n0002', detail: { state: 'ready', via: 'provisiond' } });
  const first = await waitFor<string>(b, `(() => { const r = document.querySelector('#events tbody tr'); return r && r.cells[3].textContent === 'provision.start' && r.cells[1].textContent; })()`);
  assert.equal(first, 'n0002');
  // ...and the node table follows it too.
  await b.goto(`${f.base}/`);
  await waitFor(b, `document.readyState === 'complete'`);
  await new Promise((r) => setTimeout(r, 300)); // EventSource connects after load
  f.store.events.record({ kind: 'provision.start', mac: 'aa:bb:cc:00:00:03', node: 'n0002', detail: { state: 'init', via: 'http' } });
  await waitFor(b, `document.querySelector('#nodes tr[data-node="n0002"] .state').textContent === 'init'`);
  await b.screenshot(path.join(ARTIFACTS, 'ui-nodes.png'));
  assert.ok(fs.statSync(path.join(ARTIFACTS, 'ui-nodes.png')).size > 1000);
});

test('in Chromium: a read-only session sees the pages but no action forms, and a wrong link token is refused', { skip, timeout: 30_000 }, async (t) => {
  const { f, b } = await setup(t);
  f.service.add({ mac: 'aa:bb:cc:00:00:01', name: 'n0000' });

  await b.goto(adminLink('127.0.0.1', f.port, 'wrong-token-wrong-token'));
  assert.equal(await b.eval('document.querySelector("h1").textContent'), 'Wrong token');
  await b.goto(`${f.base}/ui/nodes/n0000`);
  assert.equal(await b.eval('document.querySelector("h1").textContent'), 'Sign in');

  await b.goto(adminLink('127.0.0.1', f.port, f.tokens.readonly));
  assert.equal(await b.eval('document.querySelector(".role").textContent'), 'read-only');
  await b.goto(`${f.base}/ui/nodes/n0000`);
  assert.equal(await b.eval('document.querySelectorAll(".actions form").length'), 0);
  await b.goto(`${f.base}/ui/groups`);
  assert.match(await b.eval<string>('document.querySelector("#groups").textContent'), /cluster/);
  await b.goto(`${f.base}/ui/vnfs`);
  assert.match(await b.eval<string>('document.querySelector("#vnfs").textContent'), /no VNFS images/);
});
