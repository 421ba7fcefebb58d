/**
 * `node rollback` (issue 18) without QEMU: a real pxeherd server (in this process, HTTP and
 * admin on loopback), two real VNFS revisions (vnfs import), and a disk node whose "machine"
 * is a shell script started by its power driver (power=command): on a power cycle it asks
 * pxeherd's real endpoints what a booting node asks (the iPXE script, the rendered init
 * nodescripts, the revision's squashfs), and reports the install and the OS check-in the way
 * 20-disk-install, 85-disk-boot and the check-in do (/node/report/..., /provision/ready). The
 * revision it installs is the one pxeherd rendered for it (PXEHERD_REV): the pin is what
 * decides, not the test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { dumpDb, makeStateDir } from '../helpers/cli.js';
import { loadConfig } from '../../src/config/load.js';
import { startServer } from '../../src/server/server.js';
import { silentLogger } from '../../src/util/log.js';
import { ensureKey } from '../../src/remote/keys.js';
import { parseInventory } from '../../src/inventory/inventory.js';
import { cli, FakeSshd, writeExecutable } from './remote-fixture.js';

// Ports 18440-18449 belong to this file.
const HTTP_PORT = 18440;
const ADMIN_PORT = 18441;
const SSH_PORT = 18442;

const skip =
  process.getuid?.() !== 0
    ? 'needs root (vnfs import keeps owners)'
    : ['mksquashfs', 'curl'].find((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0)
      ? 'needs mksquashfs and curl (Debian packages squashfs-tools, curl)'
      : undefined;

const MASTER = `http://127.0.0.1:${HTTP_PORT}`;

/**
 * The machine: a power cycle starts a boot in the background (the power command returns at
 * once, as a BMC does). The boot asks for its iPXE script and init nodescripts, installs the
 * revision those name, reports install.start/install.done, "reboots" into its disk (the iPXE
 * script again: boot mode local now) and checks in ready from the OS.
 */
function machineScripts(dir: string): string {
  const boot = writeExecutable(
    path.join(dir, 'boot.sh'),
    `#!/bin/sh
set -eu
mac=$1; log=$2
q="mac=$mac"
sleep 0.3
curl -fsS "${MASTER}/boot.ipxe?$q" > "$log.ipxe"
curl -fsS "${MASTER}/provision/init?$q" > "$log.init"
rev=$(sed -n 's/^PXEHERD_REV=\\([0-9]*\\)$/\\1/p' "$log.init" | head -n 1)
vnfs=$(sed -n "s/^VNFS='\\(.*\\)'$/\\1/p" "$log.init" | head -n 1)
curl -fsS -o /dev/null "${MASTER}/vnfs/$vnfs/r$rev/rootfs.squashfs?$q"
curl -fsS -o /dev/null "${MASTER}/node/report/install.start?$q&rev=$rev&disk=vda&firmware=bios"
curl -fsS -o /dev/null "${MASTER}/node/report/install.done?$q&rev=$rev&vnfs=$vnfs&disk=vda&firmware=bios&ms=5"
curl -fsS "${MASTER}/boot.ipxe?$q" > "$log.local"
curl -fsS -o /dev/null "${MASTER}/provision/ready?$q"
curl -fsS -o /dev/null "${MASTER}/node/report/node.checkin?$q&first=1&rev=$rev"
echo "installed $vnfs r$rev" >> "$log"
`,
  );
  return writeExecutable(path.join(dir, 'power-cycle.sh'), `#!/bin/sh\nsetsid ${boot} "$1" "$2" >> "$2.err" 2>&1 < /dev/null &\necho "Chassis Power Control: Cycle"\n`);
}

const DISKS = JSON.stringify({
  version: 1,
  cpu: { model: 'QEMU Virtual CPU', count: 1 },
  memory_kb: 500000,
  disks: [{ name: 'vda', size_bytes: 8 * 1024 ** 3, model: 'QEMU HARDDISK', serial: 'RB1', rotational: 1, removable: 0 }],
  nics: [{ name: 'eth0', mac: '52:54:00:00:00:01', driver: 'e1000' }],
  firmware: 'bios',
});

