/**
 * Real machines PXE-boot against `pxeherd serve` inside a network namespace: QEMU with
 * BIOS and UEFI firmware, iPXE NIC ROMs and the firmware's own PXE, proxyDHCP beside
 * dnsmasq, and the Perceus provisiond wire protocol. Each boot must reach a console marker
 * printed by a nodescript, and the master's records must tell the whole story.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createLab, labUnavailable, sh, tmpDir, waitFor, type Lab } from '../lab/lab.js';
import { startVm, labAccel } from '../lab/qemu.js';
import { startServe, stopServe } from '../lab/serve.js';
import { pxeherd } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import type { ChildProcess } from 'node:child_process';

const why = labUnavailable(['qemu-system-x86_64', 'busybox', 'dnsmasq', 'apt-get']) ?? (fs.existsSync('/usr/lib/ipxe/qemu/pxe-e1000.rom') ? undefined : 'needs ipxe-qemu (Debian package)');
const BOOT_MS = Number(process.env.PXEHERD_E2E_BOOT_MS ?? 180_000);

interface Ctx {
  lab: Lab;
  dir: string;
  config: string;
  statedir: string;
  server?: ChildProcess;
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
admin: { port: 18081 }
nodescripts: { timeout_seconds: 30 }
log: { level: debug }
`,
  );
}

async function startServer(c: Ctx, name: string): Promise<void> {
  c.server = await startServe(c.lab, c.config, path.join(c.dir, `${name}.server.log`), ['dhcp', 'tftp', 'http', 'provisiond'], 20_000);
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

/** Boot one machine to its marker and check the master's records of the boot. */
async function bootAndCheck(
  c: Ctx,
  o: { name: string; mac: string; firmware: 'bios' | 'uefi'; nic?: 'e1000-ipxe' | 'virtio-firmware-pxe'; expectName: string; expectTftp?: boolean; via?: 'http' | 'tcp'; dhcpEvent?: string },
) {
  const since = Date.now();
  const vm = startVm({ lab: c.lab, name: o.name, mac: o.mac, firmware: o.firmware, nic: o.nic, dir: c.dir });
  try {
    const m = await vm.waitForConsole(/PXEHERD-E2E-MARKER node=(\S+) group=(\S+) ip=(\S*)/, BOOT_MS);
    const markerSeconds = (Date.now() - vm.started) / 1000;
    assert.equal(m[1], o.expectName, 'the marker carries NODENAME from the master-side environment');
    assert.equal(m[2], 'cluster', 'and GROUPNAME');
    await vm.waitForConsole(/PXEHERD-RESULT rc=0/, 60_000);
    // The node checks in with "ready" after its init scripts worked. The state is written when
    // the request arrives, its provision.start event a moment later (events are written in
    // batches): wait for both, or a quick look finds the state without the event.
    const node = await waitFor(`${o.expectName} to check in as ready`, 60_000, () =>
      withStore(c, (s) => {
        const n = s.nodes.byMac(o.mac);
        const logged = s.events.query({ mac: o.mac, since, kind: 'provision.start', limit: 100 }).some((e) => (e.detail as { state?: string }).state === 'ready');
        return n && n.state === 'ready' && logged ? n : undefined;
      }),
    );
    assert.equal(node.name, o.expectName, 'auto-registered with the next pattern name');
    assert.match(node.ip, /^10\.77\.0\.\d+$/, 'its address is recorded');
    assert.ok(node.lastContact! >= since, 'and its last contact');
    assert.equal(m[3], node.ip, 'IPADDR seen by the nodescript is the node address');
    const evs = withStore(c, (s) => s.events.query({ mac: o.mac, since, order: 'asc', limit: 10000 }));
    const kinds = evs.map((e) => e.kind);
    const dhcpEvent = o.dhcpEvent ?? 'dhcp.ack';
    const need = [dhcpEvent, 'http.ipxe', 'http.kernel', 'http.initrd', 'provision.start', 'provision.end'];
    if (o.expectTftp) need.push('tftp.done');
    for (const k of need) assert.ok(kinds.includes(k), `the timeline of ${o.name} shows ${k} (has: ${[...new Set(kinds)].join(' ')})`);
    const starts = evs.filter((e) => e.kind === 'provision.start').map((e) => (e.detail as { state: string; via: string }));
    assert.deepEqual(
      starts.map((s) => s.state),
      ['init', 'ready'],
      'state went init -> ready',
    );
    if (o.via) assert.ok(starts.every((s) => s.via === o.via), `provisioned over ${o.via}`);
    const order = (k: string) => kinds.indexOf(k);
    assert.ok(order(dhcpEvent) < order('http.ipxe') && order('http.ipxe') < order('http.kernel') && order('http.initrd') < order('provision.start'), 'events in boot order');
    return { markerSeconds, console: vm.console() };
  } finally {
    vm.kill();
  }
}

