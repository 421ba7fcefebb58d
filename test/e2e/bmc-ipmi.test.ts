/**
 * The ipmi power driver against a real IPMI LAN endpoint: OpenIPMI's ipmi_sim in the lab's
 * server namespace, wired to a real QEMU machine (test/lab/bmc.ts). pxeherd's CLI runs
 * ipmitool -I lanplus with the password from <statedir>/secrets/; `pxeherd serve` answers the
 * machine's network boot in the same namespace, so a PXE boot set through the BMC shows up in
 * pxeherd's own event log.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, labUnavailable, tmpDir, waitFor, type Lab } from '../lab/lab.js';
import { startServe, stopServe } from '../lab/serve.js';
import { startSimBmc, type SimBmc } from '../lab/bmc.js';
import { CLI, pxeherd } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';

const why =
  labUnavailable(['qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'ss']) ??
  (fs.existsSync('/usr/lib/ipxe/qemu/pxe-e1000.rom') ? undefined : 'needs ipxe-qemu (Debian package)') ??
  (fs.existsSync(CLI) ? undefined : `${CLI} is missing: run "npm run build" first`);

const MAC = '52:54:00:b3:00:01';
const PASSWORD = 'Lab-9c1e2f7a';

interface Ctx {
  lab: Lab;
  dir: string;
  config: string;
  statedir: string;
  bmc: SimBmc;
  server?: ChildProcess;
}

/** `pxeherd ARGS` inside the lab's server namespace, where the BMC's network is. */
function cli(c: Ctx, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', c.lab.ns, process.execPath, CLI, ...args, '--config', c.config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** ipmitool itself, to read back what pxeherd set. */
function ipmitool(c: Ctx, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', c.lab.ns, 'ipmitool', '-I', 'lanplus', '-C', '3', '-H', c.bmc.host, '-U', 'admin', '-E', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, IPMI_PASSWORD: PASSWORD } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`ipmitool ${args.join(' ')}: exit ${code}: ${out}`))));
  });
}

function events(c: Ctx, o: { since?: number; kind?: string; mac?: string } = {}) {
  const s = Store.open(c.statedir);
  try {
    return s.events.query({ mac: o.mac, since: o.since, kind: o.kind, order: 'asc', limit: 10000 });
  } finally {
    s.close();
  }
}

