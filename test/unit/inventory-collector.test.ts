/**
 * The stage-one hardware collector (templates/stage1/inventory.sh), the real script run by
 * busybox sh against captured /proc and /sys trees (INV_ROOT), checked field by field, and
 * accepted by the master's parser.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseInventory, hardwareFacts } from '../../src/inventory/inventory.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SCRIPT = path.join(ROOT, 'templates', 'stage1', 'inventory.sh');
const FIX = path.join(ROOT, 'test', 'fixtures', 'inventory');
const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((b) => fs.existsSync(b));
const skip = busybox ? undefined : 'needs busybox (Debian package busybox-static)';

function collect(machine: string) {
  // An empty PATH apart from a busybox applet dir: the script may use busybox applets only.
  const bin = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'pxeherd-inv-bin-'));
  try {
    for (const a of ['sh', 'head', 'grep', 'awk', 'sed', 'tr', 'tail', 'readlink', 'cat']) fs.symlinkSync(busybox!, path.join(bin, a));
    const r = spawnSync(busybox!, ['sh', SCRIPT], { env: { INV_ROOT: path.join(FIX, machine), PATH: bin }, encoding: 'utf8' });
    assert.equal(r.status, 0, `collector failed: ${r.stderr}`);
    assert.equal(r.stderr, '', 'the collector is quiet on a complete tree');
    return r.stdout;
  } finally {
    fs.rmSync(bin, { recursive: true, force: true });
  }
}

test('the collector script parses as busybox ash', { skip }, () => {
  const r = spawnSync(busybox!, ['sh', '-n', SCRIPT], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('a UEFI Dell server: CPUs, installed memory from the memory blocks, disks with model and serial (VPD page too), physical NICs only, DMI with quotes escaped', { skip }, () => {
  const out = collect('dell-r640');
  const j = JSON.parse(out);
  assert.deepEqual(j.cpu, { model: 'Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz', count: 8 });
  assert.equal(j.memory_kb, 65856412);
  assert.equal(j.memory_phys_bytes, 16 * 4 * 1024 ** 3, 'sixteen online 4 GiB blocks; the offline one does not count');
  assert.equal(j.firmware, 'uefi');
  // loop0 and sr0 are not disks; sdb has no medium (0 sectors).
  assert.deepEqual(
    j.disks.map((d: { name: string }) => d.name),
    ['nvme0n1', 'sda'],
  );
  const sda = j.disks.find((d: { name: string }) => d.name === 'sda');
  assert.deepEqual(sda, { name: 'sda', size_bytes: 937703088 * 512, model: 'PERC H730P Mini', serial: 'S3Z9NB0K123456A', rotational: 1, removable: 0 });
  const nvme = j.disks.find((d: { name: string }) => d.name === 'nvme0n1');
  assert.equal(nvme.serial, 'S4EMNX0R500123');
  assert.equal(nvme.size_bytes, 1875385008 * 512);
  // lo and the bridge br0 (no device behind it) are left out.
  assert.deepEqual(j.nics, [
    { name: 'eno1', mac: 'e4:43:4b:10:20:30', driver: 'ixgbe', speed_mbps: 10000, carrier: 1 },
    { name: 'eno2', mac: 'e4:43:4b:10:20:31', driver: 'ixgbe', speed_mbps: null, carrier: 0 },
  ]);
  assert.deepEqual(j.dmi, { vendor: 'Dell Inc.', product: 'PowerEdge R640 "rev B"', serial: 'J8X2KQ2', uuid: '4c4c4544-0038-5810-8032-cac04f4b5132' });
  const p = parseInventory(out);
  assert.ok(p.ok, p.ok ? '' : p.error);
  const f = hardwareFacts(p.inventory);
  assert.equal(f.mem_gb, 64, 'a 64 GiB machine is hw:mem_gb>=64 although MemTotal is 62.8 GiB');
  assert.equal(f.disks, 2);
  assert.equal(f.disk_gb, Math.round(((937703088 + 1875385008) * 512) / 1e8) / 10);
  assert.equal(f.vendor, 'Dell Inc.');
  assert.equal(f.firmware, 'uefi');
});

test('a small BIOS QEMU guest: no DMI, no memory-block directory (MemTotal is used), a virtio disk with its serial attribute', { skip }, () => {
  const out = collect('qemu-bios');
  const j = JSON.parse(out);
  assert.equal(j.firmware, 'bios');
  assert.equal(j.cpu.count, 1);
  assert.equal(j.memory_phys_bytes, null);
  assert.deepEqual(j.disks, [{ name: 'vda', size_bytes: 1073741824, model: '', serial: 'PXEHERDTEST', rotational: null, removable: null }]);
  assert.deepEqual(j.nics, [{ name: 'eth0', mac: '52:54:00:12:34:56', driver: 'virtio_net', speed_mbps: null, carrier: 1 }]);
  assert.deepEqual(j.dmi, { vendor: '', product: '', serial: '', uuid: '' });
  const p = parseInventory(out);
  assert.ok(p.ok);
  assert.equal(hardwareFacts(p.inventory).mem_gb, 0.5);
});

test('an empty tree still yields a valid report (nothing found, BIOS)', { skip }, () => {
  const empty = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'pxeherd-inv-empty-'));
  try {
    const r = spawnSync(busybox!, ['sh', SCRIPT], { env: { INV_ROOT: empty, PATH: process.env.PATH }, encoding: 'utf8' });
    assert.equal(r.status, 0);
    const j = JSON.parse(r.stdout);
    assert.deepEqual({ disks: j.disks, nics: j.nics, firmware: j.firmware, count: j.cpu.count }, { disks: [], nics: [], firmware: 'bios', count: 0 });
    assert.ok(parseInventory(r.stdout).ok, 'and the master accepts it');
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
});
