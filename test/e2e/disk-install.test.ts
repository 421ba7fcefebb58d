/**
 * Install to disk (issue 18) in QEMU with a virtio disk: a node with install=disk boots
 * pxeherd's stage one, which partitions its disk from the master's plan, writes the verified
 * revision of the shared Debian image onto it, configures it like a stateless root (host keys
 * kept on the master, network, check-in), installs GRUB, reports install.done and reboots; the
 * master then answers its network boot with boot mode local, and the machine boots its disk.
 * The test proves the running system is the disk's: /proc/cmdline is GRUB's (root=UUID=, no
 * pxeherd.url=) and / is the disk's root partition, read over SSH with the kept host key.
 * Failure paths: no disk matching install_disk, a plan that does not fit the disk — each
 * stops before anything is written, with the reason on the console and an install.fail event.
 * One VM at a time (TCG); the shared image of the run (test/lab/image.ts).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, labUnavailable, run, tmpDir, waitFor, which, type Lab } from '../lab/lab.js';
import { startVm, labAccel } from '../lab/qemu.js';
import { sharedDebianImage, cloneSharedImage, imageToolsMissing, SHARED_IMAGE_NAME } from '../lab/image.js';
import { mirrorReachable } from '../lab/offline-image.js';
import { startSimBmc, type SimBmc } from '../lab/bmc.js';
import { CLI, pxeherd } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import { STAGE1_CMDLINE } from '../../src/stage1/build.js';

const why =
  labUnavailable(['qemu-system-x86_64', 'busybox', 'ssh-keygen']) ??
  (fs.existsSync('/usr/lib/ipxe/qemu/pxe-e1000.rom') ? undefined : 'needs ipxe-qemu (Debian package)') ??
  (mirrorReachable() ? imageToolsMissing() : 'needs a Debian mirror: the installed image is built with grub-pc-bin/grub-efi-amd64-bin (test/lab/image.ts)');
const NAME = SHARED_IMAGE_NAME;
const BOOT_MS = Number(process.env.PXEHERD_E2E_OS_BOOT_MS ?? 900_000);
// Stage one holds the downloaded squashfs in RAM while it writes the disk.
const MEM_MB = Number(process.env.PXEHERD_E2E_OS_MEM_MB ?? 1536);
const DISK_MB = 4096;
const say = (m: string) => process.stderr.write(`# disk-install: ${m}\n`);

interface Ctx {
  lab: Lab;
  dir: string;
  config: string;
  statedir: string;
  server?: ChildProcess;
  rev: number;
  bmc?: SimBmc;
}

function writeConfig(c: Ctx): void {
  fs.writeFileSync(
    c.config,
    `statedir: ${c.statedir}
interface: br0
address: ${c.lab.serverIp}
dhcp: { mode: full, range: [10.77.0.100, 10.77.0.200], router: 10.77.0.1, dns: [10.77.0.1], lease_seconds: 600 }
tftp: { port: 69 }
http: { port: 8080 }
provisiond: { port: 0 }
admin: { port: 0 }
nodescripts: { timeout_seconds: 60 }
`,
  );
}

function withStore<T>(c: Ctx, fn: (s: Store) => T): T {
  const s = Store.open(c.statedir);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

function kinds(c: Ctx, node: string, since: number): { kind: string; detail: Record<string, unknown> }[] {
  return withStore(c, (s) => s.events.query({ node, since, order: 'asc', limit: 10000 })).map((e) => ({ kind: e.kind, detail: (e.detail ?? {}) as Record<string, unknown> }));
}

async function exec(c: Ctx, node: string, command: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await run(process.execPath, [CLI, 'exec', node, '--connect-timeout', '20', '--timeout', '150', '--', ...command], { ns: c.lab.ns, timeoutMs: 180_000, env: { ...process.env, PXEHERD_CONFIG: c.config } });
    const strip = (s: string) => s.split('\n').filter((l) => l.startsWith(`${node}: `)).map((l) => l.slice(node.length + 2)).join('\n');
    return { code: 0, out: strip(r.stdout), err: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, out: err.stdout ?? '', err: err.stderr ?? String(e) };
  }
}

function set(c: Ctx, args: string[]): void {
  const r = pxeherd(['node', 'set', ...args], { config: c.config });
  assert.equal(r.code, 0, r.stderr);
}

/** A boot whose plan is refused: the console reason and the install.fail event, nothing written. */
async function refusedBoot(c: Ctx, o: { vm: string; mac: string; node: string; disk: string; expect: RegExp }): Promise<void> {
  const since = Date.now();
  const vm = startVm({ lab: c.lab, name: o.vm, mac: o.mac, firmware: 'bios', memMb: MEM_MB, dir: c.dir, diskFile: o.disk, diskMb: DISK_MB });
  try {
    const m = await vm.waitForConsole(/pxeherd: NOT INSTALLING (\S+) to disk: ([^\n]*)/, BOOT_MS);
    assert.equal(m[1], o.node);
    assert.match(m[2]!, o.expect, 'the console names the reason');
    await vm.waitForConsole(/PXEHERD-RESULT rc=1/, 60_000);
    const fail = await waitFor('install.fail', 10_000, () => kinds(c, o.node, since).find((e) => e.kind === 'install.fail'));
    assert.equal(fail.detail.stage, 'plan');
    assert.match(String(fail.detail.error), o.expect, 'the event carries the reason');
    const ev = kinds(c, o.node, since).map((e) => e.kind);
    assert.ok(!ev.includes('image.download'), 'nothing downloaded');
    assert.ok(!ev.includes('install.start'), 'nothing written');
    const head = Buffer.alloc(1 << 20);
    const fd = fs.openSync(o.disk, 'r');
    fs.readSync(fd, head, 0, head.length, 0);
    fs.closeSync(fd);
    assert.ok(head.every((b) => b === 0), 'the disk is untouched (no partition table)');
  } finally {
    vm.kill();
  }
}

