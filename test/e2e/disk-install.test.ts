/**
 * Install to disk (issue 18) in QEMU with a virtio disk: a node with install=disk boots
 * pxeherd's stage one, which partitions its disk from the master's plan, writes the verified
 * revision of the shared Debian image onto it, configures it like a stateless root (host keys
 * kept on the master, network, check-in), installs GRUB, reports install.done and reboots; the
 * master then answers its network boot with boot mode local, and the machine boots its disk.
 * The test proves the running system is the disk's: /proc/cmdline is GRUB's (root=UUID=, no
 * pxeherd.url=) and / is the disk's root partition, read over SSH with the kept host key.
 * Two full installs: UEFI (OVMF) with an xfs root and swap from the plan attributes, then
 * captured with `vnfs capture`; BIOS through `node reinstall --wait` and ipmi_sim, whose disk
 * is then made unbootable to see the failed disk boot reported.
 * Failure paths: no disk matching install_disk, a plan that does not fit the disk, a plan whose
 * boot loader is for the other firmware — each stops before anything is written, with the
 * reason on the console and an install.fail event; a disk that no longer boots comes back to
 * PXE and is recorded as install.local_boot_failed.
 * One VM at a time (TCG); the shared image of the run (test/lab/image.ts).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { createLab, labUnavailable, run, tmpDir, waitFor, which, type Lab } from '../lab/lab.js';
import { startVm, labAccel, type Vm } from '../lab/qemu.js';
import { sharedDebianImage, cloneSharedImage, imageToolsMissing, SHARED_IMAGE_NAME } from '../lab/image.js';
import { mirrorReachable } from '../lab/offline-image.js';
import { startSimBmc, type SimBmc } from '../lab/bmc.js';
import { CLI, pxeherd } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import { writeLabConfig } from '../lab/os-node.js';
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
  /** The UEFI node's VM, kept running from its install to its capture. */
  uefi?: Vm;
  broken?: Vm;
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

/** The CLI inside the lab's namespace (ipmitool, SSH to the nodes). */
async function cli(c: Ctx, args: string[], timeoutMs = 180_000): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { ns: c.lab.ns, timeoutMs, env: { ...process.env, PXEHERD_CONFIG: c.config } });
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
  }
}

async function exec(c: Ctx, node: string, command: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await cli(c, ['exec', node, '--connect-timeout', '20', '--timeout', '150', '--', ...command]);
  const strip = (s: string) => s.split('\n').filter((l) => l.startsWith(`${node}: `)).map((l) => l.slice(node.length + 2)).join('\n');
  return { code: r.code, out: r.code === 0 ? strip(r.stdout) : r.stdout, err: r.stderr };
}

function diskIsBlank(file: string): boolean {
  const head = Buffer.alloc(1 << 20);
  const fd = fs.openSync(file, 'r');
  fs.readSync(fd, head, 0, head.length, 0);
  fs.closeSync(fd);
  return head.every((b) => b === 0);
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
    assert.ok(diskIsBlank(o.disk), 'the disk is untouched (no partition table)');
  } finally {
    vm.kill();
  }
}

interface DiskLayout {
  firmware: 'bios' | 'uefi';
  root: string;
  fs: 'ext4' | 'xfs';
  swap?: string;
  esp?: string;
}

/**
 * Over real SSH, with the host key the master keeps (exec checks it strictly): the running
 * system is the disk's — GRUB's command line with the disk's root by UUID, / (and swap, the
 * ESP) on the partitions the plan made, the node's own hostname and host key.
 */
