import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chooseDisk, installAttrError, parseSize, partitionDevice, planDisk, PlanError, GPT_TYPES } from '../../src/install/plan.js';
import type { Disk } from '../../src/inventory/inventory.js';
import { which } from '../lab/lab.js';

const GB = 1e9;
const disk = (name: string, size: number, serial = '', extra: Partial<Disk> = {}): Disk => ({ name, size_bytes: size, model: '', serial, rotational: 0, removable: 0, ...extra });
// As the Dell R640 fixture reports them: an NVMe, two SATA disks, a loop device and a DVD drive.
const R640 = [disk('nvme0n1', 960 * GB, 'S4EVNF0M1'), disk('sda', 480 * GB, 'BTYS8123'), disk('sdb', 480 * GB, 'BTYS8124'), disk('loop0', 100e6), disk('sr0', 1073741312, '', { removable: 1 })];

test('sizes: K/M/G/T are powers of 1024, KB/MB/GB/TB powers of 1000', () => {
  assert.equal(parseSize('4G'), 4 * 1024 ** 3);
  assert.equal(parseSize('512MiB'), 512 * 1024 ** 2);
  assert.equal(parseSize('100GB'), 100e9);
  assert.equal(parseSize('1.5T'), 1.5 * 1024 ** 4);
  assert.equal(parseSize('4 G'), 4 * 1024 ** 3);
  assert.equal(parseSize('lots'), undefined);
  assert.equal(parseSize('4X'), undefined);
});

