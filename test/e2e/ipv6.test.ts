/**
 * IPv6 netboot end to end, in an IPv6-only namespace lab (br0 holds fd00:77::1/64 and no IPv4
 * address; pxeherd serves DHCPv6 and router advertisements, DHCPv4 is off). Each machine boots
 * to the stage-one marker printed by a nodescript:
 *   - iPXE over IPv6: OVMF with the iPXE EFI ROM; DHCPv6 gives the iPXE script URL;
 *   - OVMF's own IPv6 PXE (virtio-net, no ROM; its PXEv4 turned off through fw_cfg): the
 *     DHCPv6 boot-file URL tftp://[fd00:77::1]/ipxe.efi, TFTP over IPv6, then iPXE as above;
 *   - OVMF's IPv6 HTTP boot (vendor class HTTPClient; both PXE turned off): the loader by
 *     HTTP, then iPXE as above.
 * Stage one gets its own address by SLAAC from pxeherd's advertisement (Debian's busybox has no
 * DHCPv6 client) and fetches its nodescripts from the IPv6 URL its kernel command line carries.
 * The master's records must tell the whole story: registration by MAC, state ready, timeline.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createLab, labUnavailable, tmpDir, waitFor, type Lab } from '../lab/lab.js';
import { startServe, stopServe } from '../lab/serve.js';
import { startVm, labAccel, type VmOptions } from '../lab/qemu.js';
import { pxeherd } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import type { ChildProcess } from 'node:child_process';

const why =
  labUnavailable(['qemu-system-x86_64', 'busybox', 'apt-get']) ??
  (fs.existsSync('/usr/lib/ipxe/qemu/efi-e1000.rom') ? undefined : 'needs ipxe-qemu (Debian package)') ??
  (fs.existsSync('/usr/share/OVMF/OVMF_CODE_4M.fd') ? undefined : 'needs ovmf (Debian package)') ??
  (fs.existsSync(path.resolve(import.meta.dirname, '../../native/ra/pxeherd-ra')) ? undefined : 'needs native/ra built (make -C native): router advertisements');
const BOOT_MS = Number(process.env.PXEHERD_E2E_BOOT_MS ?? 240_000);
const PREFIX = 'fd00:77::';

interface Ctx {
  lab: Lab;
  dir: string;
  config: string;
  statedir: string;
  server?: ChildProcess;
}

function withStore<T>(c: Ctx, fn: (s: Store) => T): T {
  const s = Store.open(c.statedir);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

async function bootAndCheck(c: Ctx, o: { name: string; mac: string; nic: 'e1000-ipxe' | 'virtio-firmware-pxe'; fwCfg?: VmOptions['fwCfg']; need: string[] }) {
  const since = Date.now();
  const vm = startVm({ lab: c.lab, name: o.name, mac: o.mac, firmware: 'uefi', nic: o.nic, fwCfg: o.fwCfg, dir: c.dir });
  try {
    const m = await vm.waitForConsole(/PXEHERD-E2E-MARKER node=(\S+) group=(\S+)/, BOOT_MS);
    const markerSeconds = (Date.now() - vm.started) / 1000;
    await vm.waitForConsole(/PXEHERD-RESULT rc=0/, 60_000);
    assert.match(vm.console(), /pxeherd-stage1: address fd00:77::\S+ \(IPv6, SLAAC\)/, 'stage one configured IPv6 by SLAAC');
    const node = await waitFor(`${o.mac} to check in as ready`, 60_000, () =>
      withStore(c, (s) => {
        const n = s.nodes.byMac(o.mac);
        const logged = s.events.query({ mac: o.mac, since, kind: 'provision.start', limit: 100 }).some((e) => (e.detail as { state?: string }).state === 'ready');
        return n && n.state === 'ready' && logged ? n : undefined;
      }),
    );
    assert.match(node.name, /^n\d{4}$/, 'auto-registered by its MAC with the pattern name');
    assert.equal(m[1], node.name, 'the marker carries NODENAME from the master-side environment');
    const lease = withStore(c, (s) => s.leases6.byMac(o.mac));
    assert.ok(lease && lease.state === 'bound' && lease.ip.startsWith('fd00:77::'), `a bound DHCPv6 lease (${JSON.stringify(lease)})`);
    const evs = withStore(c, (s) => s.events.query({ mac: o.mac, since, order: 'asc', limit: 10000 }));
    const kinds = evs.map((e) => e.kind);
    for (const k of [...o.need, 'dhcp6.solicit', 'dhcp6.reply', 'http.ipxe', 'http.kernel', 'http.initrd', 'provision.start', 'provision.end']) {
      assert.ok(kinds.includes(k), `the timeline of ${o.name} shows ${k} (has: ${[...new Set(kinds)].join(' ')})`);
    }
    const order = (k: string) => kinds.indexOf(k);
    assert.ok(order('dhcp6.reply') < order('http.ipxe') && order('http.ipxe') < order('http.kernel') && order('http.initrd') < order('provision.start'), 'events in boot order');
    const starts = evs.filter((e) => e.kind === 'provision.start').map((e) => (e.detail as { state: string }).state);
    assert.deepEqual(starts, ['init', 'ready'], 'state went init -> ready');
    const ipxe = evs.find((e) => e.kind === 'http.ipxe')!;
    assert.match(String((ipxe.detail as { ip: string }).ip), /^fd00:77::/, 'the iPXE script was fetched over IPv6');
    return { markerSeconds };
  } finally {
    vm.kill();
  }
}

describe('IPv6 netboot in an IPv6-only namespace lab', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;

  before(async () => {
    c.dir = tmpDir('pxeherd-e2e6-');
    c.statedir = path.join(c.dir, 'var');
    c.config = path.join(c.dir, 'pxeherd.yaml');
    c.lab = createLab({ name: 'phe6', ipv6: { prefix: PREFIX }, ipv4: false });
    fs.writeFileSync(
      c.config,
      `statedir: ${c.statedir}
interface: br0
dhcp: { mode: off }
dhcp6: { mode: full, prefix: '${PREFIX}/64', range: ['${PREFIX}1000', '${PREFIX}1fff'], lease_seconds: 600 }
tftp: { port: 69 }
http: { port: 8080 }
provisiond: { port: 987 }
admin: { port: 0 }
nodescripts: { timeout_seconds: 30 }
log: { level: debug }
`,
    );
    const b = pxeherd(['stage1', 'build', '--json'], { config: c.config });
    assert.equal(b.code, 0, `stage1 build failed: ${b.stderr}`);
    const marker = path.join(c.statedir, 'nodescripts', 'init', 'all', '90-e2e-marker');
    fs.mkdirSync(path.dirname(marker), { recursive: true });
    fs.writeFileSync(marker, '#!/bin/sh\necho "echo PXEHERD-E2E-MARKER node=$NODENAME group=$GROUPNAME"\n', { mode: 0o755 });
    const log = path.join(c.dir, 'server.log');
    c.server = await startServe(c.lab, c.config, log, ['dhcp6', 'tftp', 'http', 'provisiond']);
    process.stderr.write(`# e2e6: QEMU accel ${labAccel()}, logs in ${c.dir}\n`);
  });

  after(async () => {
    await stopServe(c.server);
    c.lab?.destroy();
    if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(c.dir, { recursive: true, force: true });
  });

  test('iPXE over IPv6 (OVMF + iPXE EFI ROM): DHCPv6 -> iPXE script over HTTP [v6] -> stage one (SLAAC) -> marker', async () => {
    const r = await bootAndCheck(c, { name: 'ipxe6', mac: '52:54:00:e6:00:01', nic: 'e1000-ipxe', need: ['dhcp6.request'] });
    process.stderr.write(`# e2e6: iPXE over IPv6 reached the marker in ${r.markerSeconds.toFixed(1)} s\n`);
  });

  test("OVMF's own IPv6 PXE (virtio, no ROM): DHCPv6 boot-file URL -> TFTP ipxe.efi over IPv6 -> iPXE -> HTTP", async () => {
    const r = await bootAndCheck(c, {
      name: 'pxe6',
      mac: '52:54:00:e6:00:02',
      nic: 'virtio-firmware-pxe',
      fwCfg: { 'opt/org.tianocore/IPv4PXESupport': 'n' },
      need: ['tftp.done'],
    });
    process.stderr.write(`# e2e6: OVMF IPv6 PXE reached the marker in ${r.markerSeconds.toFixed(1)} s\n`);
  });

  test("OVMF's IPv6 HTTP boot (vendor class HTTPClient): the loader by HTTP over IPv6 -> iPXE -> HTTP", async () => {
    const r = await bootAndCheck(c, {
      name: 'http6',
      mac: '52:54:00:e6:00:03',
      nic: 'virtio-firmware-pxe',
      fwCfg: { 'opt/org.tianocore/IPv4PXESupport': 'n', 'opt/org.tianocore/IPv6PXESupport': 'n' },
      need: ['http.file'],
    });
    process.stderr.write(`# e2e6: OVMF IPv6 HTTP boot reached the marker in ${r.markerSeconds.toFixed(1)} s\n`);
  });
});