/** Install a node to its disk, let it reboot into it, and prove the running system is the disk's. */
async function installAndBoot(c: Ctx, o: { vm: string; mac: string; node: string; firmware: 'bios' | 'uefi' }): Promise<void> {
  const since = Date.now();
  const disk = path.join(c.dir, `${o.vm}.disk.img`);
  // OVMF: no PXE over IPv6 on this IPv4 lab (after iPXE exits, OVMF's own IPv6 PXE would wait
  // for a DHCPv6 answer before it reaches the disk).
  const fwCfg = o.firmware === 'uefi' ? { 'opt/org.tianocore/IPv6PXESupport': 'n' } : undefined;
  const vm = startVm({ lab: c.lab, name: o.vm, mac: o.mac, firmware: o.firmware, memMb: MEM_MB, dir: c.dir, diskFile: disk, diskMb: DISK_MB, reboot: true, fwCfg });
  try {
    await vm.waitForConsole(new RegExp(`pxeherd: ${o.node} installed: \\S+ r\\d+ on /dev/vda; rebooting into it`), BOOT_MS);
    say(`${o.vm}: installed ${((Date.now() - vm.started) / 1000).toFixed(0)} s after QEMU started`);
    const done = withStore(c, (s) => s.events.query({ node: o.node, since, kind: 'install.done', limit: 1 })[0]);
    assert.ok(done, 'install.done recorded before the reboot');
    assert.equal((done.detail as { rev: number }).rev, c.rev);
    assert.equal((done.detail as { firmware: string }).firmware, o.firmware, 'the plan follows the firmware the inventory saw');
    await waitFor(`${o.node}'s OS (from its disk) to check in`, BOOT_MS, () =>
      withStore(c, (s) => {
        const n = s.nodes.byName(o.node);
        const ev = s.events.query({ node: o.node, since, kind: 'node.checkin', limit: 10 });
        return n?.state === 'ready' && ev.some((e) => (e.detail as { first?: boolean }).first === true);
      }),
      1000,
    ).catch((e) => {
      throw new Error(`${(e as Error).message}; console tail:\n${vm.console().slice(-4000)}`);
    });
    say(`${o.vm}: OS checked in ${((Date.now() - vm.started) / 1000).toFixed(0)} s after QEMU started`);
    const node = withStore(c, (s) => s.nodes.byName(o.node)!);
    assert.equal(node.boot, 'local', 'install.done set boot mode local');
    const inst = withStore(c, (s) => s.installs.get(node.mac));
    assert.equal(inst?.rev, c.rev);
    assert.equal(inst?.vnfs, NAME);
    assert.equal(inst?.firmware, o.firmware);
    assert.equal(inst?.previous, null);

    // Over real SSH, with the host key the master keeps (exec checks it strictly).
    // The check-in may come before sshd listens (TCG is slow): retry until it answers.
    const facts = ['sh', '-c', '"cat /proc/cmdline; findmnt -n -o SOURCE,FSTYPE /; blkid -s UUID -o value /dev/vda2; hostname; cat /etc/ssh/ssh_host_ed25519_key.pub; test -d /sys/firmware/efi && echo uefi || echo bios; echo $(findmnt -n -o SOURCE /boot/efi); echo $(ls /boot/efi/EFI/BOOT 2>/dev/null)"'];
    let r = await exec(c, o.node, facts);
    for (let t = 0; r.code !== 0 && /connection refused/.test(r.err) && t < 30; t++) {
      await new Promise((res) => setTimeout(res, 5000));
      r = await exec(c, o.node, facts);
    }
    assert.equal(r.code, 0, r.err);
    const [cmdline, root, uuid, hostname, pub, firmware, esp, efiFiles] = r.out.split('\n');
    say(`${o.vm}: /proc/cmdline: ${cmdline}; / is ${root}`);
    assert.match(cmdline!, new RegExp(`root=UUID=${uuid} `), "the kernel was started by the disk's GRUB with the disk's root, by UUID");
    assert.match(cmdline!, new RegExp(`pxeherd\\.installed=${NAME}@${c.rev}`));
    assert.doesNotMatch(cmdline!, /pxeherd\.url=/, "not pxeherd's network boot");
    assert.equal(root!.trim().replace(/\s+/g, ' '), '/dev/vda2 ext4', "root is the disk's root partition");
    assert.equal(hostname, o.node);
    assert.equal(pub!.trim(), fs.readFileSync(path.join(c.statedir, `hostkeys/${o.node}/ssh_host_ed25519_key.pub`), 'utf8').trim());
    assert.equal(firmware, o.firmware);
    if (o.firmware === 'uefi') {
      assert.equal(esp, '/dev/vda1', 'the EFI system partition is mounted from fstab');
      assert.match(efiFiles!, /BOOTX64\.EFI/, 'GRUB at the removable path');
    }

    const ev = kinds(c, o.node, since).map((e) => e.kind);
    for (const k of ['image.download', 'image.verify', 'install.start', 'install.write', 'install.done', 'install.recorded', 'node.checkin']) assert.ok(ev.includes(k), `timeline has ${k}`);
    assert.ok(ev.indexOf('install.done') < ev.lastIndexOf('http.ipxe'), 'the machine came back to the network boot after the install');
    assert.ok(!ev.includes('image.switch_root'), 'no stateless switch_root');
    assert.ok(!ev.includes('install.local_boot_failed'));
  } finally {
    vm.kill();
  }
}