async function proveDiskSystem(c: Ctx, node: string, want: DiskLayout): Promise<void> {
  const facts = [
    'sh',
    '-c',
    `"cat /proc/cmdline; findmnt -n -o SOURCE,FSTYPE /; blkid -s UUID -o value ${want.root}; hostname; cat /etc/ssh/ssh_host_ed25519_key.pub; test -d /sys/firmware/efi && echo uefi || echo bios; echo $(findmnt -n -o SOURCE /boot/efi); echo $(ls /boot/efi/EFI/BOOT 2>/dev/null); echo $(swapon --show=NAME,TYPE --noheadings)"`,
  ];
  // The check-in may come before sshd listens (TCG is slow): retry until it answers.
  let r = await exec(c, node, facts);
  for (let t = 0; r.code !== 0 && /connection refused/.test(r.err) && t < 30; t++) {
    await new Promise((res) => setTimeout(res, 5000));
    r = await exec(c, node, facts);
  }
  assert.equal(r.code, 0, r.err);
  const [cmdline, root, uuid, hostname, pub, firmware, esp, efiFiles, swaps] = r.out.split('\n');
  say(`${node}: /proc/cmdline: ${cmdline}; / is ${root}; swap: ${swaps || 'none'}`);
  assert.match(uuid!, /^[0-9a-f-]{16,}$/, `blkid found the root partition ${want.root}`);
  assert.match(cmdline!, new RegExp(`root=UUID=${uuid} `), "the kernel was started by the disk's GRUB with the disk's root, by UUID");
  assert.match(cmdline!, new RegExp(`pxeherd\\.installed=${NAME}@${c.rev}`));
  assert.doesNotMatch(cmdline!, /pxeherd\.url=/, "not pxeherd's network boot");
  assert.equal(root!.trim().replace(/\s+/g, ' '), `${want.root} ${want.fs}`, "root is the disk's root partition, with the planned filesystem");
  assert.equal(hostname, node);
  assert.equal(pub!.trim(), fs.readFileSync(path.join(c.statedir, `hostkeys/${node}/ssh_host_ed25519_key.pub`), 'utf8').trim());
  assert.equal(firmware, want.firmware);
  if (want.esp) {
    assert.equal(esp, want.esp, 'the EFI system partition is mounted from fstab');
    assert.match(efiFiles!, /BOOTX64\.EFI/, 'GRUB at the removable path');
  }
  assert.equal(swaps!.trim(), want.swap ? `${want.swap} partition` : '', want.swap ? 'the planned swap partition is in use (fstab)' : 'no swap planned, none used');
}

/** Install a node to its disk, let it reboot into it, and prove the running system is the disk's. The VM keeps running. */
async function installAndBoot(c: Ctx, o: { vm: string; mac: string; node: string; layout: DiskLayout }): Promise<Vm> {
  const since = Date.now();
  const disk = path.join(c.dir, `${o.vm}.disk.img`);
  const firmware = o.layout.firmware;
  // OVMF: no PXE over IPv6 on this IPv4 lab (after iPXE exits, OVMF's own IPv6 PXE would wait
  // for a DHCPv6 answer before it reaches the disk).
  const fwCfg = firmware === 'uefi' ? { 'opt/org.tianocore/IPv6PXESupport': 'n' } : undefined;
  const vm = startVm({ lab: c.lab, name: o.vm, mac: o.mac, firmware, memMb: MEM_MB, dir: c.dir, diskFile: disk, diskMb: DISK_MB, reboot: true, fwCfg });
  try {
    await vm.waitForConsole(new RegExp(`pxeherd: ${o.node} installed: \\S+ r\\d+ on /dev/vda; rebooting into it`), BOOT_MS);
    say(`${o.vm}: installed ${((Date.now() - vm.started) / 1000).toFixed(0)} s after QEMU started`);
    const done = withStore(c, (s) => s.events.query({ node: o.node, since, kind: 'install.done', limit: 1 })[0]);
    assert.ok(done, 'install.done recorded before the reboot');
    assert.equal((done.detail as { rev: number }).rev, c.rev);
    assert.equal((done.detail as { firmware: string }).firmware, firmware, 'the plan follows the firmware the inventory saw');
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
    assert.equal(inst?.firmware, firmware);
    assert.equal(inst?.previous, null);

    await proveDiskSystem(c, o.node, o.layout);

    const ev = kinds(c, o.node, since).map((e) => e.kind);
    for (const k of ['image.download', 'image.verify', 'install.start', 'install.write', 'install.done', 'install.recorded', 'node.checkin']) assert.ok(ev.includes(k), `timeline has ${k}`);
    assert.ok(ev.indexOf('install.done') < ev.lastIndexOf('http.ipxe'), 'the machine came back to the network boot after the install');
    assert.ok(!ev.includes('image.switch_root'), 'no stateless switch_root');
    assert.ok(!ev.includes('install.local_boot_failed'));
    return vm;
  } catch (e) {
    vm.kill();
    throw e;
  }
}

