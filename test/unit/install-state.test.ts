import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { planDisk } from '../../src/install/plan.js';
import { installEnv, planEnv } from '../../src/install/env.js';
import { installReportHandler, localBootServed } from '../../src/install/state.js';
import { Store } from '../../src/store/store.js';
import { openDatabase } from '../../src/store/db.js';
import type { Disk } from '../../src/inventory/inventory.js';
import { ROOT } from '../helpers/cli.js';

const vda: Disk = { name: 'vda', size_bytes: 4 * 1024 ** 3, model: '', serial: 'PX1', rotational: 0, removable: 0 };

test('the plan as nodescript variables: disk, firmware, the sfdisk script and one line per partition', () => {
  const env = planEnv(planDisk({ node: 'n1', attrs: { install: 'disk', install_swap: '512M' }, disks: [vda], firmware: 'uefi' }));
  assert.equal(env.INSTALL, 'disk');
  assert.equal(env.INSTALL_DISK, '/dev/vda');
  assert.equal(env.INSTALL_FIRMWARE, 'uefi');
  assert.match(env.INSTALL_SFDISK!, /^label: gpt\n/);
  assert.deepEqual(env.INSTALL_PARTS!.split('\n'), ['1 esp /dev/vda1 vfat /boot/efi mkfs.vfat -F 32 -n ESP', '2 swap /dev/vda2 swap - mkswap -L swap', '3 root /dev/vda3 ext4 / mkfs.ext4 -F -L root']);
  const bios = planEnv(planDisk({ node: 'n1', attrs: { install: 'disk' }, disks: [vda], firmware: 'bios' }));
  assert.equal(bios.INSTALL_PARTS!.split('\n')[0], '1 bios_boot /dev/vda1 - - -');
});

test('installEnv: nothing for a stateless node; a plan error (or a VNFS without a root) becomes INSTALL_ERROR naming the attribute', () => {
  const plan = (attrs: Record<string, string>) => () => planDisk({ node: 'n1', attrs, disks: [vda], firmware: 'bios' });
  assert.deepEqual(installEnv({}, true, plan({})), {});
  assert.equal(installEnv({ install: 'disk' }, true, plan({ install: 'disk' })).INSTALL_DISK, '/dev/vda');
  const nf = installEnv({ install: 'disk', install_swap: '8G' }, true, plan({ install: 'disk', install_swap: '8G' }));
  assert.match(nf.INSTALL_ERROR!, /the plan does not fit vda/);
  assert.equal(nf.INSTALL_ERROR_ATTR, 'install_swap');
  assert.equal(decodeURIComponent(nf.INSTALL_ERROR_URL!), nf.INSTALL_ERROR);
  const nd = installEnv({ install: 'disk', install_disk: 'serial:X' }, true, plan({ install: 'disk', install_disk: 'serial:X' }));
  assert.match(nd.INSTALL_ERROR!, /no disk matches install_disk=serial:X \(candidates: vda \(4 GiB, serial PX1\)\)/);
  assert.match(installEnv({ install: 'disk' }, false, plan({})).INSTALL_ERROR!, /needs a VNFS with a root filesystem/);
});

const POLICY = { pattern: 'n####', firstNumber: 0, defaultGroup: '', defaultVnfs: '' };

function store(): Store {
  return new Store(openDatabase(':memory:'));
}

test('install.done records the revision (the previous one kept for a rollback) and switches the node to boot mode local', () => {
  const s = store();
  const n = s.nodes.add({ mac: '52:54:00:00:00:01', name: 'n1', vnfs: 'deb12' }, POLICY);
  const h = installReportHandler(s, s.events);
  h(n, 'install.done', { rev: 3, vnfs: 'deb12', disk: 'vda', firmware: 'bios' });
  assert.equal(s.nodes.byName('n1')!.boot, 'local');
  assert.deepEqual({ ...s.installs.get(n.mac)!, installedAt: 0 }, { mac: n.mac, vnfs: 'deb12', rev: 3, disk: 'vda', firmware: 'bios', installedAt: 0, previous: null, localBootAt: null, localBootFailures: 0 });
  h(s.nodes.byName('n1')!, 'install.done', { rev: 4, vnfs: 'deb12', disk: 'vda', firmware: 'bios' });
  const i = s.installs.get(n.mac)!;
  assert.equal(i.rev, 4);
  assert.equal(i.previous?.rev, 3);
  const rec = s.events.query({ node: 'n1', kind: 'install.recorded' });
  assert.equal(rec.length, 2);
  assert.equal((rec[0]!.detail as { previous: string }).previous, 'deb12@3');
  h(s.nodes.byName('n1')!, 'image.verify', { ok: true });
  assert.equal(s.installs.get(n.mac)!.rev, 4, 'other reports change nothing');
});

