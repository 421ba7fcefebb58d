// The same commands against Debian's OpenSSH server (not ssh2's), inside namespace phssh1
// at 10.82.0.18 (10.82.0.16/28), with a Linux bridge in the namespace playing the switch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { makeStateDir } from '../helpers/cli.js';
import { ensureKey } from '../../src/remote/keys.js';
import { canUseNetns, cli } from './remote-fixture.js';

const SSHD = '/usr/sbin/sshd';
const NS = 'phssh1';
const ADDR = '10.82.0.18';

function skipReason(): string | undefined {
  const ns = canUseNetns();
  if (ns) return ns;
  if (!fs.existsSync(SSHD)) return `needs Debian openssh-server (${SSHD}): apt-get install -y openssh-server`;
  return undefined;
}

const ip = (...a: string[]) => execFileSync('ip', a, { stdio: 'pipe' });
const inNs = (...a: string[]) => execFileSync('ip', ['netns', 'exec', NS, ...a], { stdio: 'pipe', encoding: 'utf8' });

function teardown(): void {
  for (const a of [['link', 'del', 'phsshh1'], ['netns', 'del', NS]]) {
    try {
      ip(...a);
    } catch {
      /* not there */
    }
  }
}

async function waitListening(host: string, port: number, ms: number): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect({ host, port, timeout: 500 }, () => {
        s.destroy();
        res(true);
      });
      s.on('error', () => res(false));
      s.on('timeout', () => {
        s.destroy();
        res(false);
      });
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`sshd did not listen on ${host}:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Namespace + veth + bridge with two ports, sshd inside; returns whether the kernel filters VLANs. */
async function startLab(t: import('node:test').TestContext, dir: string, authorizedKey: string): Promise<{ vlanFiltering: boolean; log: () => string }> {
  teardown();
  t.after(teardown);
  ip('netns', 'add', NS);
  ip('link', 'add', 'phsshh1', 'type', 'veth', 'peer', 'name', 'phsshn1', 'netns', NS);
  ip('addr', 'add', '10.82.0.17/28', 'dev', 'phsshh1');
  ip('link', 'set', 'phsshh1', 'up');
  ip('-n', NS, 'addr', 'add', `${ADDR}/28`, 'dev', 'phsshn1');
  ip('-n', NS, 'link', 'set', 'phsshn1', 'up');
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  ip('-n', NS, 'link', 'add', 'br0', 'type', 'bridge');
  let vlanFiltering = true;
  try {
    ip('-n', NS, 'link', 'set', 'br0', 'type', 'bridge', 'vlan_filtering', '1');
  } catch {
    vlanFiltering = false;
  }
  for (const p of ['swp1', 'swp2']) {
    ip('-n', NS, 'link', 'add', p, 'type', 'veth', 'peer', 'name', `${p}x`);
    ip('-n', NS, 'link', 'set', p, 'master', 'br0');
    ip('-n', NS, 'link', 'set', p, 'up');
  }
  ip('-n', NS, 'link', 'set', 'br0', 'up');

  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_ed25519')]);
  fs.writeFileSync(path.join(dir, 'authorized_keys'), authorizedKey + '\n', { mode: 0o600 });
  const cfg = path.join(dir, 'sshd_config');
  fs.writeFileSync(
    cfg,
    [
      `ListenAddress ${ADDR}:22`,
      `HostKey ${dir}/host_ed25519`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${dir}/sshd.pid`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  let log = '';
  const sshd: ChildProcess = spawn('ip', ['netns', 'exec', NS, SSHD, '-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  sshd.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  t.after(() => void sshd.kill('SIGTERM'));
  await waitListening(ADDR, 22, 10_000);
  return { vlanFiltering, log: () => log };
}

test('exec and deploy work against Debian OpenSSH: exit codes, output, key login, a real file on the head node, real bridge commands', async (t) => {
  const skip = skipReason();
  if (skip) return t.skip(skip);
  const s = makeStateDir();
  t.after(s.cleanup);
  const key = ensureKey(s.statedir);
  const lab = await startLab(t, s.dir, key.publicKey);
  const ok = async (args: string[]) => {
    const r = await cli(args, s.config);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  };
  await ok(['node', 'add', 'aa:bb:cc:00:06:01', 'real', '--ip', ADDR, '--group', 'infra']);

  const r = await cli(['exec', 'real', '--', 'echo out-$((6*7)); echo err >&2; exit 7'], s.config);
  assert.equal(r.code, 1, lab.log());
  assert.equal(r.stdout, 'real: out-42\n');
  assert.match(r.stderr, /^real: err$/m);
  assert.match(r.stderr, /exec: 1 node\(s\): exit 7: 1 \(real\)/);
  assert.match(lab.log(), /Accepted publickey for root from 10\.82\.0\.17 .* ED25519/, 'OpenSSH accepted the pxeherd key');

  await ok(['node', 'set', 'attr.ssh_user=nobody-here', 'real']);
  const denied = await cli(['exec', 'real', '--', 'true'], s.config);
  assert.equal(denied.code, 1);
  assert.match(denied.stderr, new RegExp(`real: ERROR: authentication failed for nobody-here@${ADDR.replace(/\./g, '\\.')}:22 \\(tried key .*id_ed25519\\)`));
  await ok(['node', 'set', 'attr.ssh_user=', 'real']);

  const target = path.join(s.dir, 'head', 'etc', 'machines.txt');
  await ok(['group', 'set', 'compute', 'vlan', '120']);
  await ok(['group', 'set', 'compute', 'head_node', 'real']);
  await ok(['group', 'set', 'compute', 'machines_path', target]);
  await ok(['node', 'set', 'attr.ssh_host=' + ADDR, 'real']);
  for (const [i, p] of [[1, 'swp1'], [2, 'swp2']] as const) {
    await ok(['node', 'add', `aa:bb:cc:00:06:1${i}`, `c${i}`, '--group', 'compute', '--ip', `10.0.0.${10 + i}`, '--set', 'switch=br', '--set', `port=${p}`, '--set', 'switch_kind=linux-bridge', '--set', `switch_host=${ADDR}`]);
  }
  const d = await cli(['group', 'deploy', 'compute', '--json'], s.config);
  if (lab.vlanFiltering) {
    assert.equal(d.code, 0, d.stderr);
    const vlans = JSON.parse(inNs('bridge', '-j', 'vlan', 'show')) as { ifname: string; vlans: { vlan: number; flags?: string[] }[] }[];
    for (const p of ['swp1', 'swp2']) {
      const v = vlans.find((x) => x.ifname === p)!.vlans.find((x) => x.vlan === 120);
      assert.deepEqual(v?.flags?.sort(), ['Egress Untagged', 'PVID'], `${p} is an access port in vlan 120`);
    }
    assert.equal(fs.readFileSync(target, 'utf8'), '# pxeherd machine list for group compute (vlan 120): MAC IP NAME\naa:bb:cc:00:06:11 10.0.0.11 c1\naa:bb:cc:00:06:12 10.0.0.12 c2\n');
  } else {
    // This kernel has no bridge VLAN filtering: the real `bridge` tool refuses, and the
    // deploy must say which switch and which command, with the tool's own words.
    assert.equal(d.code, 1);
    const rep = JSON.parse(d.stdout);
    assert.deepEqual(rep.switches[0].failed.command, 'bridge vlan add dev swp1 vid 120 pvid untagged');
    assert.match(rep.switches[0].failed.error, /^exit code 255: .*(Operation not supported|not supported)/i);
    assert.match(d.stderr, /pxeherd: deploy compute: switch br \(10\.82\.0\.18\): "bridge vlan add dev swp1 vid 120 pvid untagged" failed: exit code 255/);
    assert.equal(fs.existsSync(target), false, 'no machine list after a failed switch');
    // The head-node copy on its own (no switch ports): a real file written through OpenSSH.
    await ok(['node', 'set', 'attr.switch=', 'c1', 'c2']);
    const d2 = await cli(['group', 'deploy', 'compute'], s.config);
    assert.equal(d2.code, 0, d2.stderr);
    assert.equal(fs.readFileSync(target, 'utf8'), '# pxeherd machine list for group compute (vlan 120): MAC IP NAME\naa:bb:cc:00:06:11 10.0.0.11 c1\naa:bb:cc:00:06:12 10.0.0.12 c2\n');
  }
});