/** The server, two revisions of VNFS deb, disk node d1 (machine + FakeSshd) and stateless node s1. */
async function startLab(t: { after(fn: () => unknown): void }) {
  const s = makeStateDir();
  t.after(s.cleanup);
  fs.writeFileSync(
    s.config,
    `statedir: ${s.statedir}\naddress: 127.0.0.1\nhttp: { port: ${HTTP_PORT} }\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nadmin: { listen: 127.0.0.1, port: ${ADMIN_PORT} }\nsecurity: { node_tokens: false }\nnodes: { auto_register: false }\n`,
  );
  // Two revisions of one VNFS with a root filesystem.
  for (const marker of ['one', 'two']) {
    const tree = fs.mkdtempSync(path.join(s.dir, 'tree-'));
    fs.mkdirSync(path.join(tree, 'etc'));
    fs.writeFileSync(path.join(tree, 'etc/marker'), `${marker}\n`);
    const r = await cli(['vnfs', 'import', 'deb', tree, '--json'], s.config);
    assert.equal(r.code, 0, r.stderr);
  }
  const server = await startServer(loadConfig(s.config), silentLogger());
  t.after(() => server.stop());
  const store = server.store;
  const key = ensureKey(s.statedir);
  const sshd = await new FakeSshd({ authorizedKeys: [key.publicKey] }).listen(SSH_PORT);
  t.after(() => sshd.close());
  const log = path.join(s.dir, 'machine.log');
  const cycle = machineScripts(s.dir);
  const disk = { power: 'command', power_cycle_cmd: `${cycle} {{mac}} ${log}`, install: 'disk', address: '127.0.0.1', ssh_host: '127.0.0.1', ssh_port: String(SSH_PORT) };
  for (const [k, v] of Object.entries(disk)) assert.equal((await cli(['group', 'set', 'disk', k, v], s.config)).code, 0);
  const MAC = '52:54:00:00:00:01';
  assert.equal((await cli(['node', 'add', MAC, 'd1', '--group', 'disk', '--vnfs', 'deb@1'], s.config)).code, 0);
  assert.equal((await cli(['node', 'add', '52:54:00:00:00:02', 's1', '--vnfs', 'deb'], s.config)).code, 0);
  const inv = parseInventory(DISKS);
  assert.ok(inv.ok);
  store.inventory.save(MAC, inv.inventory);
  const machineSaw = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n') : []);
  const installed = () => {
    const i = store.installs.get(MAC)!;
    return [`${i.vnfs}@${i.rev}`, i.previous ? `${i.previous.vnfs}@${i.previous.rev}` : null];
  };

  return { s, store, MAC, machineSaw, installed };
}