test('a local boot handed out again without a check-in from the OS in between is a failed disk boot: event and node state, counted', () => {
  const s = store();
  const n = s.nodes.add({ mac: '52:54:00:00:00:02', name: 'n2', vnfs: 'deb12' }, POLICY);
  localBootServed(s, s.events, n, 1000);
  assert.equal(s.events.query({ kind: 'install.local_boot_failed' }).length, 0, 'a node never installed by pxeherd: nothing to say');
  installReportHandler(s, s.events)(n, 'install.done', { rev: 1, vnfs: 'deb12', disk: 'vda', firmware: 'bios' });
  const t = Date.now();
  localBootServed(s, s.events, n, t);
  localBootServed(s, s.events, n, t + 15_000);
  assert.equal(s.events.query({ kind: 'install.local_boot_failed' }).length, 0, 'two network entries of one firmware pass (OVMF PXE, then iPXE): one boot');
  s.events.record({ mac: n.mac, node: 'n2', kind: 'node.checkin', detail: { first: true } });
  s.events.flush();
  localBootServed(s, s.events, n, Date.now() + 70_000);
  assert.equal(s.events.query({ kind: 'install.local_boot_failed' }).length, 0, 'the OS checked in between: a good disk boot');
  localBootServed(s, s.events, n, Date.now() + 140_000);
  localBootServed(s, s.events, n, Date.now() + 210_000);
  const f = s.events.query({ kind: 'install.local_boot_failed', order: 'asc' });
  assert.equal(f.length, 2);
  assert.deepEqual(f.map((e) => (e.detail as { failures: number }).failures), [1, 2]);
  assert.match((f[0]!.detail as { hint: string }).hint, /came back to PXE without the OS checking in/);
  assert.equal(s.nodes.byName('n2')!.state, 'local_boot_failed');
});

test('the disk nodescripts are valid sh and print nothing for a stateless node', () => {
  for (const f of ['08-disk-plan', '20-disk-install', '85-disk-boot']) {
    const p = path.join(ROOT, 'nodescripts/init/all', f);
    execFileSync('sh', ['-n', p]);
    assert.equal(execFileSync('sh', [p], { env: { VNFSROOT: '1', PATH: process.env.PATH } }).toString(), '');
  }
});

test('08-disk-plan: a refused plan gives the node a console line, an install.fail report and exit 1', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-disk-'));
  try {
    const env = { PATH: process.env.PATH, VNFSROOT: '1', NODENAME: 'n1', ...installEnv({ install: 'disk', install_disk: "serial:it's" }, true, () => planDisk({ node: 'n1', attrs: { install: 'disk', install_disk: "serial:it's" }, disks: [vda], firmware: 'bios' })) };
    const out = execFileSync('sh', [path.join(ROOT, 'nodescripts/init/all/08-disk-plan')], { env }).toString();
    // Run what the node would run, with a pxeherd_report that prints its arguments.
    const node = `pxeherd_report() { printf 'REPORT %s\\n' "$*"; }\n${out}`;
    const r = (() => {
      try {
        execFileSync('sh', ['-c', node], { stdio: ['ignore', 'pipe', 'pipe'] });
        return { code: 0, stdout: '', stderr: '' };
      } catch (e) {
        const x = e as { status: number; stdout: Buffer; stderr: Buffer };
        return { code: x.status, stdout: x.stdout.toString(), stderr: x.stderr.toString() };
      }
    })();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^pxeherd: NOT INSTALLING n1 to disk: node n1: no disk matches install_disk=serial:it's \(candidates: vda \(4 GiB, serial PX1\)\) \(attribute install_disk\)$/m);
    const rep = /^REPORT install\.fail stage=plan attr=install_disk error=(.*)$/m.exec(r.stdout);
    assert.ok(rep, r.stdout);
    assert.equal(decodeURIComponent(rep[1]!), "node n1: no disk matches install_disk=serial:it's (candidates: vda (4 GiB, serial PX1))");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a machine back at PXE after its OS asked for an address, or after pxeherd powered it off or cycled it, is no failed disk boot', () => {
  const s = store();
  const n = s.nodes.add({ mac: '52:54:00:00:00:03', name: 'n3', vnfs: 'deb12' }, POLICY);
  installReportHandler(s, s.events)(n, 'install.done', { rev: 1, vnfs: 'deb12', disk: 'vda', firmware: 'bios' });
  const failed = () => s.events.query({ kind: 'install.local_boot_failed' }).length;
  const t = Date.now();
  localBootServed(s, s.events, n, t);
  s.events.record({ mac: n.mac, node: 'n3', time: t + 1000, kind: 'power.cycle', detail: { action: 'cycle', ok: true, skipped: false } });
  localBootServed(s, s.events, n, t + 70_000);
  assert.equal(failed(), 0, 'rebooted by pxeherd before the OS checked in');
  s.events.record({ mac: n.mac, node: 'n3', time: t + 71_000, kind: 'dhcp.ack', detail: { ip: '10.0.0.5', boot: 'none' } });
  localBootServed(s, s.events, n, t + 140_000);
  assert.equal(failed(), 0, "the disk's OS asked for an address (a DHCP client that is no network-boot client)");
  s.events.record({ mac: n.mac, node: 'n3', time: t + 141_000, kind: 'dhcp.ack', detail: { ip: '10.0.0.5', boot: 'ipxe-script' } });
  s.events.record({ mac: n.mac, node: 'n3', time: t + 142_000, kind: 'power.status', detail: { action: 'status', ok: true } });
  localBootServed(s, s.events, n, t + 210_000);
  assert.equal(failed(), 1, "iPXE's own DHCP and a power status query are no sign of the OS");
  assert.equal(s.nodes.byName('n3')!.state, 'local_boot_failed');
});

