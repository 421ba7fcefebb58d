import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { followBoot } from '../../src/lifecycle/stages.js';
import { reinstall, type ReinstallBackend } from '../../src/lifecycle/reinstall.js';
import { machinesText, planDeploy } from '../../src/deploy/plan.js';
import { BUILTIN_KINDS, loadKinds } from '../../src/deploy/kinds.js';
import type { BootEvent, Node } from '../../src/nodes/types.js';

const ev = (kind: string, detail: Record<string, unknown> = {}): BootEvent => ({ kind, detail });
const node = (name: string, extra: Partial<Node> = {}): Node =>
  ({ name, mac: `aa:bb:cc:dd:ee:${name.slice(-2).padStart(2, '0')}`, group: 'g', vnfs: '', enabled: true, debug: false, state: '', ip: '', lastContact: null, boot: 'provision', attrs: {}, createdAt: 0, updatedAt: 0, ...extra }) as Node;

test('boot progress only moves forward and stops at the ready check-in', () => {
  const p = followBoot([ev('dhcp.discover'), ev('http.ipxe'), ev('dhcp.discover'), ev('http.kernel'), ev('provision.start', { state: 'init' })]);
  assert.equal(p.stage, 'provision');
  assert.equal(p.label, 'provision init');
  assert.equal(p.ready, false);
  const r = followBoot([ev('provision.start', { state: 'init' }), ev('provision.end', { state: 'init', ok: true }), ev('provision.start', { state: 'ready' })]);
  assert.equal(r.ready, true);
  assert.equal(r.stage, 'ready');
});

test('a disk install is followed through its image, install and reboot stages (not minutes of "provision init"); a failed wipe ends the boot', () => {
  const base = [ev('dhcp.discover'), ev('http.initrd'), ev('provision.start', { state: 'init' }), ev('provision.end', { state: 'init', ok: true })];
  const at = (...more: BootEvent[]) => followBoot([...base, ...more]);
  assert.deepEqual([at(ev('image.download', { rev: 3 })).stage, at(ev('image.download', { rev: 3 })).label], ['image', 'image r3']);
  assert.equal(at(ev('image.download', { rev: 3 }), ev('install.start', { rev: 3, disk: 'vda' })).label, 'install to disk vda');
  assert.equal(at(ev('install.start', { disk: 'vda' }), ev('install.write', { bytes: 1 })).label, 'install: image written, configuring and installing the boot loader');
  // The reboot into the disk repeats DHCP and iPXE: the label stays until the OS checks in.
  const rebooting = at(ev('install.start', { disk: 'vda' }), ev('install.done', { rev: 3 }), ev('dhcp.discover'), ev('http.ipxe'));
  assert.deepEqual([rebooting.stage, rebooting.label, rebooting.ready], ['install', 'installed, booting from its disk', false]);
  assert.equal(at(ev('install.done', { rev: 3 }), ev('dhcp.discover'), ev('provision.start', { state: 'ready' })).ready, true);
  assert.equal(at(ev('image.switch_root', { rev: 3 })).label, 'image mounted, starting its init');
  const wipe = at(ev('wipe.fail', { disk: 'vdb', error: 'writing zeros at sector 0 failed: I/O error' }));
  assert.equal(wipe.failure, 'wiping disk vdb failed: writing zeros at sector 0 failed: I/O error');
});

test('a failed nodescript ends the boot with its name and reason; one run with on_error=continue does not', () => {
  const f = followBoot([ev('provision.start', { state: 'init' }), ev('nodescript.fail', { script: 'init/all/50-x', reason: 'exit code 1', onError: 'abort' }), ev('provision.end', { state: 'init', ok: false })]);
  assert.equal(f.failure, 'nodescript init/all/50-x failed (exit code 1)');
  assert.equal(f.last?.kind, 'nodescript.fail');
  const c = followBoot([ev('nodescript.fail', { script: 'init/all/10-y', reason: 'exit code 2', onError: 'continue' }), ev('provision.end', { state: 'init', ok: true })]);
  assert.equal(c.failure, undefined);
  const e = followBoot([ev('provision.end', { state: 'init', ok: false, failed: ['init/node/n1/20-z'] })]);
  assert.equal(e.failure, 'provision init failed (scripts: init/node/n1/20-z)');
});

