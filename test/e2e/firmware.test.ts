/**
 * Every firmware path of issue 20 (except IPv6) boots a real machine through `pxeherd serve`
 * in the namespace lab to the stage-one marker, with Debian's own loaders:
 *   - BIOS -> lpxelinux.0 -> pxelinux.cfg/01-<mac> -> kernel + initrd over HTTP
 *   - UEFI (OVMF's own PXE) -> Debian's signed network GRUB -> grub.cfg-01-<mac> -> HTTP
 *   - UEFI HTTP boot (OVMF's HTTPClient, no TFTP): iPXE EFI over HTTP (full DHCP) and GRUB
 *     over HTTP (proxyDHCP beside dnsmasq)
 *   - Secure Boot enforced: shim (Microsoft-signed) -> GRUB (Debian-signed) -> Debian's signed
 *     kernel; and the same firmware refusing unsigned iPXE
 *   - arm64: AAVMF -> Debian's signed arm64 network GRUB -> arm64 kernel (once: slow under TCG)
 * Boots run one at a time (2 cores under TCG); each checks registration, the state reaching
 * ready and the timeline.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createLab, labUnavailable, sh, tmpDir, waitFor, type Lab } from '../lab/lab.js';
import { startServe, stopServe } from '../lab/serve.js';
import { startVm, labAccel, OVMF_CODE_SECURE, AAVMF_CODE, type VmOptions } from '../lab/qemu.js';
import { pxeherd } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import { DEBIAN_CHAIN_LOADERS } from '../../src/tftp/loaders.js';
import type { ChildProcess } from 'node:child_process';

const x86Loaders = DEBIAN_CHAIN_LOADERS.filter((l) => l.name !== 'grubaa64.efi');
const why =
  labUnavailable(['qemu-system-x86_64', 'busybox', 'dnsmasq', 'apt-get']) ??
  (fs.existsSync('/usr/lib/ipxe/qemu/pxe-e1000.rom') ? undefined : 'needs ipxe-qemu (Debian package)') ??
  x86Loaders.filter((l) => !fs.existsSync(l.src)).map((l) => `needs ${l.src} (Debian package ${l.pkg}; .ci/run installs it)`)[0] ??
  (fs.existsSync(OVMF_CODE_SECURE) ? undefined : 'needs ovmf with Secure Boot images (Debian package ovmf)');
const whyArm = labUnavailable(['qemu-system-aarch64']) ?? (fs.existsSync(AAVMF_CODE) ? undefined : 'needs AAVMF (Debian package qemu-efi-aarch64)');
const BOOT_MS = Number(process.env.PXEHERD_E2E_BOOT_MS ?? 240_000);
const ARM_BOOT_MS = Number(process.env.PXEHERD_E2E_ARM_BOOT_MS ?? 900_000);
/** OVMF: no PXE boot options, so the NIC's first network option is UEFI HTTP boot. */
const OVMF_HTTP_ONLY = ['-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=n', '-fw_cfg', 'name=opt/org.tianocore/IPv6PXESupport,string=n'];

interface Ctx {
  lab: Lab;
  dir: string;
  config: string;
  statedir: string;
  server?: ChildProcess;
  serverLog?: string;
}

function writeConfig(c: Ctx, dhcpYaml: string): void {
  fs.writeFileSync(
    c.config,
    `statedir: ${c.statedir}
interface: br0
address: ${c.lab.serverIp}
${dhcpYaml}
tftp: { port: 69 }
http: { port: 8080 }
provisiond: { port: 987 }
admin: { port: 0 }
nodescripts: { timeout_seconds: 30 }
log: { level: debug }
`,
  );
}

async function startServer(c: Ctx, name: string): Promise<void> {
  const log = path.join(c.dir, `${name}.server.log`);
  c.serverLog = log;
  c.server = await startServe(c.lab, c.config, log, ['dhcp', 'tftp', 'http'], 20_000);
}

async function stopServer(c: Ctx): Promise<void> {
  await stopServe(c.server);
}

