/**
 * One real QEMU machine (2 CPUs, 768 MiB, an empty 2 GiB virtio disk) PXE-boots pxeherd's
 * stage-one image in a namespace: its hardware report must match what QEMU was given, and the
 * check-in loop the ready nodescript installs must keep checking in with health values.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createLab, labUnavailable, tmpDir, waitFor, type Lab } from '../lab/lab.js';
import { startServe, stopServe } from '../lab/serve.js';
import { startVm, labAccel } from '../lab/qemu.js';
import { pxeherd } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';
import type { ChildProcess } from 'node:child_process';

const why = labUnavailable(['qemu-system-x86_64', 'busybox', 'apt-get']) ?? (fs.existsSync('/usr/lib/ipxe/qemu/pxe-e1000.rom') ? undefined : 'needs ipxe-qemu (Debian package)');
const BOOT_MS = Number(process.env.PXEHERD_E2E_BOOT_MS ?? 180_000);
const MAC = '52:54:00:83:00:01';

describe('hardware inventory from a real machine', { skip: why, concurrency: false }, () => {
  let lab: Lab;
  let dir = '';
  let statedir = '';
  let config = '';
  let server: ChildProcess | undefined;
  const withStore = <T>(fn: (s: Store) => T): T => {
    const s = Store.open(statedir);
    try {
      return fn(s);
    } finally {
      s.close();
    }
  };

  before(async () => {
    dir = tmpDir('pxeherd-inv-e2e-');
    statedir = path.join(dir, 'var');
    config = path.join(dir, 'pxeherd.yaml');
    lab = createLab({ name: 'phinv', subnet: '10.83.0' });
    fs.writeFileSync(
      config,
      `statedir: ${statedir}
interface: br0
address: ${lab.serverIp}
dhcp: { mode: full, range: [10.83.0.100, 10.83.0.200], router: 10.83.0.1, lease_seconds: 600 }
tftp: { port: 69 }
http: { port: 8080 }
provisiond: { port: 0 }
admin: { port: 0 }
nodescripts: { timeout_seconds: 30 }
`,
    );
    const b = pxeherd(['stage1', 'build', '--json'], { config });
    assert.equal(b.code, 0, `stage1 build failed: ${b.stderr}`);
    // Stay up after ready (pxeherd.final=shell) so the installed check-in loop can be seen working.
    const v = JSON.parse(pxeherd(['vnfs', 'show', 'stage1', '--json'], { config }).stdout) as { cmdline: string };
    assert.equal(pxeherd(['vnfs', 'set', 'stage1', 'cmdline', `${v.cmdline} pxeherd.final=shell`], { config }).code, 0);
    assert.equal(pxeherd(['group', 'set', 'cluster', 'checkin_interval', '2'], { config }).code, 0, 'checkin_interval as a group attribute');
    const log = path.join(dir, 'server.log');
    server = await startServe(lab, config, log, ['dhcp', 'tftp', 'http'], 20_000);
    process.stderr.write(`# e2e: QEMU accel ${labAccel()}, logs in ${dir}\n`);
  });

  after(async () => {
    await stopServe(server);
    lab?.destroy();
    if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a BIOS machine with -smp 2, 768 MiB and a 2 GiB disk reports exactly that, then checks in every 2 s with uptime, load and free memory', async () => {
    const since = Date.now();
    const vm = startVm({ lab, name: 'inv', mac: MAC, firmware: 'bios', dir, memMb: 768, cpus: 2, diskMb: 2048 });
    try {
      await vm.waitForConsole(/PXEHERD-RESULT rc=0/, BOOT_MS);
      assert.match(vm.console(), /hardware inventory sent/, 'stage one says it sent the report');
      const cur = await waitFor('the inventory to be stored', 30_000, () => withStore((s) => s.inventory.current(MAC)));
      const inv = cur.data;
      assert.equal(inv.cpu.count, 2, '-smp 2');
      assert.equal(inv.firmware, 'bios');
      // The kernel keeps some memory for itself: MemTotal is below what QEMU gave, but not far.
      assert.ok(inv.memory_kb <= 768 * 1024 && inv.memory_kb > 600 * 1024, `MemTotal ${inv.memory_kb} kB for -m 768`);
      if (inv.memory_phys_bytes != null) assert.equal(inv.memory_phys_bytes, 768 * 1024 * 1024, 'the online memory blocks add up to -m 768');
      assert.equal(cur.facts.mem_gb, inv.memory_phys_bytes != null ? 0.8 : Math.round((inv.memory_kb / 1048576) * 10) / 10);
      const disk = inv.disks.find((d) => d.size_bytes === 2048 * 1024 * 1024);
      assert.ok(disk, `the 2 GiB disk is listed: ${JSON.stringify(inv.disks)}`);
      assert.equal(disk.name, 'vda');
      assert.equal(disk.serial, 'PXEHERDINV', 'with the serial QEMU was given');
      const nic = inv.nics.find((n) => n.mac === MAC);
      assert.ok(nic, `the boot NIC is listed: ${JSON.stringify(inv.nics)}`);
      assert.equal(nic.driver, 'e1000');
      assert.equal(nic.speed_mbps, 1000);
      const kinds = withStore((s) => s.events.query({ mac: MAC, since, order: 'asc', limit: 1000 })).map((e) => e.kind);
      assert.ok(kinds.includes('inventory.first'), `inventory.first recorded (${[...new Set(kinds)].join(' ')})`);
      assert.ok(kinds.indexOf('inventory.first') < kinds.indexOf('provision.start'), 'the report came before init was asked for');
      const listed = JSON.parse(pxeherd(['node', 'list', 'hw:cpus=2 and hw:disks>=1 and hw:firmware,bios', '--json'], { config }).stdout).nodes;
      assert.deepEqual(
        listed.map((n: { mac: string }) => n.mac),
        [MAC],
      );

      // The loop installed by the ready nodescript: more ready check-ins, now carrying health.
      const checkin = await waitFor('a periodic check-in with health', 60_000, () =>
        withStore((s) => s.events.query({ mac: MAC, kind: 'provision.start', since, limit: 100 })).find((e) => (e.detail as { health?: unknown }).health),
      );
      const h = (checkin.detail as { state: string; health: { uptime: number; load: number; memfree_kb: number } });
      assert.equal(h.state, 'ready');
      assert.ok(h.health.uptime > 0 && h.health.memfree_kb > 100_000 && h.health.memfree_kb < 768 * 1024, JSON.stringify(h.health));
      const health = withStore((s) => s.inventory.health(MAC));
      assert.ok(health && health.memfree_kb! > 0, 'the latest health is stored');
      const show = JSON.parse(pxeherd(['node', 'show', MAC, '--json'], { config }).stdout).nodes[0];
      assert.equal(show.stale, false);
      assert.equal(show.hardware.facts.cpus, 2);

      // Power the machine off: after three intervals of 2 s without a check-in it is stale.
      vm.kill();
      await waitFor('the node to turn stale', 15_000, () => JSON.parse(pxeherd(['node', 'status', MAC, '--json'], { config }).stdout).nodes[0].stale === true);
    } finally {
      vm.kill();
    }
  });
});