/** A backend with a clock the test moves: no sleeping, no sockets. */
function fakeBackend(script: Record<string, [at: number, e: BootEvent][]>, opts: { sshOkAt?: Record<string, number>; powerFails?: string[]; pxeFails?: string[] } = {}) {
  let now = 1_000_000;
  const start = now;
  const recorded: BootEvent[] = [];
  let once: string[] = [];
  const b: ReinstallBackend = {
    setBootOnce: (ns) => void (once = ns.map((n) => n.name)),
    setBootPxe: async (n) => ({ node: n.name, action: 'pxe', driver: 'command', ok: !opts.pxeFails?.includes(n.name), output: '', error: opts.pxeFails?.includes(n.name) ? 'ipmitool: exit code 1' : undefined, ms: 1 }),
    powerCycle: async (n) => ({ node: n.name, action: 'cycle', driver: 'command', ok: !opts.powerFails?.includes(n.name), output: '', error: opts.powerFails?.includes(n.name) ? 'pdu.sh: exit code 1' : undefined, ms: 1 }),
    eventsSince: (n) => (script[n.name] ?? []).filter(([at]) => start + at <= now).map(([, e]) => e),
    probeSsh: async (n) => {
      const at = opts.sshOkAt?.[n.name];
      if (at === undefined || start + at > now) throw new Error('cannot connect: connection refused');
    },
    record: (e) => void recorded.push(e),
    now: () => now,
    sleep: async (ms) => void (now += ms),
  };
  return { b, recorded, once: () => once };
}

test('reinstall reports ready, failed at a stage with the failing script, and timed out at the last stage reached', async () => {
  const { b, recorded, once } = fakeBackend(
    {
      n01: [[1000, ev('dhcp.discover')], [2000, ev('http.kernel')], [3000, ev('provision.start', { state: 'init' })], [9000, ev('provision.start', { state: 'ready' })]],
      n02: [[1000, ev('dhcp.ack', { ip: '10.0.0.2' })], [5000, ev('nodescript.fail', { script: 'init/all/50-x', reason: 'timed out after 60 s' })]],
      n03: [[1500, ev('dhcp.discover')], [2500, ev('tftp.done', { file: 'undionly.kpxe' })]],
    },
    { sshOkAt: { n01: 15_000 } },
  );
  const lines: string[] = [];
  const res = await reinstall([node('n01'), node('n02'), node('n03')], b, { wait: true, timeoutMs: 30_000, parallel: 2, pollMs: 1000, sshEveryMs: 2000, onProgress: (l) => lines.push(l) });
  assert.deepEqual(once(), ['n01', 'n02', 'n03']);
  assert.deepEqual(
    res.map((r) => [r.node, r.result, r.stage, r.message]),
    [
      ['n01', 'ready', 'ssh', 'checked in ready and answers SSH'],
      ['n02', 'failed', 'dhcp', 'nodescript init/all/50-x failed (timed out after 60 s)'],
      ['n03', 'timeout', 'tftp', 'timed out after 30 s: no progress after tftp'],
    ],
  );
  assert.equal(res[2]!.lastEvent, 'tftp.done undionly.kpxe');
  assert.ok(res[0]!.seconds >= 15 && res[0]!.seconds <= 18, `ready once SSH answers (${res[0]!.seconds} s)`);
  assert.equal(res[2]!.seconds, 30);
  assert.ok(lines.includes('n01: checked in ready, waiting for SSH'));
  assert.deepEqual(recorded.filter((e) => e.kind !== 'reinstall.start').map((e) => [e.node, e.kind]).sort(), [['n01', 'reinstall.end'], ['n02', 'reinstall.fail'], ['n03', 'reinstall.fail']]);
});

test('a node that checks in ready but never answers SSH times out at stage ssh with the SSH error', async () => {
  const { b } = fakeBackend({ n04: [[1000, ev('provision.start', { state: 'ready' })]] });
  const lines: string[] = [];
  const [r] = await reinstall([node('n04')], b, { wait: true, timeoutMs: 10_000, parallel: 1, pollMs: 500, heartbeatMs: 5000, onProgress: (l) => lines.push(l) });
  assert.deepEqual(lines, ['n04: next boot from the network (once)', 'n04: power cycled (command), waiting for DHCP', 'n04: checked in ready, waiting for SSH', 'waiting for 1 node(s) (6 s): n04 at ssh', 'n04: timed out at ssh']);
  assert.equal(r!.result, 'timeout');
  assert.equal(r!.stage, 'ssh');
  assert.equal(r!.message, 'timed out after 10 s: no SSH login: cannot connect: connection refused');
});

test('a failed power cycle ends that node at stage power without waiting', async () => {
  const { b } = fakeBackend({}, { powerFails: ['n05'] });
  const [r] = await reinstall([node('n05')], b, { wait: true, timeoutMs: 60_000, parallel: 1 });
  assert.deepEqual([r!.result, r!.stage, r!.message, r!.seconds], ['failed', 'power', 'power cycle failed: pdu.sh: exit code 1', 0]);
});