function withStore<T>(c: Ctx, fn: (s: Store) => T): T {
  const s = Store.open(c.statedir);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

function cli(c: Ctx, args: string[]): string {
  const r = pxeherd(args, { config: c.config });
  assert.equal(r.code, 0, `pxeherd ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

type Detail = Record<string, unknown>;

/**
 * Boot one machine to the marker; check its node record, its state going init -> ready, and
 * that its timeline holds `need` in order (each entry an event kind, or kind:file for a TFTP
 * or HTTP file).
 */
async function bootToMarker(c: Ctx, o: { vm: Omit<VmOptions, 'lab' | 'dir'>; expectName?: string; group?: string; need: string[]; ms?: number; anyMac?: boolean }) {
  const since = Date.now();
  const vm = startVm({ ...o.vm, lab: c.lab, dir: c.dir });
  try {
    const m = await vm.waitForConsole(/PXEHERD-E2E-MARKER node=(\S+) group=(\S+) ip=(\S*)/, o.ms ?? BOOT_MS);
    const seconds = (Date.now() - vm.started) / 1000;
    // An unknown machine's name is whatever the naming pattern gave it when DHCP registered it.
    const expectName = o.expectName ?? withStore(c, (s) => s.nodes.byMac(o.vm.mac)?.name);
    assert.ok(expectName, `${o.vm.mac} is registered`);
    assert.equal(m[1], expectName, 'the marker carries NODENAME from the master-side environment');
    assert.equal(m[2], o.group ?? 'cluster', 'and GROUPNAME');
    await vm.waitForConsole(/PXEHERD-RESULT rc=0/, 60_000);
    const node = await waitFor(`${expectName} to check in as ready`, 60_000, () =>
      withStore(c, (s) => {
        const n = s.nodes.byMac(o.vm.mac);
        const logged = s.events.query({ mac: o.vm.mac, since, kind: 'provision.start', limit: 100 }).some((e) => (e.detail as { state?: string }).state === 'ready');
        return n && n.state === 'ready' && logged ? n : undefined;
      }),
    );
    assert.equal(node.name, expectName);
    assert.match(node.ip, /^10\.77\.0\.\d+$/, 'its address is recorded');
    assert.equal(m[3], node.ip, 'IPADDR seen by the nodescript is the node address');
    // anyMac: files fetched from an address pxeherd did not lease (proxyDHCP) carry no MAC; one machine boots at a time.
    const evs = withStore(c, (s) => s.events.query({ ...(o.anyMac ? {} : { mac: o.vm.mac }), since, order: 'asc', limit: 10000 }));
    const label = (e: { kind: string; detail: unknown }) => {
      const d = (e.detail ?? {}) as Detail;
      const file = (d.file ?? d.path) as string | undefined;
      return file ? `${e.kind}:${file}` : e.kind;
    };
    const labels = evs.map(label);
    const matches = (l: string, want: string) => {
      const k = want.split(':')[0]!;
      const f = want.slice(k.length + 1);
      if (!f) return l === k || l.startsWith(`${k}:`);
      const lf = l.startsWith(`${k}:`) ? l.slice(k.length + 1) : undefined;
      return lf !== undefined && (lf === f || lf.endsWith(`/${f}`));
    };
    let at = -1;
    for (const want of o.need) {
      const i = labels.findIndex((l, j) => j > at && matches(l, want));
      assert.ok(i >= 0, `the timeline of ${o.vm.name} shows ${want} after ${o.need[o.need.indexOf(want) - 1] ?? 'the start'} (has: ${labels.join(' ')})`);
      at = i;
    }
    const starts = evs.filter((e) => e.kind === 'provision.start').map((e) => (e.detail as { state: string }).state);
    assert.deepEqual(starts, ['init', 'ready'], 'state went init -> ready');
    process.stderr.write(`# e2e firmware: ${o.vm.name} reached the marker in ${seconds.toFixed(1)} s\n`);
    return { seconds, console: vm.console(), events: evs };
  } catch (e) {
    process.stderr.write(`# e2e firmware: ${o.vm.name} console tail:\n${vm.console().slice(-2500)}\n`);
    throw e;
  } finally {
    vm.kill();
  }
}

/**
 * Wait for `re` on the console with terminal control stripped: pxelinux and GRUB position the
 * cursor on the serial console, and the escape sequences land anywhere in a line.
 */
async function waitForPlain(vm: ReturnType<typeof startVm>, re: RegExp, ms: number): Promise<RegExpMatchArray> {
  const end = Date.now() + ms;
  for (;;) {
    const plain = vm.console().replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
    const m = plain.match(re);
    if (m) return m;
    if (vm.proc.exitCode !== null) throw new Error(`QEMU exited before ${re}; console tail:\n${plain.slice(-2000)}`);
    if (Date.now() > end) throw new Error(`no ${re} on the console within ${ms} ms; console tail:\n${plain.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The generated per-MAC file names. */
const pxeCfg = (mac: string) => `pxelinux.cfg/01-${mac.replace(/:/g, '-')}`;

describe('firmware paths (issue 20) in the namespace lab', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;

  before(async () => {
    c.dir = tmpDir('pxeherd-e2e-fw-');
    c.statedir = path.join(c.dir, 'var');
    c.config = path.join(c.dir, 'pxeherd.yaml');
    c.lab = createLab({ name: 'phfw' });
    writeConfig(c, 'dhcp: { mode: full, range: [10.77.0.100, 10.77.0.200], router: 10.77.0.1, lease_seconds: 600 }');
    const b = pxeherd(['stage1', 'build', '--json'], { config: c.config });
    assert.equal(b.code, 0, `stage1 build failed: ${b.stderr}`);
    const marker = path.join(c.statedir, 'nodescripts', 'init', 'all', '90-e2e-marker');
    fs.mkdirSync(path.dirname(marker), { recursive: true });
    fs.writeFileSync(marker, '#!/bin/sh\necho "echo PXEHERD-E2E-MARKER node=$NODENAME group=$GROUPNAME ip=$IPADDR"\n', { mode: 0o755 });
    await startServer(c, 'full');
    process.stderr.write(`# e2e firmware: QEMU accel ${labAccel()}, logs in ${c.dir}\n`);
  });

  after(async () => {
    await stopServer(c);
    c.lab?.destroy();
    if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(c.dir, { recursive: true, force: true });
  });

  test("pxeherd copies Debian's pxelinux, GRUB and shim into the TFTP root at start and says so", () => {
    const log = fs.readFileSync(c.serverLog!, 'utf8');
    assert.match(log, /boot loaders available in [^"]*: lpxelinux\.0, ldlinux\.c32, grubx64\.efi, grub\/x86_64-efi\/http\.mod, shimx64\.efi/);
    for (const l of x86Loaders) assert.deepEqual(fs.readFileSync(path.join(c.statedir, 'tftproot', l.name)), fs.readFileSync(l.src), `${l.name} is ${l.src}`);
  });

  test('pxelinux discovery: an unknown BIOS machine of a group with boot_loader=pxelinux -> lpxelinux.0 -> pxelinux.cfg/01-<mac> -> HTTP -> registered, ready', async () => {
    cli(c, ['group', 'set', 'cluster', 'boot_loader', 'pxelinux']);
    try {
      const mac = '52:54:00:f0:00:01';
      await bootToMarker(c, {
        vm: { name: 'pxelinux-discovery', mac, firmware: 'bios' },
        expectName: 'n0000',
        need: ['node.register', 'dhcp.ack', 'tftp.done:lpxelinux.0', 'tftp.done:ldlinux.c32', `tftp.done:${pxeCfg(mac)}`, 'http.kernel', 'http.initrd', 'provision.start', 'provision.end'],
      });
    } finally {
      cli(c, ['group', 'set', 'cluster', 'boot_loader', '']);
    }
  });

  test('pxelinux disabled: a known node with boot_loader=pxelinux and boot mode disabled is told so on its console and fetches no kernel', async () => {
    const mac = '52:54:00:f0:00:02';
    cli(c, ['node', 'add', mac, 'pxedis', '--boot', 'disabled', '--set', 'boot_loader=pxelinux']);
    const since = Date.now();
    const vm = startVm({ lab: c.lab, dir: c.dir, name: 'pxelinux-disabled', mac, firmware: 'bios' });
    try {
      await waitForPlain(vm, /pxeherd: node pxedis \(52:54:00:f0:00:02\) does not boot: boot mode is "disabled"/, BOOT_MS);
      const kinds = withStore(c, (s) => s.events.query({ mac, since, limit: 1000 })).map((e) => e.kind);
      assert.ok(!kinds.includes('http.kernel'), 'no kernel was fetched');
    } finally {
      vm.kill();
    }
  });

  test("GRUB provision: OVMF's own PXE -> Debian's signed network GRUB by TFTP -> grub/grub.cfg (known by its lease) -> HTTP -> ready", async () => {
    const mac = '52:54:00:f0:00:03';
    cli(c, ['node', 'add', mac, 'grubnode', '--set', 'boot_loader=grub']);
    const r = await bootToMarker(c, {
      vm: { name: 'grub-provision', mac, firmware: 'uefi', nic: 'virtio-firmware-pxe' },
      expectName: 'grubnode',
      // Debian's network GRUB asks for $prefix/grub.cfg (/grub/grub.cfg), no per-MAC name: pxeherd
      // knows the machine by the address it leased to it.
      need: ['dhcp.ack', 'tftp.done:grubx64.efi', 'tftp.done:grub/grub.cfg', 'tftp.done:grub/x86_64-efi/http.mod', 'http.kernel', 'http.initrd', 'provision.start', 'provision.end'],
    });
    assert.ok(!r.events.some((e) => ((e.detail ?? {}) as Detail).file === 'ipxe.efi'), 'no iPXE on the way');
    assert.match(r.console, /pxeherd: grubnode boots VNFS stage1 from\s*\(http,/, 'GRUB loaded the kernel over HTTP');
  });

  test('GRUB disabled: a known node with boot_loader=grub and boot mode disabled is told so by GRUB and fetches no kernel', async () => {
    const mac = '52:54:00:f0:00:09';
    cli(c, ['node', 'add', mac, 'grubdis', '--boot', 'disabled', '--set', 'boot_loader=grub']);
    const since = Date.now();
    const vm = startVm({ lab: c.lab, dir: c.dir, name: 'grub-disabled', mac, firmware: 'uefi', nic: 'virtio-firmware-pxe' });
    try {
      await waitForPlain(vm, /pxeherd: node grubdis \(52:54:00:f0:00:09\) does not boot: boot mode is "disabled"/, BOOT_MS);
      const evs = withStore(c, (s) => s.events.query({ mac, since, limit: 1000 }));
      assert.ok(evs.some((e) => e.kind === 'tftp.done' && ((e.detail ?? {}) as Detail).file === 'grubx64.efi'), 'GRUB came by TFTP');
      assert.ok(!evs.some((e) => e.kind === 'http.kernel'), 'no kernel was fetched');
    } finally {
      vm.kill();
    }
  });

  test("Secure Boot enforced: OVMF with Microsoft's keys -> Debian's signed shim -> signed GRUB -> signed kernel (by TFTP) -> ready", async () => {
    const mac = '52:54:00:f0:00:04';
    cli(c, ['node', 'add', mac, 'sbnode', '--set', 'boot_loader=shim-grub']);
    const r = await bootToMarker(c, {
      vm: { name: 'secureboot', mac, firmware: 'uefi-secure' },
      expectName: 'sbnode',
      need: ['dhcp.ack', 'tftp.done:shimx64.efi', 'tftp.done:grubx64.efi', 'tftp.done:grub/grub.cfg', 'tftp.done:vnfs/stage1/vmlinuz', 'tftp.done:vnfs/stage1/initrd.img', 'provision.start', 'provision.end'],
    });
    assert.match(r.console, /secureboot: Secure boot enabled/, 'the kernel saw Secure Boot on: the firmware verified shim, shim verified GRUB and GRUB (through shim) the kernel');
    assert.match(r.console, /pxeherd: sbnode boots VNFS stage1 from\s*\(tftp,/, 'under Secure Boot GRUB may not load http.mod: kernel and initrd came by TFTP');
    assert.ok(!r.events.some((e) => ((e.detail ?? {}) as Detail).file === 'ipxe.efi'), 'iPXE was never offered');
  });

  test('Secure Boot enforcement is real: the same firmware refuses unsigned iPXE (an unknown machine, default chain ipxe)', async () => {
    const mac = '52:54:00:f0:00:05';
    const since = Date.now();
    const vm = startVm({ lab: c.lab, dir: c.dir, name: 'secureboot-ipxe', mac, firmware: 'uefi-secure' });
    try {
      await waitFor('the firmware to download ipxe.efi', BOOT_MS, () => withStore(c, (s) => s.events.query({ mac, since, kind: 'tftp.done', limit: 100 }).some((e) => ((e.detail ?? {}) as Detail).file === 'ipxe.efi')), 500);
      const m = await vm.waitForConsole(/failed to load Boot\w+ "UEFI PXEv4[^"]*" from [^:]*: (Access Denied|Security Violation)/, 60_000);
      process.stderr.write(`# e2e firmware: Secure Boot refused ipxe.efi: ${m[1]}\n`);
      const kinds = withStore(c, (s) => s.events.query({ mac, since, limit: 1000 })).map((e) => e.kind);
      assert.ok(!kinds.includes('http.ipxe'), 'iPXE never ran (it would have asked for its script)');
    } finally {
      vm.kill();
    }
  });

  test("UEFI HTTP boot, full DHCP: OVMF's own HTTP client (HTTPClient, no TFTP) gets the URL of iPXE EFI -> iPXE -> its script -> ready", async () => {
    const mac = '52:54:00:f0:00:06';
    cli(c, ['node', 'add', mac, 'httpipxe']);
    const r = await bootToMarker(c, {
      vm: { name: 'httpboot-ipxe', mac, firmware: 'uefi', nic: 'virtio-firmware-pxe', extraArgs: OVMF_HTTP_ONLY },
      expectName: 'httpipxe',
      need: ['dhcp.ack', 'http.file:ipxe.efi', 'http.ipxe', 'http.kernel', 'http.initrd', 'provision.start', 'provision.end'],
    });
    const first = r.events.find((e) => e.kind === 'dhcp.ack')!.detail as Detail;
    assert.equal(first.boot, 'uefi-http', 'the firmware asked as an HTTP boot client');
    assert.ok(!r.events.some((e) => e.kind.startsWith('tftp.')), 'no TFTP at all');
  });

  test("arm64 discovery: an unknown AAVMF machine (option 93 arch 11) -> Debian's signed arm64 network GRUB -> the arm64 stage one (never the x86_64 one) -> registered, ready", { skip: whyArm, timeout: ARM_BOOT_MS + 300_000 }, async () => {
    // Built here, not in before(): only this scenario needs it (arm64 kernel + busybox + GRUB from Debian, ~30 s, no emulation).
    const b = pxeherd(['stage1', 'build', '--arch', 'arm64', '--json'], { config: c.config });
    assert.equal(b.code, 0, `stage1 build --arch arm64 failed: ${b.stderr}`);
    assert.equal(JSON.parse(b.stdout).vnfs, 'stage1-arm64');
    // An unknown machine: DHCP registers it, its firmware's arch 11 picks the arm64 discovery image.
    const mac = '52:54:00:f0:00:08';
    const r = await bootToMarker(c, {
      vm: { name: 'arm64', mac, firmware: 'arm64', memMb: 768 },
      ms: ARM_BOOT_MS,
      need: ['node.register', 'dhcp.ack', 'tftp.done:grubaa64.efi', 'tftp.done:grub/grub.cfg', 'tftp.done:grub/arm64-efi/http.mod', 'http.kernel', 'http.initrd', 'provision.start', 'provision.end'],
    });
    const kernel = r.events.find((e) => e.kind === 'http.kernel')!.detail as Detail;
    assert.equal(kernel.vnfs, 'stage1-arm64', 'the arm64 machine got the arm64 discovery image');
    assert.match(r.console, /Linux version \S+-arm64/, 'an arm64 kernel ran');
  });

  test('UEFI HTTP boot, proxyDHCP beside dnsmasq: GRUB over HTTP (boot_loader grub) -> grub.cfg-<mac> over HTTP -> kernel + initrd over HTTP -> ready', async () => {
    await stopServer(c);
    writeConfig(c, 'dhcp: { mode: proxy }');
    sh('ip', ['addr', 'add', `${c.lab.prefix}.2/24`, 'dev', 'eth0'], { ns: c.lab.clientNs });
    const dns = c.lab.spawnInNs(
      'dnsmasq',
      ['--no-daemon', '--port=0', '--interface=eth0', '--bind-interfaces', '--dhcp-range=10.77.0.50,10.77.0.90,255.255.255.0,10m', `--dhcp-leasefile=${path.join(c.dir, 'dnsmasq.leases')}`, '--no-resolv', '--no-hosts', '--log-dhcp', `--pid-file=${path.join(c.dir, 'dnsmasq.pid')}`],
      { log: path.join(c.dir, 'dnsmasq.log'), ns: c.lab.clientNs },
    );
    try {
      await startServer(c, 'proxy');
      const mac = '52:54:00:f0:00:07';
      cli(c, ['node', 'add', mac, 'httpgrub', '--set', 'boot_loader=grub']);
      const r = await bootToMarker(c, {
        vm: { name: 'httpboot-grub', mac, firmware: 'uefi', nic: 'virtio-firmware-pxe', extraArgs: OVMF_HTTP_ONLY },
        expectName: 'httpgrub',
        anyMac: true,
        need: ['dhcp.proxy', 'http.file:grubx64-http.efi', `http.file:grub/grub.cfg-${mac}`, 'http.kernel', 'http.initrd', 'provision.start', 'provision.end'],
      });
      assert.ok(!r.events.some((e) => e.kind.startsWith('tftp.')), 'no TFTP at all');
      assert.match(fs.readFileSync(path.join(c.dir, 'dnsmasq.leases'), 'utf8'), /52:54:00:f0:00:07/, 'the address came from the site DHCP server');
    } finally {
      dns.kill('SIGKILL');
    }
  });
});
