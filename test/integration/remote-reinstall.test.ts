import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeStateDir } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import { ensureKey } from '../../src/remote/keys.js';
import { cli, FakeSshd } from './remote-fixture.js';

// Ports 18320-18329 belong to this file.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a booting machine leaves in the event log, step by step (kinds as the servers record them). */
type Step = [kind: string, detail: Record<string, unknown>];
const BOOT: Step[] = [
  ['dhcp.discover', { arch: 0 }],
  ['dhcp.offer', { ip: '10.0.0.101' }],
  ['dhcp.ack', { ip: '10.0.0.101', boot: 'undionly.kpxe' }],
  ['tftp.done', { file: 'undionly.kpxe', bytes: 70000 }],
  ['http.ipxe', { path: '/boot/x.ipxe', status: 200 }],
  ['http.kernel', { vnfs: 'v1', file: 'vmlinuz', status: 200 }],
  ['http.initrd', { vnfs: 'v1', file: 'initrd.img', status: 200 }],
  ['provision.start', { state: 'init', via: 'http' }],
];
const READY: Step[] = [
  ['provision.end', { state: 'init', via: 'http', ok: true, scripts: 5, failed: [] }],
  ['provision.start', { state: 'ready', via: 'http' }],
  ['provision.end', { state: 'ready', via: 'http', ok: true, scripts: 0, failed: [] }],
];
const FAIL: Step[] = [
  ['nodescript.fail', { script: 'init/all/50-x', reason: 'exit code 1', code: 1, onError: 'abort', stderr: 'mkfs: no such device' }],
  ['provision.end', { state: 'init', via: 'http', ok: false, scripts: 3, failed: ['init/all/50-x'] }],
];

test('reinstall --wait follows each node to ready and SSH, names the failed nodescript, and reports a node that stalls as timed out', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const key = ensureKey(s.statedir);
  const store = Store.open(s.statedir);
  t.after(() => store.close());
  const macs: Record<string, string> = { r1: 'aa:bb:cc:00:03:01', r2: 'aa:bb:cc:00:03:02', r3: 'aa:bb:cc:00:03:03' };
  const plans: Record<string, Step[]> = { r1: [...BOOT, ...READY], r2: [...BOOT, ...FAIL], r3: BOOT.slice(0, 3) };
  const sims: Promise<void>[] = [];
  // The BMC: a power cycle starts the simulated boot of that node, as pulling power would.
  const bmc = await new FakeSshd({
    authorizedKeys: [key.publicKey],
    onExec: (c) => {
      const name = c.command.split(' ')[2]!;
      sims.push(
        (async () => {
          for (const [kind, detail] of plans[name] ?? []) {
            await sleep(200);
            store.events.record({ mac: macs[name], node: name, kind, detail });
          }
        })(),
      );
      return { stdout: 'Chassis Power Control: Cycle\n' };
    },
  }).listen(18320);
  t.after(() => bmc.close());
  const nodeSsh = await new FakeSshd({ authorizedKeys: [key.publicKey] }).listen(18321);
  t.after(() => nodeSsh.close());

  for (const [k, v] of Object.entries({ power: 'ssh', bmc_host: '127.0.0.1', bmc_port: '18320', power_cycle_cmd: 'power cycle {{node}}', ssh_host: '127.0.0.1', ssh_port: '18321' })) {
    assert.equal((await cli(['group', 'set', 'rack', k, v], s.config)).code, 0);
  }
  for (const [name, mac] of Object.entries(macs)) assert.equal((await cli(['node', 'add', mac, name, '--group', 'rack'], s.config)).code, 0);
  // A ready check-in from an earlier boot must not count for this reinstall.
  store.events.record({ mac: macs.r3, node: 'r3', kind: 'provision.start', detail: { state: 'ready' }, time: Date.now() - 60_000 });
  store.events.flush();

  const t0 = Date.now();
  const r = await cli(['node', 'reinstall', 'r*', '--wait', '--timeout', '5', '--poll', '0.1'], s.config);
  const took = Date.now() - t0;
  await Promise.all(sims);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.ok(took >= 5000 && took < 9000, `ends at the per-node timeout (${took} ms)`);

  // Progress lines as the nodes advance, in order for each node.
  const progress = (n: string) => r.stdout.split('\n').filter((l) => l.startsWith(`${n}: `) && !l.includes('has no power_pxe_cmd')).map((l) => l.slice(n.length + 2).replace(/ \((dhcp|tftp|http|provision)\..*\)$/, ""));
  // Polling may step over a stage between two looks; what is shown only moves forward.
  const order = ['power cycled (ssh), waiting for DHCP', 'dhcp', 'tftp', 'ipxe', 'kernel', 'initrd', 'provision init', 'checked in ready, waiting for SSH', 'ready'];
  const r1 = progress('r1').map((l) => l.replace(/^ready \(\d+(\.\d)? s\)$/, 'ready'));
  assert.deepEqual(r1.map((l) => order.indexOf(l)), [...r1.map((l) => order.indexOf(l))].sort((a, b) => a - b), r1.join(' | '));
  assert.ok(r1.every((l) => order.includes(l)), r1.join(' | '));
  assert.deepEqual([r1[0], ...r1.slice(-2)], [order[0], 'checked in ready, waiting for SSH', 'ready']);
  assert.ok(r1.length >= 4, `intermediate stages are shown as they are seen: ${r1.join(' | ')}`);
  assert.deepEqual(progress('r2').at(-1), 'FAILED at provision init: nodescript init/all/50-x failed (exit code 1)');
  assert.deepEqual(progress('r3').slice(-2), ['dhcp', 'timed out at dhcp']);

  const row = (n: string) => r.stdout.split('\n').find((l) => l.startsWith(`${n} `)) ?? '';
  assert.match(r.stdout, /^NODE\s+RESULT\s+DETAIL\s+LAST EVENT\s+TIME$/m);
  assert.match(row('r1'), /^r1\s+ready\s+checked in ready and answers SSH\s+provision\.start state ready · via http/);
  assert.match(row('r2'), /^r2\s+failed at provision\s+nodescript init\/all\/50-x failed \(exit code 1\)\s+nodescript\.fail init\/all\/50-x · exit code 1\s/);
  assert.match(row('r3'), /^r3\s+timed out at dhcp\s+timed out after 5 s: no progress after dhcp\s+dhcp\.ack ip 10\.0\.0\.101/);
  assert.match(r.stderr, /pxeherd: reinstall: 2 of 3 node\(s\) did not reach ready: r2 \(failed at provision\), r3 \(timed out at dhcp\)/);

  assert.deepEqual(bmc.commands().sort(), ['power cycle r1', 'power cycle r2', 'power cycle r3']);
  assert.ok(nodeSsh.calls.length >= 1 && nodeSsh.calls.every((c) => c.command === 'true' && c.auth === 'publickey' && c.user === 'root'), 'ready was confirmed by running true with the pxeherd key');
  const shown = JSON.parse((await cli(['node', 'show', 'r*', '--json'], s.config)).stdout);
  assert.deepEqual(shown.nodes.map((n: { boot: string }) => n.boot), ['once', 'once', 'once']);
  const marks = store.events.query({ kind: 'reinstall', order: 'asc' }).map((e) => `${e.node} ${e.kind} ${(e.detail as { result?: string }).result ?? ''}`.trim());
  assert.deepEqual(marks.filter((m) => !m.endsWith('start')).sort(), ['r1 reinstall.end ready', 'r2 reinstall.fail failed', 'r3 reinstall.fail timeout']);
});

