import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeStateDir } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import { ensureKey } from '../../src/remote/keys.js';
import { cli, FakeSshd } from './remote-fixture.js';

// Ports 18330-18339 belong to this file.
const IOS_PW = 'ios-Secret-0c41d7';

const IOS_LINES = [
  'configure terminal',
  'vlan 120',
  'name compute',
  'exit',
  'interface Gi1/0/3',
  'description c3',
  'switchport mode access',
  'switchport access vlan 120',
  'exit',
  'end',
  'write memory',
  'exit',
];
const LB_CMDS = ['bridge vlan add dev swp1 vid 120 pvid untagged', 'bridge vlan add dev swp2 vid 120 pvid untagged'];
const MACHINES = '# pxeherd machine list for group compute (vlan 120): MAC IP NAME\naa:bb:cc:00:05:01 10.0.0.11 c1\naa:bb:cc:00:05:02 10.0.0.12 c2\naa:bb:cc:00:05:03 - c3\naa:bb:cc:00:05:04 10.0.0.14 c4\n';

async function setup(t: import('node:test').TestContext, o: { iosFails?: string; lbFails?: string; base?: number } = {}) {
  const base = o.base ?? 18330;
  const s = makeStateDir();
  t.after(s.cleanup);
  const key = ensureKey(s.statedir);
  const lb = await new FakeSshd({ authorizedKeys: [key.publicKey], onExec: (c) => (c.command.includes(`dev ${o.lbFails} `) ? { exit: 255, stderr: `RTNETLINK answers: No such device\n` } : {}) }).listen(base);
  const ios = await new FakeSshd({ passwords: { netops: IOS_PW }, prompt: 'sw-ios(config)#', onShellLine: (l) => (l === o.iosFails ? "% Invalid input detected at '^' marker." : '') }).listen(base + 1);
  const head = await new FakeSshd({ authorizedKeys: [key.publicKey] }).listen(base + 2);
  t.after(() => Promise.all([lb.close(), ios.close(), head.close()]));
  fs.mkdirSync(path.join(s.statedir, 'secrets'), { recursive: true });
  fs.writeFileSync(path.join(s.statedir, 'secrets', 'ios'), IOS_PW + '\n', { mode: 0o600 });
  fs.writeFileSync(
    path.join(s.statedir, 'switches.yaml'),
    `sw-lb: { host: 127.0.0.1, ssh_port: ${base}, kind: linux-bridge, user: admin }\nsw-ios: { host: 127.0.0.1, ssh_port: ${base + 1}, kind: ios, user: netops, password_file: ios }\n`,
  );
  const ok = async (args: string[]) => {
    const r = await cli(args, s.config);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  };
  await ok(['group', 'set', 'compute', 'vlan', '120']);
  await ok(['group', 'set', 'compute', 'head_node', 'head']);
  await ok(['node', 'add', 'aa:bb:cc:00:05:00', 'head', '--group', 'infra', '--set', 'ssh_host=127.0.0.1', '--set', `ssh_port=${base + 2}`]);
  await ok(['node', 'add', 'aa:bb:cc:00:05:01', 'c1', '--group', 'compute', '--ip', '10.0.0.11', '--set', 'switch=sw-lb', '--set', 'port=swp1']);
  await ok(['node', 'add', 'aa:bb:cc:00:05:02', 'c2', '--group', 'compute', '--ip', '10.0.0.12', '--set', 'switch=sw-lb', '--set', 'port=swp2']);
  await ok(['node', 'add', 'aa:bb:cc:00:05:03', 'c3', '--group', 'compute', '--set', 'switch=sw-ios', '--set', 'port=Gi1/0/3', '--set', 'rack=r7', '--set', 'unit=12']);
  await ok(['node', 'add', 'aa:bb:cc:00:05:04', 'c4', '--group', 'compute', '--ip', '10.0.0.14']);
  const events = () => {
    const st = Store.open(s.statedir);
    try {
      return st.events.query({ kind: 'deploy', order: 'asc' });
    } finally {
      st.close();
    }
  };
  return { s, lb, ios, head, events, file: path.join(s.statedir, 'groups', 'compute', 'machines.txt') };
}

test('deploy --dry-run prints the exact switch commands and machine list and changes nothing', async (t) => {
  const { s, lb, ios, head, events, file } = await setup(t);
  const r = await cli(['group', 'deploy', 'compute', '--dry-run'], s.config);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    [
      'deploy group compute (vlan 120): dry run, nothing is changed',
      'switch sw-ios (ios, netops@127.0.0.1:18331, one console session):',
      ...IOS_LINES.map((l) => `  ${l}`),
      'switch sw-lb (linux-bridge, admin@127.0.0.1:18330, one command per exec):',
      ...LB_CMDS.map((l) => `  ${l}`),
      `machine list for ${file} and head:/etc/pxeherd/machines.txt:`,
      ...MACHINES.trimEnd().split('\n').map((l) => `  ${l}`),
      'skipped c4: no switch attribute',
      '',
    ].join('\n'),
  );
  const j = JSON.parse((await cli(['group', 'deploy', 'compute', '--dry-run', '--json'], s.config)).stdout);
  assert.deepEqual(j.switches.map((x: { switch: string; commands: string[] }) => [x.switch, x.commands]), [['sw-ios', IOS_LINES], ['sw-lb', LB_CMDS]]);
  assert.equal(lb.calls.length + ios.calls.length + head.calls.length, 0, 'no SSH command was sent');
  assert.equal(fs.existsSync(file), false, 'no machine list written');
  assert.deepEqual(events(), [], 'no deploy events');
});

