/**
 * Hardware inventory and check-in through a real `pxeherd serve` on loopback, with curl as the
 * node: POST /inventory accepted with the node's token, refused (413 oversize, 400 malformed,
 * 403 without the token) storing nothing, change detection with a diff event, the facts in
 * `node show --json`, `node list 'hw:...'`, the API and the UI, and a node that stops checking
 * in turning stale after three intervals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, ROOT, makeStateDir, pxeherd, dumpDb, type StateDir } from '../helpers/cli.js';
import { curl } from './http-curl.js';
import { nodeTokensFor } from '../../src/security/tokens.js';
import { Store } from '../../src/store/store.js';

const HTTP = 18190;
const ADMIN = 18191;
const M1 = '52:54:00:83:00:01';
const M2 = '52:54:00:83:00:02';
const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((b) => fs.existsSync(b));
const skip = busybox ? undefined : 'needs busybox (Debian package busybox-static) to run the collector';

let sd: StateDir;
let server: ChildProcess | undefined;
let token1 = '';
let adminToken = '';
const base = `http://127.0.0.1:${HTTP}`;
const admin = `http://127.0.0.1:${ADMIN}`;

function collector(machine: string): string {
  const r = spawnSync(busybox!, ['sh', path.join(ROOT, 'templates/stage1/inventory.sh')], { env: { INV_ROOT: path.join(ROOT, 'test/fixtures/inventory', machine), PATH: process.env.PATH }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

function post(mac: string, body: string | Buffer, tok?: string) {
  const file = path.join(sd.dir, `body-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file, body);
  const q = `mac=${mac.replace(/:/g, '-')}${tok ? `&token=${encodeURIComponent(tok)}` : ''}`;
  return curl(`${base}/inventory?${q}`, ['-X', 'POST', '-H', 'Content-Type: application/json', '--data-binary', `@${file}`]);
}

function withStore<T>(fn: (s: Store) => T): T {
  const s = Store.open(sd.statedir);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

async function waitFor<T>(what: string, ms: number, fn: () => T | undefined | false): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const json = (args: string[]) => {
  const r = pxeherd([...args, '--json'], { config: sd.config });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
};

const inventoryRows = () => {
  const d = JSON.parse(dumpDb(sd.statedir)) as Record<string, unknown[]>;
  return JSON.stringify([d.inventory, d.health]);
};

before(async () => {
  if (skip) return;
  sd = makeStateDir();
  fs.writeFileSync(
    sd.config,
    `statedir: ${sd.statedir}
address: 127.0.0.1
dhcp: { mode: off }
tftp: { port: 0 }
provisiond: { port: 0 }
http: { port: ${HTTP}, listen: 127.0.0.1 }
admin: { port: ${ADMIN}, listen: 127.0.0.1 }
security: { node_tokens: true }
`,
  );
  assert.equal(pxeherd(['node', 'add', M1, 'inv1', '--group', 'compute'], { config: sd.config }).code, 0);
  assert.equal(pxeherd(['node', 'add', M2, 'inv2', '--group', 'compute'], { config: sd.config }).code, 0);
  const log = fs.openSync(path.join(sd.dir, 'serve.log'), 'a');
  server = spawn(process.execPath, [CLI, 'serve', '--config', sd.config], { stdio: ['ignore', log, log] });
  await waitFor('pxeherd serve to listen', 15_000, () => {
    const t = fs.readFileSync(path.join(sd.dir, 'serve.log'), 'utf8');
    if (server!.exitCode !== null) throw new Error(`serve exited: ${t}`);
    return /http listening/.test(t) && /admin listening/.test(t);
  });
  // The same key file the server signs boot tokens with.
  token1 = nodeTokensFor(sd.statedir, 3600).issueToken(M1);
  adminToken = fs.readFileSync(path.join(sd.statedir, 'admin.token'), 'utf8').trim();
});

after(async () => {
  if (server && server.exitCode === null) {
    const done = new Promise((r) => server!.once('exit', r));
    server.kill('SIGTERM');
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    if (server.exitCode === null) server.kill('SIGKILL');
  }
  if (sd && !process.env.PXEHERD_KEEP_TEST) sd.cleanup();
});

test('refusals store nothing: 413 over 256 KiB, 400 not JSON or malformed (naming the field), 403 without or with another node\'s token, 404 unknown node', { skip }, async () => {
  const before = inventoryRows();
  const big = await post(M1, Buffer.alloc(300 * 1024, 0x20), token1);
  assert.equal(big.status, 413);
  assert.match(big.body.toString(), /more than the 262144 bytes accepted/);
  const notJson = await post(M1, '{"version":1,', token1);
  assert.equal(notJson.status, 400);
  assert.match(notJson.body.toString(), /not JSON/);
  const malformed = await post(M1, JSON.stringify({ ...JSON.parse(collector('qemu-bios')), memory_kb: 'much' }), token1);
  assert.equal(malformed.status, 400);
  assert.match(malformed.body.toString(), /malformed: memory_kb/);
  const empty = await post(M1, '', token1);
  assert.equal(empty.status, 400);
  const good = collector('qemu-bios');
  const noToken = await post(M2, good);
  assert.equal(noToken.status, 403);
  assert.match(noToken.body.toString(), /node inv2 \(52:54:00:83:00:02\): no token/);
  const othersToken = await post(M2, good, token1);
  assert.equal(othersToken.status, 403);
  assert.match(othersToken.body.toString(), /not issued for 52:54:00:83:00:02/);
  const unknown = await post('52:54:00:83:00:99', good, token1);
  assert.equal(unknown.status, 404);
  const badMac = await curl(`${base}/inventory?mac=nope`, ['-X', 'POST', '--data-binary', good]);
  assert.equal(badMac.status, 400);
  assert.equal(inventoryRows(), before, 'no inventory or health row was written');
});

test('a report with the token is stored (inventory.first), a changed one keeps the previous and records inventory.changed with the diff', { skip }, async () => {
  const since = Date.now() - 1;
  const first = await post(M1, collector('dell-r640'), token1);
  assert.equal(first.status, 200, first.body.toString());
  assert.deepEqual(JSON.parse(first.body.toString()), { ok: true, node: 'inv1', result: 'first', version: 1, changes: [] });
  const again = await post(M1, collector('dell-r640'), token1);
  assert.equal(JSON.parse(again.body.toString()).result, 'unchanged');

  // The same machine with its SATA disk pulled and a NIC added.
  const changed = JSON.parse(collector('dell-r640'));
  changed.disks = changed.disks.filter((d: { name: string }) => d.name !== 'sda');
  changed.nics.push({ name: 'eno3', mac: 'e4:43:4b:10:20:32', driver: 'i40e', speed_mbps: 25000, carrier: 1 });
  const r = await post(M1, JSON.stringify(changed), token1);
  assert.equal(r.status, 200);
  const body = JSON.parse(r.body.toString());
  assert.equal(body.result, 'changed');
  assert.equal(body.version, 2);
  assert.deepEqual(body.changes, ['disk sda (serial S3Z9NB0K123456A, 480.1 GB) gone', 'NIC e4:43:4b:10:20:32 (eno3, i40e) added']);

  const evs = await waitFor('inventory events', 5000, () => {
    const e = withStore((s) => s.events.query({ mac: M1, since, order: 'asc', limit: 100 })).filter((x) => x.kind.startsWith('inventory.'));
    return e.length >= 2 ? e : undefined;
  });
  assert.deepEqual(
    evs.map((e) => e.kind),
    ['inventory.first', 'inventory.changed'],
    'no event for the unchanged report',
  );
  const d = evs[1]!.detail as { changes: string[]; removed: { kind: string }[]; added: { kind: string }[] };
  assert.deepEqual(d.changes, body.changes);
  assert.deepEqual(
    [d.removed.map((x) => x.kind), d.added.map((x) => x.kind)],
    [['disk'], ['nic']],
  );
});

test('node show --json carries hardware (facts, report, previous version); node list selects on hw: facts; the API and the UI show them', { skip }, async () => {
  const show = json(['node', 'show', 'inv1']);
  const hw = show.nodes[0].hardware;
  assert.equal(hw.version, 2);
  assert.equal(hw.previous.version, 1);
  assert.equal(hw.facts.mem_gb, 64);
  assert.equal(hw.facts.cpus, 8);
  assert.equal(hw.facts.vendor, 'Dell Inc.');
  assert.equal(hw.report.nics.length, 3);
  assert.equal(json(['node', 'show', 'inv2']).nodes[0].hardware, null, 'a node that never reported has hardware null');
  const text = pxeherd(['node', 'show', 'inv1'], { config: sd.config }).stdout;
  assert.match(text, /cpu: +8 x Intel\(R\) Xeon\(R\) Gold 6130/);
  assert.match(text, /disk: +nvme0n1 960.2 GB/);

  const names = (q: string) => json(['node', 'list', q]).nodes.map((n: { name: string }) => n.name);
  assert.deepEqual(names('hw:mem_gb>=1'), ['inv1']);
  assert.deepEqual(names('hw:mem_gb>=128'), []);
  assert.deepEqual(names('hw:vendor,Dell*'), ['inv1']);
  assert.deepEqual(names('hw:firmware,uefi and hw:cpus>=8 and hw:nics>=3'), ['inv1']);
  assert.deepEqual(names('group:compute and not hw:disks'), ['inv2']);

  const api = await curl(`${admin}/api/v1/nodes/inv1`, ['-H', `Authorization: Bearer ${adminToken}`]);
  assert.equal(api.status, 200);
  assert.equal(JSON.parse(api.body.toString()).hardware.facts.disks, 1);
  const apiList = await curl(`${admin}/api/v1/nodes?q=${encodeURIComponent('hw:disk_gb>=900')}`, ['-H', `Authorization: Bearer ${adminToken}`]);
  assert.deepEqual(
    JSON.parse(apiList.body.toString()).nodes.map((n: { name: string; stale: boolean }) => [n.name, n.stale]),
    [['inv1', false]],
  );
  const ui = await curl(`${admin}/ui/nodes/inv1`, ['-H', `Authorization: Bearer ${adminToken}`]);
  assert.equal(ui.status, 200);
  const html = ui.body.toString();
  assert.match(html, /id="hw-cpu">8 × Intel\(R\) Xeon\(R\) Gold 6130/);
  assert.match(html, /NIC eno3/);
});

test('a ready check-in records its health; with checkin_interval=1 a node that stops checking in is stale after three intervals in list, status, queries, the API and the UI', { skip }, async () => {
  assert.equal(pxeherd(['node', 'set', 'attr.checkin_interval', '1', 'inv1'], { config: sd.config }).code, 0);
  const ready = await curl(`${base}/provision/ready?mac=${M1}&token=${encodeURIComponent(token1)}&uptime=4242.5&load=0.25&memfree_kb=123456`);
  assert.equal(ready.status, 200, ready.body.toString());
  // The shipped ready nodescript installs the loop with the node's interval.
  assert.match(ready.body.toString(), /_ck_interval=1\b/);
  assert.match(ready.body.toString(), /\/provision\/ready\?mac=\$CK_MAC/);
  const checkedIn = Date.now();

  const show = json(['node', 'show', 'inv1']).nodes[0];
  assert.deepEqual({ uptime: show.health.uptime, load: show.health.load, memfree_kb: show.health.memfree_kb }, { uptime: 4242, load: 0.25, memfree_kb: 123456 });
  assert.equal(show.stale, false);
  assert.equal(json(['node', 'status', 'inv1']).nodes[0].stale, false);
  const start = await waitFor('the provision.start event with health', 5000, () =>
    withStore((s) => s.events.query({ mac: M1, kind: 'provision.start', since: checkedIn - 5000, limit: 10 })).find((e) => (e.detail as { health?: unknown }).health),
  );
  assert.deepEqual((start.detail as { health: unknown }).health, { uptime: 4242, load: 0.25, memfree_kb: 123456 });

  await new Promise((r) => setTimeout(r, Math.max(0, checkedIn + 3500 - Date.now())));
  const status = json(['node', 'status']);
  assert.deepEqual(
    status.nodes.map((n: { name: string; stale: boolean }) => [n.name, n.stale]),
    [
      ['inv1', true],
      ['inv2', false],
    ],
    'inv2 never made contact, so nothing is overdue',
  );
  assert.match(pxeherd(['node', 'list'], { config: sd.config }).stdout, /inv1 .* ago \(stale\)/);
  assert.deepEqual(json(['node', 'list', 'state:stale']).nodes.map((n: { name: string }) => n.name), ['inv1']);
  const api = await curl(`${admin}/api/v1/nodes?q=state:stale`, ['-H', `Authorization: Bearer ${adminToken}`]);
  assert.deepEqual(JSON.parse(api.body.toString()).nodes.map((n: { name: string; stale: boolean }) => [n.name, n.stale]), [['inv1', true]]);
  const ui = await curl(`${admin}/`, ['-H', `Authorization: Bearer ${adminToken}`]);
  assert.match(ui.body.toString(), /data-node="inv1"[\s\S]*?<span class="stale"/);

  // Checking in again clears it.
  const again = await curl(`${base}/provision/ready?mac=${M1}&token=${encodeURIComponent(token1)}`);
  assert.equal(again.status, 200);
  assert.equal(json(['node', 'status', 'inv1']).nodes[0].stale, false);
});
