import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeCpio, readCpio } from '../../src/stage1/cpio.js';
import { readModinfo, modDepends } from '../../src/stage1/elf.js';
import { moduleLoadOrder } from '../../src/stage1/modules.js';
import { parseKernelDepends, debsFor } from '../../src/stage1/debs.js';
import { initramfsEntries } from '../../src/stage1/build.js';

/** A minimal ELF64 LE with sections: null, .shstrtab, .modinfo. */
function elfWithModinfo(modinfo: string): Buffer {
  const shstr = Buffer.from('\0.shstrtab\0.modinfo\0');
  const info = Buffer.from(modinfo);
  const hdr = Buffer.alloc(64);
  hdr.writeUInt32BE(0x7f454c46, 0);
  hdr[4] = 2;
  hdr[5] = 1;
  const shoff = 64 + shstr.length + info.length;
  hdr.writeBigUInt64LE(BigInt(shoff), 0x28);
  hdr.writeUInt16LE(64, 0x3a);
  hdr.writeUInt16LE(3, 0x3c);
  hdr.writeUInt16LE(1, 0x3e);
  const sh = Buffer.alloc(64 * 3);
  const sec = (i: number, name: number, off: number, size: number) => {
    sh.writeUInt32LE(name, i * 64);
    sh.writeBigUInt64LE(BigInt(off), i * 64 + 0x18);
    sh.writeBigUInt64LE(BigInt(size), i * 64 + 0x20);
  };
  sec(1, 1, 64, shstr.length);
  sec(2, 11, 64 + shstr.length, info.length);
  return Buffer.concat([hdr, shstr, info, sh]);
}

test('readModinfo finds depends= in the .modinfo section; hyphens become underscores', () => {
  const r = readModinfo(elfWithModinfo('license=GPL\0depends=net_failover,virtio-ring\0name=virtio_net\0vermagic=6.1.0 SMP\0'));
  assert.ok(r.ok);
  if (r.ok) {
    assert.deepEqual(modDepends(r.info), ['net_failover', 'virtio_ring']);
    assert.deepEqual(r.info.get('name'), ['virtio_net']);
  }
  const none = readModinfo(elfWithModinfo('depends=\0name=e1000\0'));
  assert.ok(none.ok && modDepends(none.info).length === 0);
});

test('readModinfo refuses what is not a 64-bit little-endian ELF module, without throwing', () => {
  assert.deepEqual(readModinfo(Buffer.from('hello world, this is not an ELF file at all, no no no no no no no')), { ok: false, error: 'not an ELF file' });
  const trunc = elfWithModinfo('depends=a\0').subarray(0, 80);
  assert.equal(readModinfo(trunc).ok, false);
  const noinfo = elfWithModinfo('x=1\0');
  noinfo.write('.modinfX', 64 + 11);
  assert.deepEqual(readModinfo(noinfo), { ok: false, error: 'no .modinfo section (not a kernel module?)' });
});

test('module load order puts dependencies first, skips built-ins, names missing modules and cycles', () => {
  const deps: Record<string, string[]> = { virtio_net: ['net_failover', 'virtio'], net_failover: ['failover'], failover: [], virtio: ['virtio_ring'], virtio_ring: [], e1000: [], e1000e: ['ptp'] };
  const lookup = (n: string) => (deps[n] ? { path: `/m/${n}.ko`, depends: deps[n]! } : undefined);
  assert.deepEqual(moduleLoadOrder(['e1000', 'virtio_net', 'virtio'], lookup), { ok: true, order: ['e1000', 'failover', 'net_failover', 'virtio_ring', 'virtio', 'virtio_net'] });
  assert.deepEqual(moduleLoadOrder(['e1000e'], lookup), { ok: false, error: 'module ptp (needed by e1000e) is not in the kernel package' });
  assert.deepEqual(moduleLoadOrder(['e1000e'], lookup, (n) => n === 'ptp'), { ok: true, order: ['e1000e'] });
  const cyc = (n: string) => ({ path: n, depends: n === 'a' ? ['b'] : ['a'] });
  assert.deepEqual(moduleLoadOrder(['a'], cyc), { ok: false, error: 'dependency cycle: a -> b -> a' });
});

test('newc cpio round-trips files, directories, symlinks and device nodes with 4-byte alignment', () => {
  const buf = writeCpio([
    { type: 'dir', name: 'dev' },
    { type: 'char', name: 'dev/console', major: 5, minor: 1 },
    { type: 'file', name: 'init', data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755 },
    { type: 'file', name: 'odd', data: Buffer.from('abc') },
    { type: 'symlink', name: 'bin/sh', target: 'busybox' },
  ]);
  assert.equal(buf.length % 4, 0);
  assert.equal(buf.subarray(0, 6).toString(), '070701');
  const m = readCpio(buf);
  assert.deepEqual(m.map((x) => x.name), ['dev', 'dev/console', 'init', 'odd', 'bin/sh']);
  assert.equal(m[1]!.mode, 0o020600);
  assert.deepEqual([m[1]!.rdevMajor, m[1]!.rdevMinor], [5, 1]);
  assert.equal(m[2]!.mode, 0o100755);
  assert.equal(m[2]!.data.toString(), '#!/bin/sh\necho hi\n');
  assert.equal(m[3]!.data.toString(), 'abc');
  assert.equal(m[4]!.mode & 0o170000, 0o120000);
  assert.equal(m[4]!.data.toString(), 'busybox');
  assert.throws(() => writeCpio([{ type: 'file', name: '../etc/x', data: Buffer.alloc(0) }]), /bad entry name/);
});

test('the initramfs layout has /init, busybox with /bin/sh, the console node and modules with their load order', () => {
  const e = initramfsEntries({ init: Buffer.from('i'), udhcpcScript: Buffer.from('u'), busybox: Buffer.from('b'), modules: [{ name: 'virtio', data: Buffer.from('1') }, { name: 'virtio_net', data: Buffer.from('2') }], buildInfo: 'x' });
  const names = e.map((x) => x.name);
  for (const n of ['init', 'bin/busybox', 'bin/sh', 'dev/console', 'etc/udhcpc.script', 'lib/modules/virtio.ko', 'lib/modules/virtio_net.ko']) assert.ok(names.includes(n), n);
  const order = e.find((x) => x.name === 'lib/modules/load.order') as { data: Buffer };
  assert.equal(order.data.toString(), 'virtio.ko\nvirtio_net.ko\n');
  // Parents before children, as the kernel's unpacker needs.
  for (const [i, n] of names.entries()) if (n.includes('/')) assert.ok(names.slice(0, i).includes(n.slice(0, n.lastIndexOf('/'))), n);
});

test('the kernel package is read from apt-cache depends output; cached debs are matched by package name', () => {
  assert.equal(parseKernelDepends('linux-image-amd64\n  Depends: linux-image-6.1.0-28-amd64\n'), 'linux-image-6.1.0-28-amd64');
  assert.equal(parseKernelDepends('linux-image-amd64\n  Depends: <linux-image-6.1.0-28-amd64>\n'), undefined);
  assert.deepEqual(debsFor(['busybox-static_1.35_amd64.deb', 'busybox_1.35_amd64.deb', 'x.txt'], 'busybox'), ['busybox_1.35_amd64.deb']);
});