test('reinstall without --wait sets boot once and power cycles (or powers on a node that is off); a node without a power driver fails at stage power', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const key = ensureKey(s.statedir);
  const bmc = await new FakeSshd({
    authorizedKeys: [key.publicKey],
    // a3 is off: this BMC, like many, refuses to cycle it.
    onExec: (c) => (c.command === 'power cycle a3' ? { exit: 1, stderr: 'cannot cycle: chassis is off\n' } : c.command === 'power status a3' ? { stdout: 'Power: off\n' } : {}),
  }).listen(18322);
  t.after(() => bmc.close());
  for (const [k, v] of Object.entries({ power: 'ssh', bmc_host: '127.0.0.1', bmc_port: '18322', power_cycle_cmd: 'power cycle {{node}}', power_status_cmd: 'power status {{node}}', power_on_cmd: 'power on {{node}}' })) {
    assert.equal((await cli(['group', 'set', 'rack', k, v], s.config)).code, 0);
  }
  await cli(['node', 'add', 'aa:bb:cc:00:04:01', 'a1', '--group', 'rack'], s.config);
  await cli(['node', 'add', 'aa:bb:cc:00:04:02', 'a2'], s.config);
  await cli(['node', 'add', 'aa:bb:cc:00:04:03', 'a3', '--group', 'rack'], s.config);
  const ok = await cli(['node', 'reinstall', 'a1', 'a3', '--json'], s.config);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(
    JSON.parse(ok.stdout).results.map((x: { node: string; result: string }) => [x.node, x.result]),
    [['a1', 'started'], ['a3', 'started']],
  );
  assert.deepEqual(bmc.commands().sort(), ['power cycle a1', 'power cycle a3', 'power on a3', 'power status a3']);
  const bad = await cli(['node', 'reinstall', 'a1', 'a2'], s.config);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /^a2\s+failed at power\s+setting the next boot to PXE failed \(nothing was power cycled\): no power driver: set attr power=ssh\|ipmi\|command\|redfish on the node or its group/m);
  const dis = await cli(['node', 'disable', 'a2'], s.config);
  assert.equal(dis.code, 0);
  const refused = await cli(['node', 'reinstall', 'a*'], s.config);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /a2 disabled: pxeherd node enable a2 first/);
});