test('node rollback pins the install before, reinstalls through the node-facing endpoints, and swaps back on a second rollback (CLI, REST, UI); refusals change nothing', { skip, timeout: 180_000 }, async (t) => {
  const { s, store, MAC, machineSaw, installed } = await startLab(t);

  // Refused before anything is installed: nothing changes, exit 2.
  const before0 = dumpDb(s.statedir);
  const none = await cli(['node', 'rollback', 'd1'], s.config);
  assert.equal(none.code, 2, none.stderr);
  assert.equal(none.stderr, 'pxeherd: d1 has no install on its disk that pxeherd recorded (no install.done yet): nothing to roll back; install it first with pxeherd node reinstall d1\n');
  const stateless = await cli(['node', 'rollback', 's1', 'd1'], s.config);
  assert.equal(stateless.code, 2);
  assert.match(stateless.stderr, /^pxeherd: 2 of 2 node\(s\) cannot be rolled back \(nothing was changed\):\n {2}d1 has no install on its disk .*\n {2}s1 is not installed to disk \(install=stateless\): a rollback reinstalls a disk/);
  assert.equal((await cli(['node', 'rollback', 'ghost'], s.config)).code, 2);
  assert.equal(dumpDb(s.statedir), before0, 'a refused rollback changes nothing');

  // Install r1 (pinned), then follow current (r2): the disk holds r2, r1 before it.
  for (const [vnfs, want] of [['deb@1', 'installed deb r1'], ['deb', 'installed deb r2']] as const) {
    assert.equal((await cli(['node', 'set', 'vnfs', vnfs, 'd1'], s.config)).code, 0);
    const r = await cli(['node', 'reinstall', 'd1', '--wait', '--timeout', '60', '--poll', '0.2'], s.config);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(machineSaw().at(-1), want);
  }
  assert.deepEqual(installed(), ['deb@2', 'deb@1']);
  assert.equal(store.nodes.byName('d1')!.boot, 'local', 'install.done set boot mode local');
  // A reinstall of the revision on the disk keeps the install before it as the rollback target.
  assert.equal((await cli(['node', 'reinstall', 'd1', '--wait', '--timeout', '60', '--poll', '0.2'], s.config)).code, 0);
  assert.deepEqual(installed(), ['deb@2', 'deb@1']);

  // CLI rollback with --wait: pinned to deb@1, the machine is told r1 and installs it.
  const since = Date.now();
  const rb = await cli(['node', 'rollback', 'd1', '--wait', '--timeout', '60', '--poll', '0.2'], s.config);
  assert.equal(rb.code, 0, rb.stdout + rb.stderr);
  assert.equal(machineSaw().at(-1), 'installed deb r1', 'the rendered nodescripts named the pinned revision');
  assert.match(rb.stdout, /^d1: rolling back deb r2 -> deb r1 \(vnfs deb -> deb@1\)$/m);
  assert.match(rb.stdout, /^NODE\s+ROLLBACK\s+RESULT\s+DETAIL\s+LAST EVENT\s+TIME$/m);
  assert.match(rb.stdout, /^d1\s+deb@2 -> deb@1\s+ready\s+checked in ready and answers SSH; its disk holds deb r1 \(before it: deb r2\)\s/m);
  assert.deepEqual(installed(), ['deb@1', 'deb@2'], 'current and previous swapped');
  assert.equal(store.nodes.byName('d1')!.vnfs, 'deb@1');
  assert.equal(store.nodes.byName('d1')!.boot, 'local');
  store.events.flush();
  const ev = store.events.query({ node: 'd1', since, order: 'asc', limit: 1000 });
  const rollbackEv = ev.find((e) => e.kind === 'install.rollback')!;
  assert.deepEqual(rollbackEv.detail, { from: 'deb@2', to: 'deb@1', vnfsBefore: 'deb', vnfsAfter: 'deb@1' });
  const kinds = ev.map((e) => e.kind);
  assert.ok(kinds.indexOf('install.rollback') < kinds.indexOf('reinstall.start') && kinds.indexOf('reinstall.start') < kinds.indexOf('install.done'), kinds.join(' '));
  assert.equal(ev.find((e) => e.kind === 'install.recorded')!.detail!.previous, 'deb@2');

  // REST: the second rollback returns the disk to where it started.
  const admin = fs.readFileSync(path.join(s.statedir, 'admin.token'), 'utf8').trim();
  const post = (p: string, token = admin) => fetch(`http://127.0.0.1:${ADMIN_PORT}/api/v1${p}`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  const rest = await post('/nodes/d1/rollback');
  assert.equal(rest.status, 200);
  const body = (await rest.json()) as Record<string, unknown>;
  assert.deepEqual(body, { node: 'd1', from: { vnfs: 'deb', rev: 1 }, to: { vnfs: 'deb', rev: 2 }, vnfs: { before: 'deb@1', after: 'deb@2' }, result: 'started', message: 'boot mode once, next boot PXE, power cycled' });
  await waitUntil(() => machineSaw().length === 5 && installed()[0] === 'deb@2');
  assert.equal(machineSaw().at(-1), 'installed deb r2');
  assert.deepEqual(installed(), ['deb@2', 'deb@1'], 'rolled back twice: where it started');

  // The UI offers it on the node page of a disk node with an earlier install, not on others.
  const page = async (n: string) => (await fetch(`http://127.0.0.1:${ADMIN_PORT}/ui/nodes/${n}`, { headers: { Authorization: `Bearer ${admin}` } })).text();
  assert.match(await page('d1'), /<button type="submit" id="rollback" [^>]*>Roll back disk to deb r1<\/button> <small>\(on the disk now: deb r2\)<\/small>/);
  assert.doesNotMatch(await page('s1'), /id="rollback"/);
  const csrf = /name="csrf" value="([^"]+)"/.exec(await page('d1'))![1]!;
  const form = (n: string) =>
    fetch(`http://127.0.0.1:${ADMIN_PORT}/ui/nodes/${n}`, { method: 'POST', redirect: 'manual', headers: { Authorization: `Bearer ${admin}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ action: 'rollback', csrf }).toString() });
  const ui = await form('d1');
  assert.equal(ui.status, 303);
  assert.equal(ui.headers.get('location'), '/ui/nodes/d1?changed=rollback');
  await waitUntil(() => machineSaw().length === 6 && installed()[0] === 'deb@1');
  assert.match(await (await fetch(`http://127.0.0.1:${ADMIN_PORT}/ui/nodes/d1?changed=rollback`, { headers: { Authorization: `Bearer ${admin}` } })).text(), /<p class="ok" id="changed">rolling back: pinned to deb@1, boot once, next boot from the network, power cycled/);
  const refusedUi = await form('s1');
  assert.equal(refusedUi.status, 409);
  assert.match(await refusedUi.text(), /s1 is not installed to disk/);
  // And back, without --wait: the CLI says it started; the machine installs r2 again.
  const started = await cli(['node', 'rollback', 'd1', '--json'], s.config);
  assert.equal(started.code, 0, started.stderr);
  assert.deepEqual(JSON.parse(started.stdout).results.map((r: { result: string; vnfsAfter: string }) => [r.result, r.vnfsAfter]), [['started', 'deb@2']]);
  await waitUntil(() => machineSaw().length === 7 && installed()[0] === 'deb@2');
  assert.deepEqual(installed(), ['deb@2', 'deb@1']);

  // A disk node whose power driver fails: pinned and set to boot once, the failure said (exit 1, 502).
  const M2 = '52:54:00:00:00:03';
  assert.equal((await cli(['node', 'add', M2, 'd2', '--vnfs', 'deb', '--set', 'install=disk', '--set', 'address=127.0.0.1'], s.config)).code, 0);
  for (const rev of [1, 2]) assert.equal((await fetch(`${MASTER}/node/report/install.done?mac=${M2}&rev=${rev}&vnfs=deb&disk=vda&firmware=bios`)).status, 200);
  const nopower = await cli(['node', 'rollback', 'd2', '--json'], s.config);
  assert.equal(nopower.code, 1);
  const res = JSON.parse(nopower.stdout).results[0];
  assert.deepEqual([res.result, res.stage, res.from, res.to], ['failed', 'power', { vnfs: 'deb', rev: 2 }, { vnfs: 'deb', rev: 1 }]);
  assert.match(res.message, /no power driver: set attr power=/);
  assert.match(nopower.stderr, /rollback: 1 of 1 node\(s\) did not power cycle \(each is pinned to it and set to boot once\): d2 \(failed at power\)/);
  assert.deepEqual([store.nodes.byName('d2')!.vnfs, store.nodes.byName('d2')!.boot], ['deb@1', 'once']);
  const uiBad = await form('d2');
  assert.equal(uiBad.status, 502);
  assert.match(await uiBad.text(), /Power cycle failed/);
  const bad = await post('/nodes/d2/rollback');
  assert.equal(bad.status, 502);
  assert.match(((await bad.json()) as { error: string }).error, /no power driver.*d2 is pinned to deb@1 and set to boot once/);
  const extra = await fetch(`http://127.0.0.1:${ADMIN_PORT}/api/v1/nodes/d2/rollback`, { method: 'POST', headers: { Authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: '{"wait":true}' });
  assert.equal(extra.status, 400);
  assert.equal(((await extra.json()) as { field: string }).field, 'wait');
  const conflict = await post('/nodes/s1/rollback');
  assert.equal(conflict.status, 409);
  assert.deepEqual(await conflict.json(), { error: 's1 is not installed to disk (install=stateless): a rollback reinstalls a disk with the revision installed before; a stateless node boots whatever its vnfs field selects (pxeherd node set vnfs NAME@REV s1)', field: 'node' });
  assert.equal((await post('/nodes/d1/rollback', fs.readFileSync(path.join(s.statedir, 'admin-readonly.token'), 'utf8').trim())).status, 403);

  // Its packed files are gone from the disk: refused, naming the file.
  const sq = path.join(s.statedir, 'vnfs/deb/r1/rootfs.squashfs');
  fs.renameSync(sq, `${sq}.aside`);
  const lost = await cli(['node', 'rollback', 'd1'], s.config);
  fs.renameSync(`${sq}.aside`, sq);
  assert.equal(lost.code, 2);
  assert.match(lost.stderr, /^pxeherd: d1: the install before deb r2 was deb r1, and revision 1 of VNFS "deb" is missing rootfs\.squashfs on disk: it cannot be installed again\./);

  // The revision to go back to is pruned (d2 no longer pins it): named, with what to do; nothing changes.
  assert.equal((await cli(['node', 'delete', 'd2'], s.config)).code, 0);
  const prune = await cli(['vnfs', 'prune', 'deb', '--keep', '0'], s.config);
  assert.equal(prune.code, 0, prune.stderr);
  const before = dumpDb(s.statedir);
  const gone = await cli(['node', 'rollback', 'd1'], s.config);
  assert.equal(gone.code, 2);
  assert.match(
    gone.stderr,
    /^pxeherd: d1: the install before deb r2 was deb r1, and revision 1 of VNFS "deb" was pruned on \d{4}-\d\d-\d\dT[\d:.]+Z \(vnfs prune\): it cannot be installed again\. Nothing was changed\. Pick a revision that exists \(pxeherd vnfs revisions deb\), then: pxeherd node set vnfs deb@REV d1 && pxeherd node reinstall d1\n$/,
  );
  assert.equal(dumpDb(s.statedir), before);
});

async function waitUntil(pred: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('REST lifecycle for a scheduler (VCL load/reclaim): power, reinstall with wait to ready, release with wipe; failures answer 502/504 with the outcome', { skip, timeout: 120_000 }, async (t) => {
  const { s, store, machineSaw } = await startLab(t);
  for (const [k, v] of [['power_status_cmd', 'echo Chassis Power is on'], ['power_off_cmd', 'echo Chassis Power Control: Down/Off']]) assert.equal((await cli(['group', 'set', 'disk', k, v], s.config)).code, 0);
  const admin = fs.readFileSync(path.join(s.statedir, 'admin.token'), 'utf8').trim();
  const readonly = fs.readFileSync(path.join(s.statedir, 'admin-readonly.token'), 'utf8').trim();
  const post = async (p: string, body: unknown, token = admin) => {
    const r = await fetch(`http://127.0.0.1:${ADMIN_PORT}/api/v1${p}`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };

  const st = await post('/nodes/d1/power', { action: 'status' });
  assert.equal(st.status, 200, JSON.stringify(st.body));
  assert.deepEqual([st.body.node, st.body.action, st.body.driver, st.body.ok, st.body.power], ['d1', 'status', 'command', true, 'on']);
  const bogus = await post('/nodes/d1/power', { action: 'explode' });
  assert.deepEqual([bogus.status, bogus.body.field], [400, 'action']);
  assert.match(String(bogus.body.error), /"action" must be one of on, off, cycle, status, pxe, not "explode"/);
  const nopower = await post('/nodes/s1/power', { action: 'on' });
  assert.equal(nopower.status, 502);
  assert.match(String(nopower.body.error), /^power on of s1 failed: no power driver/);

  // VCL's load: answers when the node checked in ready and answers SSH (the machine installs r1: d1 pins deb@1).
  const load = await post('/nodes/d1/reinstall', { wait: true, timeout: 60 });
  assert.equal(load.status, 200, JSON.stringify(load.body));
  assert.deepEqual([load.body.node, load.body.result, load.body.stage, load.body.message], ['d1', 'ready', 'ssh', 'checked in ready and answers SSH']);
  assert.equal(machineSaw().at(-1), 'installed deb r1');
  const started = await post('/nodes/d1/reinstall', {});
  assert.deepEqual([started.status, started.body.result], [200, 'started']);
  await waitUntil(() => machineSaw().length === 2);
  // A machine that never boots: 504 naming the stage it stopped at; no power driver: 502.
  assert.equal((await cli(['node', 'add', '52:54:00:00:00:09', 'd9', '--group', 'disk', '--vnfs', 'deb', '--set', 'power_cycle_cmd=true'], s.config)).code, 0);
  const dead = await post('/nodes/d9/reinstall', { wait: true, timeout: 1.5 });
  assert.equal(dead.status, 504, JSON.stringify(dead.body));
  assert.deepEqual([dead.body.result, dead.body.stage], ['timeout', 'power']);
  assert.match(String(dead.body.error), /^reinstall of d9 timed out at power: timed out after 1\.5 s: no progress after power/);
  const cannot = await post('/nodes/s1/reinstall', { wait: true });
  assert.deepEqual([cannot.status, cannot.body.result, cannot.body.stage], [502, 'failed', 'power']);
  assert.deepEqual([(await post('/nodes/d1/reinstall', { wait: 'yes' })).status, (await post('/nodes/d1/reinstall', { timeout: -1 })).status], [400, 400]);

  // VCL's reclaim: marked (boot once, wipe) and powered off.
  const rel = await post('/nodes/d1/release', { wipe: 'full' });
  assert.equal(rel.status, 200, JSON.stringify(rel.body));
  assert.deepEqual(rel.body, { node: 'd1', boot: 'once', wipe: true, wipeMode: 'full', power: 'off', error: null });
  assert.deepEqual([store.nodes.byName('d1')!.boot, store.nodes.byName('d1')!.attrs.wipe_on_boot], ['once', 'full']);
  const relBad = await post('/nodes/s1/release', { wipe: true });
  assert.equal(relBad.status, 502);
  assert.match(String(relBad.body.error), /^s1 is marked to be provisioned on its next boot \(wipe quick\) but did not power off: no power driver/);
  assert.equal(store.nodes.byName('s1')!.attrs.wipe_on_boot, 'yes');
  assert.equal((await post('/nodes/d1/release', { wipe: 'maybe' })).status, 400);
  for (const p of ['/nodes/d1/power', '/nodes/d1/reinstall', '/nodes/d1/release']) assert.equal((await post(p, {}, readonly)).status, 403, `${p} needs the admin token`);
  store.events.flush();
  const kinds = store.events.query({ node: 'd1', order: 'asc', limit: 1000 }).map((e) => e.kind);
  for (const k of ['power.status', 'reinstall.start', 'reinstall.end', 'release.done', 'power.off']) assert.ok(kinds.includes(k), `event ${k} on d1's timeline`);
});