test('deploy configures each switch over SSH, writes the machine list and copies it to the head node, recording events', async (t) => {
  const { s, lb, ios, head, events, file } = await setup(t);
  const r = await cli(['group', 'deploy', 'compute'], s.config);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /deployed group compute \(vlan 120\): 2 switch\(es\), 14 command\(s\); machine list .*machines\.txt, copied to head:\/etc\/pxeherd\/machines\.txt/);
  assert.deepEqual(lb.calls.map((c) => [c.user, c.auth, c.command]), LB_CMDS.map((c) => ['admin', 'publickey', c]));
  assert.deepEqual(ios.calls.map((c) => [c.user, c.auth, c.kind, c.command]), IOS_LINES.map((c) => ['netops', 'password', 'shell', c]));
  assert.deepEqual(head.calls.map((c) => [c.command, c.stdin]), [['mkdir -p /etc/pxeherd && cat > /etc/pxeherd/machines.txt', MACHINES]]);
  assert.equal(fs.readFileSync(file, 'utf8'), MACHINES);
  const ev = events();
  assert.deepEqual(ev.map((e) => e.kind), ['deploy.start', ...Array(14).fill('deploy.command'), 'deploy.command', 'deploy.end']);
  assert.deepEqual(ev[0]!.detail, { group: 'compute', vlan: 120, switches: ['sw-ios', 'sw-lb'], nodes: 4 });
  assert.deepEqual(ev.at(-1)!.detail, { group: 'compute', vlan: 120, ok: true, error: null });
  assert.ok(!JSON.stringify(ev).includes(IOS_PW) && !r.stdout.includes(IOS_PW));

  const loc = await cli(['node', 'locate', 'c3'], s.config);
  assert.equal(loc.stdout, 'c3: rack r7 unit 12, switch sw-ios port Gi1/0/3 (127.0.0.1, ios)\n');
  const lj = JSON.parse((await cli(['node', 'locate', 'c1', '--json'], s.config)).stdout);
  assert.deepEqual(lj, { node: 'c1', mac: 'aa:bb:cc:00:05:01', rack: null, unit: null, switch: 'sw-lb', port: 'swp1', switch_host: '127.0.0.1', switch_kind: 'linux-bridge' });
});

test('a deploy failing part way names the switch and the command, records deploy.fail and stops there', async (t) => {
  const { s, lb, ios, events, file } = await setup(t, { iosFails: 'switchport access vlan 120' });
  const r = await cli(['group', 'deploy', 'compute'], s.config);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /pxeherd: deploy compute: switch sw-ios \(127\.0\.0\.1\): "switchport access vlan 120" failed: switch said: % Invalid input detected at '\^' marker\./);
  assert.equal(lb.calls.length, 0, 'the next switch is not touched after a failure');
  assert.equal(fs.existsSync(file), false);
  const ev = events();
  const fail = ev.find((e) => e.kind === 'deploy.fail')!;
  assert.deepEqual(fail.detail, { group: 'compute', switch: 'sw-ios', command: 'switchport access vlan 120', error: "switch said: % Invalid input detected at '^' marker." });
  assert.deepEqual(ev.filter((e) => e.kind === 'deploy.command').map((e) => e.detail!.command), IOS_LINES.slice(0, 7));
  assert.equal(ev.at(-1)!.kind, 'deploy.end');
  assert.ok(ios.calls.length > 0);

});

test('a failing exec-mode switch command reports its exit status and output; earlier switches stay done', async (t) => {
  const t2 = await setup(t, { lbFails: 'swp2', base: 18333 });
  const r2 = await cli(['group', 'deploy', 'compute', '--json'], t2.s.config);
  assert.equal(r2.code, 1);
  const rep = JSON.parse(r2.stdout);
  assert.equal(rep.ok, false);
  assert.deepEqual(rep.switches.map((x: { switch: string; ok: boolean }) => [x.switch, x.ok]), [['sw-ios', true], ['sw-lb', false]]);
  assert.deepEqual(rep.switches[1].failed, { command: LB_CMDS[1], error: 'exit code 255: RTNETLINK answers: No such device' });
});

test('deploy refuses a group without vlan and two nodes claiming one port, before touching anything', async (t) => {
  const { s, lb } = await setup(t);
  assert.equal((await cli(['node', 'set', 'attr.port=swp1', 'c2'], s.config)).code, 0);
  const dup = await cli(['group', 'deploy', 'compute'], s.config);
  assert.equal(dup.code, 2);
  assert.match(dup.stderr, /nodes c1 and c2 both say they are on switch sw-lb port swp1/);
  assert.equal((await cli(['group', 'set', 'compute', 'vlan', ''], s.config)).code, 0);
  const nov = await cli(['group', 'deploy', 'compute', '--dry-run'], s.config);
  assert.equal(nov.code, 2);
  assert.match(nov.stderr, /group compute has no vlan attribute: pxeherd group set compute vlan <1-4094>/);
  assert.equal(lb.calls.length, 0);
});