test('the target disk: by serial, by path, by size rules; ambiguous or missing is an error listing the candidates', () => {
  assert.equal(chooseDisk(R640, 'serial:BTYS8124', 'n1').disk.name, 'sdb');
  assert.equal(chooseDisk(R640, '/dev/nvme0n1', 'n1').disk.name, 'nvme0n1');
  assert.equal(chooseDisk(R640, 'sda', 'n1').disk.name, 'sda');
  assert.equal(chooseDisk(R640, 'size>=900GB', 'n1').disk.name, 'nvme0n1');
  assert.equal(chooseDisk(R640, 'largest', 'n1').chosenBy, 'install_disk=largest');
  assert.throws(() => chooseDisk(R640, 'smallest', 'n1'), /install_disk=smallest matches 2 disks \(sda \(447\.0 GiB, serial BTYS8123\); sdb \(447\.0 GiB, serial BTYS8124\)\): make it unique, e\.g\. serial:BTYS8123/);
  assert.throws(() => chooseDisk(R640, 'size<500GB', 'n1'), /matches 2 disks/);
  assert.throws(() => chooseDisk(R640, undefined, 'n1'), /node n1 has 3 disks and install_disk is not set: set it to serial:\.\.\., \/dev\/NAME or a size rule \(candidates: nvme0n1 \(894\.1 GiB, serial S4EVNF0M1\); sda .*; sdb .*\)$/);
  assert.throws(() => chooseDisk(R640, 'serial:NOPE', 'n1'), (e: PlanError) => e.attr === 'install_disk' && /no disk matches install_disk=serial:NOPE \(candidates: nvme0n1/.test(e.message));
  assert.throws(() => chooseDisk(R640, '/dev/sr0', 'n1'), /no disk matches/, 'an optical drive is never a target');
  assert.throws(() => chooseDisk([], undefined, 'n1'), /node n1 has not reported its disks yet/);
  assert.equal(chooseDisk([disk('vda', 64 * GB)], undefined, 'n1').chosenBy, 'the only disk');
  assert.throws(() => chooseDisk(R640, 'size>=lots', 'n1'), /"lots" in "size>=lots" is not a size/);
  assert.throws(() => chooseDisk(R640, 'size~1G,largest', 'n1'), /"size~1G" is not understood: use serial:XYZ, \/dev\/NAME, or size rules/);
  assert.throws(() => chooseDisk(R640, 'biggest', 'n1'), /no disk matches install_disk=biggest \(candidates: /, 'a bare word is a disk name');
  assert.throws(() => chooseDisk(R640, '/dev/disk/by-id/x', 'n1'), /give the kernel's name of the whole disk/);
});

test('UEFI plan: ESP + swap + root on GPT; partition names follow the kernel (nvme0n1p1)', () => {
  const p = planDisk({ node: 'n1', attrs: { install: 'disk', install_disk: 'serial:S4EVNF0M1', install_swap: '4G', install_fs: 'xfs' }, disks: R640, firmware: 'uefi' });
  assert.equal(p.install, 'disk');
  assert.deepEqual(p.disk, { name: 'nvme0n1', path: '/dev/nvme0n1', sizeBytes: 960 * GB, serial: 'S4EVNF0M1', model: '', chosenBy: 'install_disk=serial:S4EVNF0M1' });
  assert.deepEqual(p.partitions.map((x) => [x.number, x.name, x.device, x.fs, x.mount, x.rest]), [
    [1, 'esp', '/dev/nvme0n1p1', 'vfat', '/boot/efi', false],
    [2, 'swap', '/dev/nvme0n1p2', 'swap', null, false],
    [3, 'root', '/dev/nvme0n1p3', 'xfs', '/', true],
  ]);
  assert.deepEqual(p.partitions[2]!.mkfs, ['mkfs.xfs', '-f', '-L', 'root']);
  assert.equal(p.sfdisk, `label: gpt\n\nsize=512MiB, type=${GPT_TYPES.esp}, name="esp"\nsize=4096MiB, type=${GPT_TYPES.swap}, name="swap"\ntype=${GPT_TYPES.root}, name="root"\n`);
  assert.equal(partitionDevice('vda', 2), '/dev/vda2');
  assert.equal(partitionDevice('mmcblk0', 1), '/dev/mmcblk0p1');
});

test('BIOS plan: a 1 MiB BIOS boot partition, root ext4 by default, no swap; stateless is the default method', () => {
  const p = planDisk({ node: 'n2', attrs: {}, disks: [disk('vda', 8 * 1024 ** 3)], firmware: 'bios' });
  assert.equal(p.install, 'stateless');
  assert.deepEqual(p.partitions.map((x) => [x.name, x.sizeBytes, x.fs]), [
    ['bios_boot', 1024 * 1024, null],
    ['root', 8 * 1024 ** 3 - 3 * 1024 * 1024, 'ext4'],
  ]);
  assert.equal(planDisk({ node: 'n2', attrs: { install_firmware: 'uefi' }, disks: [disk('vda', 8 * 1024 ** 3)], firmware: 'bios' }).firmware, 'uefi', 'the attribute wins');
  assert.throws(() => planDisk({ node: 'n2', attrs: {}, disks: [disk('vda', 8 * 1024 ** 3)] }), /firmware unknown \(no hardware report\): set install_firmware=bios or uefi/);
});

test('a plan that does not fit the disk says how much it needs and what to change', () => {
  assert.throws(
    () => planDisk({ node: 'n3', attrs: { install_swap: '8G' }, disks: [disk('vda', 10 * 1024 ** 3)], firmware: 'uefi' }),
    (e: PlanError) => e.attr === 'install_swap' && e.message === 'node n3: the plan does not fit vda: it needs 10.5 GiB (esp 512 MiB, swap 8 GiB, root at least 2 GiB) and the disk has 10 GiB: make install_swap smaller, choose a larger disk with install_disk',
  );
  assert.throws(() => planDisk({ node: 'n3', attrs: {}, disks: [disk('vda', 1 * 1024 ** 3)], firmware: 'bios' }), /does not fit vda: .* the disk has 1 GiB: choose a larger disk/);
});

test('install attributes are validated with messages naming the allowed values', () => {
  assert.equal(installAttrError('install', 'disk'), undefined);
  assert.equal(installAttrError('install', 'diskless'), 'install must be stateless or disk, not "diskless"');
  assert.equal(installAttrError('install_fs', 'btrfs'), 'install_fs must be ext4 or xfs, not "btrfs"');
  assert.equal(installAttrError('install_swap', 'none'), undefined);
  assert.match(installAttrError('install_swap', 'lots')!, /install_swap must be a size/);
  assert.match(installAttrError('install_disk', 'size>>3')!, /">3" in "size>>3" is not a size/);
  assert.equal(installAttrError('install', ''), undefined, 'empty removes the attribute');
  assert.equal(installAttrError('rack', 'anything'), undefined);
  assert.throws(() => planDisk({ node: 'n4', attrs: { install_fs: 'zfs' }, disks: [disk('vda', 64 * GB)], firmware: 'bios' }), (e: PlanError) => e.attr === 'install_fs');
});

test('sfdisk itself accepts the script: applied to a disk image file, it reads back the planned table', { skip: which('sfdisk') ? undefined : 'needs sfdisk (Debian package fdisk)' }, (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-plan-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const img = path.join(dir, 'disk.img');
  const size = 20 * 1024 ** 3;
  fs.writeFileSync(img, '');
  fs.truncateSync(img, size);
  for (const firmware of ['uefi', 'bios'] as const) {
    const p = planDisk({ node: 'n5', attrs: { install: 'disk', install_swap: '1G' }, disks: [disk('vda', size)], firmware });
    execFileSync(which('sfdisk')!, ['--quiet', '--wipe', 'always', img], { input: p.sfdisk });
    const table = JSON.parse(execFileSync(which('sfdisk')!, ['--json', img], { encoding: 'utf8' })).partitiontable;
    assert.equal(table.label, 'gpt');
    assert.deepEqual(
      table.partitions.map((x: { type: string; name: string; size: number }) => [x.name, x.type, x.size * table.sectorsize]),
      p.partitions.map((x) => [x.name, x.type, x.sizeBytes]),
      `${firmware}: names, types and sizes as planned`,
    );
  }
});