describe('ipmi power driver against ipmi_sim driving a QEMU machine', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;

  before(async () => {
    c.dir = tmpDir('pxeherd-bmc-');
    c.statedir = path.join(c.dir, 'var');
    c.config = path.join(c.dir, 'pxeherd.yaml');
    c.lab = createLab({ name: 'phbmc', subnet: '10.78.0' });
    c.bmc = await startSimBmc({ lab: c.lab, dir: c.dir, user: 'admin', password: PASSWORD, mac: MAC, memMb: 512, diskMb: 8192, diskSerial: 'PXEHERDBMC1' });
    fs.writeFileSync(
      c.config,
      `statedir: ${c.statedir}
interface: br0
address: ${c.lab.serverIp}
dhcp: { mode: full, range: [10.78.0.100, 10.78.0.150], router: 10.78.0.1, lease_seconds: 600 }
tftp: { port: 69 }
http: { port: 8080 }
provisiond: { port: 0 }
admin: { port: 0 }
`,
    );
    // The stage-one image (kernel + initrd) the machine boots: it reports its hardware, runs
    // the init nodescripts, checks in ready and powers itself off.
    const b = pxeherd(['stage1', 'build', '--json'], { config: c.config });
    assert.equal(b.code, 0, `stage1 build failed: ${b.stderr}`);
    fs.mkdirSync(path.join(c.statedir, 'secrets'), { recursive: true });
    fs.writeFileSync(path.join(c.statedir, 'secrets', 'bmc-lab'), PASSWORD + '\n', { mode: 0o600 });
    fs.writeFileSync(path.join(c.statedir, 'secrets', 'bmc-old'), 'Not-the-pw-42\n', { mode: 0o600 });
    const bmcAttrs = ['--set', 'power=ipmi', '--set', `bmc_host=${c.bmc.host}`, '--set', 'bmc_user=admin', '--set', 'ipmi_cipher=3'];
    for (const [mac, name, pw, host] of [
      [MAC, 'vm1', 'bmc-lab', c.bmc.host],
      ['52:54:00:b3:00:02', 'badpw', 'bmc-old', c.bmc.host],
      ['52:54:00:b3:00:03', 'gone', 'bmc-lab', '10.78.0.99'],
    ] as const) {
      const r = await cli(c, ['node', 'add', mac, name, ...bmcAttrs, '--set', `bmc_password_file=${pw}`, '--set', `bmc_host=${host}`]);
      assert.equal(r.code, 0, r.stderr);
    }
    const log = path.join(c.dir, 'server.log');
    c.server = await startServe(c.lab, c.config, log, ['dhcp', 'http'], 20_000);
  });

  after(async () => {
    await stopServe(c.server);
    c.bmc?.stop();
    c.lab?.destroy();
    if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(c.dir, { recursive: true, force: true });
  });

  test('status off -> on starts the machine (disk boot: no override) -> cycle restarts it -> off stops it', async () => {
    const st = await cli(c, ['power', 'status', 'vm1']);
    assert.equal(st.code, 0, st.stderr);
    assert.equal(st.stdout, 'vm1: off\n');
    assert.equal(c.bmc.vmPid(), undefined);

    const on = await cli(c, ['power', 'on', 'vm1']);
    assert.equal(on.code, 0, on.stderr + on.stdout);
    assert.equal(on.stdout, 'vm1: on ok\n');
    const pid1 = await waitFor('QEMU to run', 10_000, () => c.bmc.vmPid());
    const js = JSON.parse((await cli(c, ['power', 'status', 'vm1', '--json'])).stdout);
    assert.equal(js.results[0].power, 'on');
    assert.equal(js.results[0].output, 'Chassis Power is on');
    // No boot override: the BIOS tries the (empty) disk only and never asks pxeherd's DHCP.
    await waitFor('SeaBIOS to give up on the empty disk', 60_000, () => /No bootable device/.test(c.bmc.console()));
    assert.equal(events(c, { mac: MAC, kind: 'dhcp' }).length, 0, 'no network boot without the PXE override');

    const cyc = await cli(c, ['power', 'cycle', 'vm1']);
    assert.equal(cyc.code, 0, cyc.stderr + cyc.stdout);
    const pid2 = await waitFor('a new QEMU process after the cycle', 15_000, () => {
      const p = c.bmc.vmPid();
      return p && p !== pid1 ? p : undefined;
    });
    assert.notEqual(pid2, pid1);
    assert.equal((await cli(c, ['power', 'status', 'vm1'])).stdout, 'vm1: on\n');

    const off = await cli(c, ['power', 'off', 'vm1']);
    assert.equal(off.code, 0, off.stderr + off.stdout);
    await waitFor('QEMU to stop', 10_000, () => c.bmc.vmPid() === undefined);
    assert.equal((await cli(c, ['power', 'status', 'vm1'])).stdout, 'vm1: off\n');
    const kinds = events(c, { mac: MAC, kind: 'power' }).map((e) => e.kind);
    assert.deepEqual(kinds.filter((k) => k !== 'power.status'), ['power.on', 'power.cycle', 'power.off']);
  });

  test('power pxe sets a one-time network boot: read back as Force PXE, the next power on PXE-boots into pxeherd, then the flag is gone', async () => {
    const before = await ipmitool(c, ['chassis', 'bootparam', 'get', '5']);
    assert.match(before, /Boot Device Selector : No override/);
    const px = await cli(c, ['power', 'pxe', 'vm1']);
    assert.equal(px.code, 0, px.stderr + px.stdout);
    assert.equal(px.stdout, 'vm1: next boot from the network (once)\n');
    assert.match(await ipmitool(c, ['chassis', 'bootparam', 'get', '5']), /Boot Device Selector : Force PXE/);

    const since = Date.now();
    assert.equal((await cli(c, ['power', 'on', 'vm1'])).code, 0);
    // The machine's NIC ROM (iPXE) asks pxeherd's DHCP server: the boot device reached the VM.
    const ev = await waitFor('the PXE boot to reach pxeherd (DHCP, then its boot script)', 120_000, () => {
      const e = events(c, { mac: MAC, since });
      return e.some((x) => x.kind === 'http.ipxe') ? e : undefined;
    });
    assert.ok(ev.some((e) => e.kind === 'dhcp.discover') && ev.some((e) => e.kind === 'dhcp.ack'), 'DHCP DISCOVER and ACK from the machine');
    assert.match(c.bmc.console(), /iPXE/);
    assert.match(await ipmitool(c, ['chassis', 'bootparam', 'get', '5']), /Boot Device Selector : No override/, 'used once, then cleared');
    assert.ok(c.bmc.chassis().includes('start order=n'));
    assert.equal((await cli(c, ['power', 'off', 'vm1'])).code, 0);
    await waitFor('QEMU to stop', 10_000, () => c.bmc.vmPid() === undefined);
  });

  test('a wrong password is refused by the BMC: one clear line naming the BMC, the user and the secret file, and a power.fail event', async () => {
    const r = await cli(c, ['power', 'on', 'badpw']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^badpw: FAILED: BMC 10\.78\.0\.1:623 refused the login for user admin \(wrong password: ipmitool says "RAKP 2 HMAC is invalid"\): check bmc_user and the password in <statedir>\/secrets\/bmc-old$/m);
    assert.match(r.stderr, /power on: 1 of 1 node\(s\) failed: badpw/);
    assert.equal(c.bmc.vmPid(), undefined, 'nothing was powered on');
    const fails = events(c, { mac: '52:54:00:b3:00:02', kind: 'power' });
    assert.deepEqual(fails.map((e) => [e.kind, e.detail?.action, e.detail?.ok]), [['power.fail', 'on', false]]);
    assert.ok(!JSON.stringify(fails).includes('Not-the-pw-42') && !r.stdout.includes('Not-the-pw-42'), 'the password is in no output or event');
  });

  test('an unreachable BMC times out at --timeout with a message that says what to check', async () => {
    const r = await cli(c, ['power', 'status', 'gone', '--timeout', '4', '--json']);
    assert.equal(r.code, 1);
    const res = JSON.parse(r.stdout).results[0];
    assert.equal(res.ok, false);
    assert.equal(res.error, 'BMC 10.78.0.99:623 did not answer within 4 s: check bmc_host and bmc_port, that the BMC is reachable from this server and that IPMI over LAN is enabled on it');
    assert.equal(events(c, { mac: '52:54:00:b3:00:03', kind: 'power.fail' }).length, 1);
  });

  test('reinstall --wait sets boot once and the BMC boot device to PXE, power-cycles the real machine, follows it through every stage and times out at ssh, the last stage seen', async () => {
    const mark = c.bmc.chassis().length;
    const since = Date.now();
    const r = await cli(c, ['node', 'reinstall', 'vm1', '--wait', '--timeout', '120']);
    assert.equal(r.code, 1, r.stderr);
    process.stderr.write(r.stdout.replace(/^/gm, 'reinstall: ') + '\n');
    // Stage one checks in ready and powers the machine off: no SSH server ever answers.
    const row = r.stdout.split('\n').find((l) => l.startsWith('vm1 ')) ?? '';
    assert.match(row, /^vm1\s+timed out at ssh\s+timed out after 120 s: no SSH login: .*provision\.start state ready/, r.stdout);
    const progress = r.stdout.split('\n').filter((l) => l.startsWith('vm1: ')).map((l) => l.slice(5).replace(/ \(.*\)$/, ''));
    assert.deepEqual(progress.slice(0, 2), ['next boot from the network', 'power cycled (ipmi), waiting for DHCP'], progress.join(' | '));
    // Polling may step over a stage between two looks; what is shown only moves forward.
    const order = ['dhcp', 'tftp', 'ipxe', 'kernel', 'initrd', 'provision init', 'checked in ready, waiting for SSH', 'timed out at ssh'];
    const seen = progress.slice(2).map((l) => order.indexOf(l));
    assert.ok(seen.every((i) => i >= 0) && seen.every((x, i) => i === 0 || x > seen[i - 1]!), progress.join(' | '));
    assert.deepEqual(progress.slice(-2), ['checked in ready, waiting for SSH', 'timed out at ssh']);
    assert.ok(seen.length >= 3, `intermediate stages are shown: ${progress.join(' | ')}`);
    assert.match(r.stderr, /reinstall: 1 of 1 node\(s\) did not reach ready: vm1 \(timed out at ssh\)/);
    const calls = c.bmc.chassis().slice(mark);
    const bootAt = calls.indexOf('set boot pxe');
    const startAt = calls.indexOf('start order=n');
    assert.ok(bootAt >= 0 && startAt > bootAt, `boot device before power: ${calls.join(' | ')}`);
    const kinds = events(c, { mac: MAC, since }).map((e) => e.kind);
    assert.ok(kinds.indexOf('power.pxe') >= 0 && kinds.indexOf('power.pxe') < kinds.indexOf('dhcp.discover'), kinds.join(' '));
    for (const k of ['http.kernel', 'http.initrd', 'provision.start', 'reinstall.fail']) assert.ok(kinds.includes(k), `${k} in ${kinds.join(' ')}`);
    await waitFor('the machine to power itself off', 60_000, () => c.bmc.vmPid() === undefined);
    assert.equal((await cli(c, ['power', 'status', 'vm1'])).stdout, 'vm1: off\n', 'power status follows the machine');
  });

  test('node plan works from the hardware report the real machine sent: its virtio disk by serial, BIOS boot partition, sfdisk script', async () => {
    assert.equal((await cli(c, ['node', 'set', 'attr.install_disk=serial:PXEHERDBMC1', 'vm1'])).code, 0);
    const r = await cli(c, ['node', 'plan', 'vm1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const p = JSON.parse(r.stdout);
    assert.deepEqual([p.firmware, p.disk.path, p.disk.sizeBytes, p.disk.serial], ['bios', '/dev/vda', 8192 * 1024 * 1024, 'PXEHERDBMC1']);
    assert.deepEqual(p.partitions.map((x: { name: string; device: string }) => [x.name, x.device]), [['bios_boot', '/dev/vda1'], ['root', '/dev/vda2']]);
    assert.equal((await cli(c, ['node', 'set', 'attr.install_swap=8G', 'vm1'])).code, 0);
    const big = await cli(c, ['node', 'plan', 'vm1']);
    assert.equal(big.code, 1);
    assert.match(big.stderr, /the plan does not fit vda: it needs 10\.0 GiB \(bios_boot 1 MiB, swap 8 GiB, root at least 2 GiB\) and the disk has 8 GiB/);
  });
});