describe('end-to-end boots in a network namespace', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;

  before(async () => {
    c.dir = tmpDir('pxeherd-e2e-');
    c.statedir = path.join(c.dir, 'var');
    c.config = path.join(c.dir, 'pxeherd.yaml');
    c.lab = createLab({ name: 'phe2e' });
    writeConfig(c, 'dhcp: { mode: full, range: [10.77.0.100, 10.77.0.200], router: 10.77.0.1, lease_seconds: 600 }');
    // The stage-one image, built with pxeherd's own builder and registered as VNFS stage1.
    const b = pxeherd(['stage1', 'build', '--json'], { config: c.config });
    assert.equal(b.code, 0, `stage1 build failed: ${b.stderr}`);
    // A nodescript whose node-side output is the marker, built from the master-side environment.
    const marker = path.join(c.statedir, 'nodescripts', 'init', 'all', '90-e2e-marker');
    fs.mkdirSync(path.dirname(marker), { recursive: true });
    fs.writeFileSync(marker, '#!/bin/sh\necho "echo PXEHERD-E2E-MARKER node=$NODENAME group=$GROUPNAME ip=$IPADDR"\n', { mode: 0o755 });
    await startServer(c, 'full');
    process.stderr.write(`# e2e: QEMU accel ${labAccel()}, logs in ${c.dir}\n`);
  });

  after(async () => {
    await stopServer(c);
    c.lab?.destroy();
    if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(c.dir, { recursive: true, force: true });
  });

  test('BIOS machine with the iPXE e1000 ROM: DHCP -> iPXE script -> stage one over HTTP -> init nodescripts -> marker', async () => {
    const r = await bootAndCheck(c, { name: 'bios', mac: '52:54:00:e2:00:01', firmware: 'bios', expectName: 'n0000' });
    process.stderr.write(`# e2e: BIOS boot reached the marker in ${r.markerSeconds.toFixed(1)} s\n`);
  });

  test('UEFI machine (OVMF) with the iPXE EFI ROM boots the same way', async () => {
    const r = await bootAndCheck(c, { name: 'uefi', mac: '52:54:00:e2:00:02', firmware: 'uefi', expectName: 'n0001' });
    process.stderr.write(`# e2e: UEFI boot reached the marker in ${r.markerSeconds.toFixed(1)} s\n`);
  });

  test("UEFI chainload: OVMF's own PXE (virtio, no ROM) -> TFTP ipxe.efi -> iPXE -> HTTP", async () => {
    const r = await bootAndCheck(c, { name: 'chain', mac: '52:54:00:e2:00:03', firmware: 'uefi', nic: 'virtio-firmware-pxe', expectName: 'n0002', expectTftp: true });
    process.stderr.write(`# e2e: UEFI chainload reached the marker in ${r.markerSeconds.toFixed(1)} s\n`);
  });

  test('Perceus wire protocol: stage one asks provisiond on TCP 987 with busybox nc and gets the same scripts', async () => {
    const v = pxeherd(['vnfs', 'show', 'stage1', '--json'], { config: c.config });
    const cmdline = JSON.parse(v.stdout).cmdline as string;
    assert.equal(pxeherd(['vnfs', 'set', 'stage1', 'cmdline', `${cmdline} pxeherd.provisiond=${c.lab.serverIp}:987`], { config: c.config }).code, 0);
    try {
      await bootAndCheck(c, { name: 'tcp', mac: '52:54:00:e2:00:05', firmware: 'bios', expectName: 'n0003', via: 'tcp' });
    } finally {
      pxeherd(['vnfs', 'set', 'stage1', 'cmdline', cmdline], { config: c.config });
    }
  });

  test('a failing nodescript: the console shows the pxeherd error naming the script, the event log holds its stderr', async () => {
    const fail = path.join(c.statedir, 'nodescripts', 'init', 'node', 'n0000', '50-e2e-fail');
    fs.mkdirSync(path.dirname(fail), { recursive: true });
    fs.writeFileSync(fail, '#!/bin/sh\necho "e2e-stderr: disk r12 missing" >&2\nexit 3\n', { mode: 0o755 });
    const since = Date.now();
    const vm = startVm({ lab: c.lab, name: 'bios-fail', mac: '52:54:00:e2:00:01', firmware: 'bios', dir: c.dir });
    try {
      await vm.waitForConsole(/pxeherd: nodescript init\/node\/n0000\/50-e2e-fail failed: [^\n]*exit/, BOOT_MS);
      const rc = await vm.waitForConsole(/PXEHERD-RESULT rc=(\d+)/, 60_000);
      assert.notEqual(rc[1], '0', "the node's shell exits non-zero");
      assert.ok(!/PXEHERD-E2E-MARKER/.test(vm.console()), 'scripts after the failure did not run');
      const fails = withStore(c, (s) => s.events.query({ node: 'n0000', kind: 'nodescript.fail', since }));
      assert.equal(fails.length, 1);
      assert.match(String((fails[0]!.detail as { stderr: string }).stderr), /e2e-stderr: disk r12 missing/);
    } finally {
      vm.kill();
      fs.rmSync(path.dirname(fail), { recursive: true, force: true });
    }
  });

  test('metrics scraped after the boots show non-zero counters for every protocol used', () => {
    const text = sh('curl', ['-sf', 'http://127.0.0.1:18081/metrics'], { ns: c.lab.ns });
    const total = (re: RegExp) =>
      text
        .split('\n')
        .filter((l) => re.test(l))
        .reduce((a, l) => a + Number(l.trim().split(/\s+/).pop()), 0);
    assert.ok(total(/^pxeherd_dhcp_messages_total\{/) > 0, 'DHCP messages counted');
    assert.ok(total(/^pxeherd_tftp_transfers_total\{[^}]*\bresult="ok"[^}]*\}/) > 0, 'TFTP transfers counted (chainload)');
    assert.ok(total(/^pxeherd_tftp_bytes_sent_total/) > 0, 'TFTP bytes counted');
    assert.ok(total(/^pxeherd_http_requests_total\{/) > 0, 'HTTP boot requests counted');
    assert.ok(total(/^pxeherd_provision_duration_seconds_count/) > 0, 'provision durations observed');
    assert.ok(total(/^pxeherd_nodescript_failures_total/) > 0, 'the failing nodescript counted');
    assert.ok(total(/^pxeherd_nodes\{[^}]*\bstate="ready"[^}]*\}/) >= 3, 'nodes by state');
  });

  test('proxyDHCP: dnsmasq hands out addresses only, pxeherd in proxy mode supplies the boot, a BIOS machine boots', async () => {
    await stopServer(c);
    writeConfig(c, 'dhcp: { mode: proxy }');
    // The site DHCP server is another host on the segment: the lab's client namespace.
    sh('ip', ['addr', 'add', `${c.lab.prefix}.2/24`, 'dev', 'eth0'], { ns: c.lab.clientNs });
    const dns = c.lab.spawnInNs(
      'dnsmasq',
      ['--no-daemon', '--port=0', '--interface=eth0', '--bind-interfaces', '--dhcp-range=10.77.0.50,10.77.0.90,255.255.255.0,10m', `--dhcp-leasefile=${path.join(c.dir, 'dnsmasq.leases')}`, '--no-resolv', '--no-hosts', '--log-dhcp', `--pid-file=${path.join(c.dir, 'dnsmasq.pid')}`],
      { log: path.join(c.dir, 'dnsmasq.log'), ns: c.lab.clientNs },
    );
    try {
      await startServer(c, 'proxy');
      const r = await bootAndCheck(c, { name: 'proxy', mac: '52:54:00:e2:00:04', firmware: 'bios', expectName: 'n0004', dhcpEvent: 'dhcp.proxy' });
      process.stderr.write(`# e2e: proxyDHCP boot reached the marker in ${r.markerSeconds.toFixed(1)} s\n`);
      assert.match(fs.readFileSync(path.join(c.dir, 'dnsmasq.leases'), 'utf8'), /52:54:00:e2:00:04/, 'the address came from the site DHCP server');
    } finally {
      dns.kill('SIGKILL');
    }
  });
});