test('reinstall sets the next boot to PXE before the power cycle; when that fails the node is not cycled', async () => {
  const { b } = fakeBackend({}, { pxeFails: ['n06'] });
  const calls: string[] = [];
  const cycle = b.powerCycle;
  const pxe = b.setBootPxe;
  b.powerCycle = (n) => (calls.push(`cycle ${n.name}`), cycle(n));
  b.setBootPxe = (n) => (calls.push(`pxe ${n.name}`), pxe(n));
  const res = await reinstall([node('n06'), node('n07')], b, { wait: false, timeoutMs: 60_000, parallel: 1 });
  assert.deepEqual(calls, ['pxe n06', 'pxe n07', 'cycle n07']);
  assert.deepEqual(res.map((r) => [r.node, r.result, r.stage, r.message]), [
    ['n06', 'failed', 'power', 'setting the next boot to PXE failed (nothing was power cycled): ipmitool: exit code 1'],
    ['n07', 'started', 'power', 'boot mode once, next boot PXE, power cycled'],
  ]);
});

test('the deploy plan groups ports by switch, renders each kind, and lists the machines sorted by name', () => {
  const m = (name: string, attrs: Record<string, string>, ip = '') => ({ node: node(name, { ip }), attrs });
  const plan = planDeploy({
    group: 'hpc',
    groupAttrs: { vlan: '42', head_node: 'h1' },
    members: [m('n12', { switch: 'leaf1', port: 'swp12', switch_kind: 'linux-bridge', switch_host: '10.1.0.1' }, '10.0.0.12'), m('n03', { switch: 'core', port: 'Te1/1' }), m('n07', { switch: 'leaf1', switch_kind: 'linux-bridge' })],
    switches: { core: { host: '10.1.0.2', kind: 'ios', user: 'admin' } },
    kinds: BUILTIN_KINDS,
  });
  assert.equal(plan.vlan, 42);
  assert.equal(plan.headNode, 'h1');
  assert.deepEqual(plan.switches.map((s) => [s.switch.name, s.switch.host, s.switch.user, s.switch.source, s.commands.length]), [
    ['core', '10.1.0.2', 'admin', 'switches.yaml', 4 + 5 + 3],
    ['leaf1', '10.1.0.1', 'root', 'attributes', 1],
  ]);
  assert.deepEqual(plan.switches[1]!.commands, ['bridge vlan add dev swp12 vid 42 pvid untagged']);
  assert.deepEqual(plan.skipped, [{ node: 'n07', reason: 'switch leaf1 but no port attribute' }]);
  assert.equal(machinesText(plan), '# pxeherd machine list for group hpc (vlan 42): MAC IP NAME\naa:bb:cc:dd:ee:03 - n03\naa:bb:cc:dd:ee:07 - n07\naa:bb:cc:dd:ee:12 10.0.0.12 n12\n');
  assert.throws(() => planDeploy({ group: 'hpc', groupAttrs: { vlan: '5000' }, members: [], switches: {}, kinds: BUILTIN_KINDS }), /vlan must be 1-4094, not "5000"/);
  assert.throws(() => planDeploy({ group: 'hpc', groupAttrs: { vlan: '5' }, members: [m('n1', { switch: 'x', port: 'p1' })], switches: {}, kinds: BUILTIN_KINDS }), /switch x has no kind/);
  assert.throws(() => planDeploy({ group: 'hpc', groupAttrs: { vlan: '5' }, members: [m('n1', { switch: 'x', port: 'p1;reboot', switch_kind: 'ios' })], switches: {}, kinds: BUILTIN_KINDS }), /port "p1;reboot" is not a switch port name/);
});

test('switch kinds can be added in <statedir>/switch-kinds.yaml; a bad one is refused with its key', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-kinds-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'switch-kinds.yaml'), 'junos:\n  mode: shell\n  begin: [configure]\n  port: ["set interfaces {{port}} unit 0 family ethernet-switching vlan members {{vlan}}"]\n  end: [commit and-quit]\n  error: "^error:"\n');
  const kinds = loadKinds(dir);
  assert.deepEqual(Object.keys(kinds).sort(), ['ios', 'junos', 'linux-bridge']);
  assert.equal(kinds.junos!.error!.test('x\nerror: syntax'), true);
  fs.writeFileSync(path.join(dir, 'switch-kinds.yaml'), 'bad:\n  mode: telnet\n  port: [x]\n');
  assert.throws(() => loadKinds(dir), /switch-kinds\.yaml: bad\.mode: /);
});