describe('install to disk in QEMU', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;

  before(async () => {
    c.dir = tmpDir('pxeherd-e2e-disk-');
    c.statedir = path.join(c.dir, 'var');
    c.config = path.join(c.dir, 'pxeherd.yaml');
    fs.mkdirSync(c.statedir, { recursive: true });
    c.lab = createLab({ name: 'phdi' });
    const img = await sharedDebianImage();
    cloneSharedImage(img, c.dir);
    c.rev = img.rev;
    say(`shared image ${img.name} r${img.rev} (${img.buildSeconds ? `built in ${img.buildSeconds} s` : "from this run's cache"})`);
    writeConfig(c);
    assert.equal(pxeherd(['vnfs', 'set', NAME, 'cmdline', STAGE1_CMDLINE], { config: c.config }).code, 0);
    for (const [mac, name] of [
      ['52:54:00:e2:20:01', 'n0000'],
      ['52:54:00:e2:20:02', 'n0001'],
      ['52:54:00:e2:20:03', 'n0002'],
    ]) {
      const r = pxeherd(['node', 'add', mac, name, '--vnfs', NAME, '--set', 'install=disk', '--set', 'checkin_interval=10'], { config: c.config });
      assert.equal(r.code, 0, r.stderr);
    }
    const log = path.join(c.dir, 'server.log');
    c.server = c.lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', c.config], { log });
    await waitFor('pxeherd to listen', 30_000, () => /http listening/.test(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '') && /dhcp listening/.test(fs.readFileSync(log, 'utf8')));
    say(`QEMU accel ${labAccel()}, logs in ${c.dir}`);
  });

  after(async () => {
    c.bmc?.stop();
    c.server?.kill('SIGTERM');
    c.lab?.destroy();
    if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(c.dir, { recursive: true, force: true });
  });

  test('a plan that cannot be made stops the node before anything is written: no disk matching install_disk, a plan that does not fit the disk', async () => {
    const disk = path.join(c.dir, 'refused.disk.img');
    set(c, ['attr.install_disk', 'serial:NO-SUCH-DISK', 'n0001']);
    await refusedBoot(c, { vm: 'nodisk', mac: '52:54:00:e2:20:02', node: 'n0001', disk, expect: /no disk matches install_disk=serial:NO-SUCH-DISK \(candidates: vda \(4 GiB, serial PXEHERDNODISK\)\)/ });
    set(c, ['attr.install_disk', '', 'n0001']);
    set(c, ['attr.install_swap', '8G', 'n0001']);
    await refusedBoot(c, { vm: 'nofit', mac: '52:54:00:e2:20:02', node: 'n0001', disk, expect: /the plan does not fit vda: it needs .* and the disk has 4 GiB/ });
  });

  test('BIOS: install to the virtio disk, reboot, the machine boots its disk (GRUB\'s command line, root on vda2), exec with the kept host key, state ready', async () => {
    await installAndBoot(c, { vm: 'bios', mac: '52:54:00:e2:20:01', node: 'n0000', firmware: 'bios' });
  });

  test('UEFI (OVMF): install with an EFI system partition, iPXE exits to the disk\'s GRUB at the removable path, same proofs', async () => {
    await installAndBoot(c, { vm: 'uefi', mac: '52:54:00:e2:20:03', node: 'n0002', firmware: 'uefi' });
  });

  test('node reinstall --wait of a disk node through ipmi_sim: boot once + PXE override + power cycle of the real VM, install, reboot into the disk, SSH with the kept host key: the table ends in ready', { skip: which('ipmi_sim') && which('ipmitool') ? undefined : 'needs ipmi_sim and ipmitool (Debian packages openipmi, ipmitool)' }, async () => {
    const PASSWORD = 'Lab-4d1e7b2c';
    const mac = '52:54:00:e2:20:04';
    c.bmc = await startSimBmc({ lab: c.lab, dir: c.dir, user: 'admin', password: PASSWORD, mac, memMb: MEM_MB, diskMb: DISK_MB, diskSerial: 'PXEHERDBMC4' });
    fs.mkdirSync(path.join(c.statedir, 'secrets'), { recursive: true });
    fs.writeFileSync(path.join(c.statedir, 'secrets', 'bmc-lab'), PASSWORD + '\n', { mode: 0o600 });
    const add = pxeherd(['node', 'add', mac, 'n0004', '--vnfs', NAME, '--set', 'install=disk', '--set', 'checkin_interval=10', '--set', 'power=ipmi', '--set', `bmc_host=${c.bmc.host}`, '--set', 'bmc_user=admin', '--set', 'ipmi_cipher=3', '--set', 'bmc_password_file=bmc-lab'], { config: c.config });
    assert.equal(add.code, 0, add.stderr);
    const since = Date.now();
    let r: { stdout: string; stderr: string; code: number };
    try {
      const out = await run(process.execPath, [CLI, 'node', 'reinstall', 'n0004', '--wait', '--timeout', String(Math.round(BOOT_MS / 1000))], { ns: c.lab.ns, timeoutMs: BOOT_MS + 120_000, env: { ...process.env, PXEHERD_CONFIG: c.config } });
      r = { ...out, code: 0 };
    } catch (e) {
      const x = e as { code?: number; stdout?: string; stderr?: string };
      r = { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? String(e) };
    }
    process.stderr.write(r.stdout.replace(/^/gm, '# reinstall: ') + '\n');
    assert.equal(r.code, 0, `${r.stderr}\nconsole tail:\n${c.bmc.console().slice(-3000)}`);
    assert.match(r.stdout, /^n0004\s+ready\b/m, 'the table ends in ready');
    const ev = kinds(c, 'n0004', since).map((e) => e.kind);
    assert.ok(ev.indexOf('power.pxe') >= 0 && ev.indexOf('power.pxe') < ev.indexOf('dhcp.discover'), ev.join(' '));
    assert.ok(ev.indexOf('install.done') > 0 && ev.indexOf('install.done') < ev.lastIndexOf('node.checkin'), 'ready came from the installed system');
    assert.ok(c.bmc.chassis().includes('start order=n'), 'the BMC started the machine with the network boot');
    const root = await exec(c, 'n0004', ['findmnt', '-n', '-o', 'SOURCE', '/']);
    assert.equal(root.code, 0, root.err);
    assert.equal(root.out.trim(), '/dev/vda2');
    assert.equal(withStore(c, (s) => s.installs.get(mac))?.rev, c.rev);
  });
});