/** `node reinstall NODE --wait` in the lab's namespace; its table goes to the test's log. */
async function reinstall(c: Ctx, node: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await cli(c, ['node', 'reinstall', node, '--wait', '--timeout', String(Math.round(BOOT_MS / 1000))], BOOT_MS + 120_000);
  process.stderr.write(r.stdout.replace(/^/gm, '# reinstall: ') + '\n');
  return r;
}

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

describe('install to disk in QEMU', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;
  const t0 = Date.now();

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
    writeLabConfig(c);
    assert.equal(pxeherd(['vnfs', 'set', NAME, 'cmdline', STAGE1_CMDLINE], { config: c.config }).code, 0);
    for (const [mac, name, extra] of [
      ['52:54:00:e2:20:02', 'n0001', []],
      // The plan's attributes: an xfs root and a swap partition (between the ESP and the root);
      // wipe_on_boot (node release --wipe): 07-disk-wipe erases the disk before the install.
      ['52:54:00:e2:20:03', 'n0002', ['--set', 'install_fs=xfs', '--set', 'install_swap=256M', '--set', 'wipe_on_boot=yes']],
    ] as const) {
      const r = pxeherd(['node', 'add', mac, name, '--vnfs', NAME, '--set', 'install=disk', '--set', 'checkin_interval=10', ...extra], { config: c.config });
      assert.equal(r.code, 0, r.stderr);
    }
    const log = path.join(c.dir, 'server.log');
    c.server = c.lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', c.config], { log });
    await waitFor('pxeherd to listen', 30_000, () => /http listening/.test(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '') && /dhcp listening/.test(fs.readFileSync(log, 'utf8')));
    say(`QEMU accel ${labAccel()}, logs in ${c.dir}`);
  });

  after(async () => {
    c.uefi?.kill();
    c.broken?.kill();
    c.bmc?.stop();
    c.server?.kill('SIGTERM');
    c.lab?.destroy();
    if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(c.dir, { recursive: true, force: true });
    say(`the file took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  });

  test('a plan that cannot be made stops the node before anything is written: no disk matching install_disk, a plan that does not fit the disk', async () => {
    const disk = path.join(c.dir, 'refused.disk.img');
    set(c, ['attr.install_disk', 'serial:NO-SUCH-DISK', 'n0001']);
    await refusedBoot(c, { vm: 'nodisk', mac: '52:54:00:e2:20:02', node: 'n0001', disk, expect: /no disk matches install_disk=serial:NO-SUCH-DISK \(candidates: vda \(4 GiB, serial PXEHERDNODISK\)\)/ });
    set(c, ['attr.install_disk', '', 'n0001']);
    set(c, ['attr.install_swap', '8G', 'n0001']);
    await refusedBoot(c, { vm: 'nofit', mac: '52:54:00:e2:20:02', node: 'n0001', disk, expect: /the plan does not fit vda: it needs .* and the disk has 4 GiB/ });
  });

  test("UEFI (OVMF) with install_fs=xfs and install_swap: the ESP, swap and an xfs root; iPXE exits to the disk's GRUB at the removable path; GRUB's command line, / is xfs on vda3, swap on vda2 in use, exec with the kept host key, state ready", async () => {
    c.uefi = await installAndBoot(c, { vm: 'uefi', mac: '52:54:00:e2:20:03', node: 'n0002', layout: { firmware: 'uefi', root: '/dev/vda3', fs: 'xfs', swap: '/dev/vda2', esp: '/dev/vda1' } });
    // The plan the node was installed from (it needs the node's hardware report, sent at its first boot).
    const plan = pxeherd(['node', 'plan', 'n0002', '--json'], { config: c.config });
    assert.equal(plan.code, 0, plan.stderr);
    const parts = (JSON.parse(plan.stdout) as { partitions: { name: string; device: string; fs: string }[] }).partitions.map((p) => `${p.name} ${p.device} ${p.fs}`);
    assert.deepEqual(parts, ['esp /dev/vda1 vfat', 'swap /dev/vda2 swap', 'root /dev/vda3 xfs']);
    // The wipe ran once, on the machine's one disk, before the install touched it; the master then dropped the attribute.
    const ev = kinds(c, 'n0002', 0);
    const wipes = ev.filter((e) => e.kind === 'wipe.done');
    assert.deepEqual(wipes.map((e) => [e.detail.mode, e.detail.disks]), [['quick', 'vda']], JSON.stringify(wipes));
    assert.ok(ev.findIndex((e) => e.kind === 'wipe.done') < ev.findIndex((e) => e.kind === 'install.start'), 'wiped before the install');
    assert.equal(withStore(c, (s) => s.nodes.byName('n0002')!.attrs.wipe_on_boot), undefined, 'wipe_on_boot removed after wipe.done');
  });

  test('vnfs capture of the disk-installed node: a new revision whose manifest verifies, without the node\'s host keys, machine-id or fstab; the node keeps them', async (t) => {
    if (!c.uefi) return t.skip('the UEFI install did not come up');
    try {
      const nodeMid = (await exec(c, 'n0002', ['cat', '/etc/machine-id'])).out.trim();
      assert.match(nodeMid, /^[0-9a-f]{32}$/);
      const started = Date.now();
      // Drivers no VM of this lab loads: less to stream under TCG (as capture.test.ts does).
      const skip = ['drivers/gpu', 'sound', 'drivers/net/wireless', 'drivers/media', 'drivers/infiniband', 'drivers/staging', 'drivers/iio'].flatMap((d) => ['--exclude', `/usr/lib/modules/*/kernel/${d}`]);
      const cap = await cli(c, ['vnfs', 'capture', 'n0002', 'from-disk', ...skip, '--comment', 'captured from a disk install', '--json'], 900_000);
      assert.equal(cap.code, 0, cap.stderr);
      const out = JSON.parse(cap.stdout) as { rev: number; streamedBytes: number; streamMs: number; manifest: { kernel: string; source: string; tree: { files: number } } };
      say(`capture of the disk node: ${(out.streamedBytes / 1048576).toFixed(0)} MiB streamed in ${(out.streamMs / 1000).toFixed(0)} s, whole capture ${((Date.now() - started) / 1000).toFixed(0)} s, ${out.manifest.tree.files} files`);
      assert.equal(out.rev, 1);
      assert.equal(out.manifest.source, 'capture:n0002');
      assert.ok(out.manifest.kernel, 'the captured image carries its kernel');
      // The manifest on the master, as nodes download it: every artifact's size and sha256 hold.
      const revDir = path.join(c.statedir, 'vnfs/from-disk/r1');
      const manifest = JSON.parse(fs.readFileSync(path.join(revDir, 'manifest.json'), 'utf8')) as { artifacts: Record<string, { sha256: string; size: number }> };
      assert.deepEqual(Object.keys(manifest.artifacts).sort(), ['initrd.img', 'rootfs.squashfs', 'vmlinuz']);
      for (const [name, a] of Object.entries(manifest.artifacts)) {
        const f = path.join(revDir, name);
        assert.equal(fs.statSync(f).size, a.size, `${name} size`);
        assert.equal(sha256(f), a.sha256, `${name} sha256`);
      }
      const tree = path.join(c.statedir, 'images/from-disk/1/tree');
      assert.deepEqual(fs.readdirSync(path.join(tree, 'etc/ssh')).filter((f) => f.startsWith('ssh_host_')), [], 'no host keys');
      assert.equal(fs.readFileSync(path.join(tree, 'etc/machine-id'), 'utf8'), '', 'machine-id emptied');
      assert.doesNotMatch(fs.readFileSync(path.join(tree, 'etc/fstab'), 'utf8'), /UUID=/, "the disk's fstab is not carried to other machines");
      assert.ok(fs.existsSync(path.join(tree, 'boot/grub/grub.cfg')), 'the installed system was captured (GRUB config on the root filesystem)');
      const still = await exec(c, 'n0002', ['sh', '-c', '"cat /etc/machine-id; ls /etc/ssh/ssh_host_ed25519_key; grep -c UUID= /etc/fstab"']);
      assert.equal(still.code, 0, `the node is unchanged: ${still.err}`);
      assert.deepEqual(still.out.split('\n'), [nodeMid, '/etc/ssh/ssh_host_ed25519_key', '3']);
    } finally {
      c.uefi.kill();
      c.uefi = undefined;
    }
  });

  test('BIOS through ipmi_sim and node reinstall --wait: a plan for UEFI on a machine booted in BIOS mode stops at the bootloader step before the disk is touched (install.fail, reinstall fails naming it, node timeline shows it); then the install boots from its disk: GRUB\'s command line, root on vda2, exec with the kept host key, ready', { skip: which('ipmi_sim') && which('ipmitool') ? undefined : 'needs ipmi_sim and ipmitool (Debian packages openipmi, ipmitool)' }, async () => {
    const PASSWORD = 'Lab-4d1e7b2c';
    const mac = '52:54:00:e2:20:04';
    c.bmc = await startSimBmc({ lab: c.lab, dir: c.dir, user: 'admin', password: PASSWORD, mac, memMb: MEM_MB, diskMb: DISK_MB, diskSerial: 'PXEHERDBMC4' });
    fs.mkdirSync(path.join(c.statedir, 'secrets'), { recursive: true });
    fs.writeFileSync(path.join(c.statedir, 'secrets', 'bmc-lab'), PASSWORD + '\n', { mode: 0o600 });
    const add = pxeherd(['node', 'add', mac, 'n0004', '--vnfs', NAME, '--set', 'install=disk', '--set', 'install_firmware=uefi', '--set', 'checkin_interval=10', '--set', 'power=ipmi', '--set', `bmc_host=${c.bmc.host}`, '--set', 'bmc_user=admin', '--set', 'ipmi_cipher=3', '--set', 'bmc_password_file=bmc-lab'], { config: c.config });
    assert.equal(add.code, 0, add.stderr);

    // 1. The boot loader the plan asks for cannot start on this machine: refused, nothing written.
    let since = Date.now();
    const bad = await reinstall(c, 'n0004');
    assert.equal(bad.code, 1, `reinstall fails: ${bad.stderr}\nconsole tail:\n${c.bmc.console().slice(-3000)}`);
    const expect = /the plan installs a uefi boot loader but n0004 booted in bios mode, so its firmware would not start that disk\. Unset install_firmware/;
    assert.match(bad.stdout + bad.stderr, /install to disk failed at bootloader: the plan installs a uefi boot loader but n0004 booted in bios mode/, 'reinstall --wait names the failed step');
    assert.match(c.bmc.console(), /pxeherd: NOT INSTALLING n0004 to disk \(bootloader\): the plan installs a uefi boot loader/);
    const fail = kinds(c, 'n0004', since).find((e) => e.kind === 'install.fail');
    assert.equal(fail?.detail.stage, 'bootloader');
    assert.equal(fail?.detail.attr, 'install_firmware');
    assert.match(String(fail?.detail.error), expect);
    const ev1 = kinds(c, 'n0004', since).map((e) => e.kind);
    assert.ok(!ev1.includes('image.download') && !ev1.includes('install.start') && !ev1.includes('install.done'), `nothing downloaded or written: ${ev1.join(' ')}`);
    assert.ok(diskIsBlank(path.join(c.bmc.dir, 'disk.img')), 'the disk is untouched');
    const tl = pxeherd(['node', 'timeline', 'n0004'], { config: c.config });
    assert.equal(tl.code, 0, tl.stderr);
    assert.match(tl.stdout, /install\.fail.*stage bootloader · the plan installs a uefi boot loader/, tl.stdout);

    // 2. The attribute fixed: reinstall installs, the machine reboots into its disk, ready.
    set(c, ['attr.install_firmware', '', 'n0004']);
    since = Date.now();
    const r = await reinstall(c, 'n0004');
    assert.equal(r.code, 0, `${r.stderr}\nconsole tail:\n${c.bmc.console().slice(-3000)}`);
    assert.match(r.stdout, /^n0004\s+ready\b/m, 'the table ends in ready');
    const ev = kinds(c, 'n0004', since).map((e) => e.kind);
    assert.ok(ev.indexOf('power.pxe') >= 0 && ev.indexOf('power.pxe') < ev.indexOf('dhcp.discover'), ev.join(' '));
    assert.ok(ev.indexOf('install.done') > 0 && ev.indexOf('install.done') < ev.lastIndexOf('node.checkin'), 'ready came from the installed system');
    assert.ok(ev.indexOf('install.done') < ev.lastIndexOf('http.ipxe'), 'the machine came back to the network boot after the install');
    assert.ok(!ev.includes('install.local_boot_failed'));
    assert.ok(c.bmc.chassis().includes('start order=n'), 'the BMC started the machine with the network boot');
    const inst = withStore(c, (s) => s.installs.get(mac));
    assert.equal(inst?.rev, c.rev);
    assert.equal(inst?.firmware, 'bios');
    await proveDiskSystem(c, 'n0004', { firmware: 'bios', root: '/dev/vda2', fs: 'ext4' });
  });

  test('a disk that no longer boots (boot sector wiped): boot mode local comes back to PXE and pxeherd records install.local_boot_failed and state local_boot_failed, shown by node timeline', async (t) => {
    if (!c.bmc || withStore(c, (s) => s.nodes.byName('n0004')?.state) !== 'ready') return t.skip('the BIOS install did not come up');
    const mac = '52:54:00:e2:20:04';
    // Powered off through pxeherd (power.off): the local boot after it is no failed one.
    const off = await cli(c, ['power', 'off', 'n0004']);
    assert.equal(off.code, 0, off.stderr);
    await waitFor('the machine to stop', 30_000, () => c.bmc!.vmPid() === undefined);
    const disk = path.join(c.bmc.dir, 'disk.img');
    const fd = fs.openSync(disk, 'r+');
    fs.writeSync(fd, Buffer.alloc(512), 0, 512, 0);
    fs.closeSync(fd);
    const since = Date.now();
    // The same machine (MAC, disk) with a BIOS that retries its boot order after a second when
    // nothing booted, as servers do: every pass asks pxeherd again.
    c.broken = startVm({ lab: c.lab, name: 'broken', mac, firmware: 'bios', memMb: 256, dir: c.dir, diskFile: disk, reboot: true, extraArgs: ['-boot', 'reboot-timeout=1000'] });
    const failed = await waitFor('install.local_boot_failed', 600_000, () => kinds(c, 'n0004', since).find((e) => e.kind === 'install.local_boot_failed'), 1000).catch((e) => {
      throw new Error(`${(e as Error).message}; console tail:\n${c.broken!.console().slice(-3000)}`);
    });
    assert.equal(failed.detail.failures, 1);
    assert.equal(failed.detail.rev, c.rev);
    assert.match(String(failed.detail.hint), /came back to PXE without the OS checking in/);
    assert.match(c.broken.console(), /pxeherd: the local disk of n0004 did not boot/);
    const ev = kinds(c, 'n0004', since);
    const firstFail = ev.findIndex((e) => e.kind === 'install.local_boot_failed');
    const localBoots = ev.slice(0, firstFail).filter((e) => e.kind === 'http.ipxe').length;
    assert.ok(localBoots >= 2, `the failure is seen at a later pass, not the first local boot after pxeherd powered it off (${localBoots} scripts before it)`);
    assert.equal(withStore(c, (s) => s.nodes.byName('n0004')!.state), 'local_boot_failed');
    c.broken.kill();
    c.broken = undefined;
    const tl = pxeherd(['node', 'timeline', 'n0004', '--boots', '5'], { config: c.config });
    assert.equal(tl.code, 0, tl.stderr);
    assert.match(tl.stdout, /! install\.local_boot_failed +deb12 r\d+ · 1 failed disk boot in a row · the disk boot came back to PXE/, tl.stdout);
  });
});