test('08-disk-plan: a plan for the other firmware than the machine booted with stops it before the download, install.fail stage bootloader', () => {
  const booted = fs.existsSync('/sys/firmware/efi') ? 'uefi' : 'bios';
  const other = booted === 'uefi' ? 'bios' : 'uefi';
  const run = (firmware: string) => {
    const attrs = { install: 'disk', install_firmware: firmware };
    const env = { PATH: process.env.PATH, VNFSROOT: '1', NODENAME: 'n1', ...installEnv(attrs, true, () => planDisk({ node: 'n1', attrs, disks: [vda], firmware: booted })) };
    const out = execFileSync('sh', [path.join(ROOT, 'nodescripts/init/all/08-disk-plan')], { env }).toString();
    try {
      const stdout = execFileSync('sh', ['-c', `pxeherd_report() { printf 'REPORT %s\\n' "$*"; }\n${out}\necho PASSED`], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
      return { code: 0, stdout, stderr: '' };
    } catch (e) {
      const x = e as { status: number; stdout: Buffer; stderr: Buffer };
      return { code: x.status, stdout: x.stdout.toString(), stderr: x.stderr.toString() };
    }
  };
  const ok = run(booted);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^PASSED$/m, 'the same firmware: the boot goes on');
  const bad = run(other);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, new RegExp(`^pxeherd: NOT INSTALLING n1 to disk \\(bootloader\\): the plan installs a ${other} boot loader but n1 booted in ${booted} mode, so its firmware would not start that disk\\. Unset install_firmware`, 'm'));
  const rep = /^REPORT install\.fail stage=bootloader attr=install_firmware error=(.*)$/m.exec(bad.stdout);
  assert.ok(rep, bad.stdout);
  assert.match(decodeURIComponent(rep[1]!), /Nothing was downloaded or written$/);
});

test('install events on the timeline and in reinstall --wait: install.fail names its stage and ends the wait, a failed disk boot is a failure', async () => {
  const { summarize, isFailure } = await import('../../src/admin/timeline.js');
  const { followBoot } = await import('../../src/lifecycle/stages.js');
  const fail = { kind: 'install.fail', detail: { stage: 'bootloader', error: 'the plan installs a uefi boot loader but n1 booted in bios mode' } };
  assert.equal(summarize(fail), 'stage bootloader · the plan installs a uefi boot loader but n1 booted in bios mode');
  assert.ok(isFailure(fail));
  const lbf = { kind: 'install.local_boot_failed', detail: { vnfs: 'deb12', rev: 3, failures: 1, hint: 'see the console' } };
  assert.equal(summarize(lbf), 'deb12 r3 · 1 failed disk boot in a row · see the console');
  assert.ok(isFailure(lbf));
  const p = followBoot([{ kind: 'dhcp.discover', detail: {} }, { kind: 'http.initrd', detail: {} }, { kind: 'provision.start', detail: { state: 'init' } }, fail, { kind: 'provision.end', detail: { state: 'init', ok: false } }]);
  assert.equal(p.failure, 'install to disk failed at bootloader: the plan installs a uefi boot loader but n1 booted in bios mode');
  assert.equal(p.ready, false);
});
