// The master's unsquashfs in an image's stage one (vnfs_mode=tmpfs): ldd's output parsed into
// the libraries to carry, and the initramfs entries at the same paths, parents first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { hostBinaryEntries, parseLdd, whichBinary } from '../../src/stage1/hostbin.js';

test('parseLdd: libraries and the loader by path, the vDSO skipped, missing ones named', () => {
  const text = `\tlinux-vdso.so.1 (0x00007ffd)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f01)\n\tlibfoo.so.2 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f03)\n`;
  assert.deepEqual(parseLdd(text), { libs: ['/lib/x86_64-linux-gnu/libz.so.1', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2'], missing: ['libfoo.so.2'] });
  assert.deepEqual(parseLdd('\tstatically linked\n'), { libs: [], missing: [] });
});

const unsquashfs = whichBinary('unsquashfs');
test('hostBinaryEntries: unsquashfs at usr/bin with its libraries and loader, directories before files', { skip: unsquashfs ? undefined : 'needs unsquashfs (squashfs-tools)' }, () => {
  const { entries, files } = hostBinaryEntries(unsquashfs!);
  const names = entries.map((e) => e.name);
  assert.ok(names.includes('usr/bin/unsquashfs'));
  assert.ok(names.some((n) => /ld-linux.*\.so/.test(n)), 'the dynamic loader');
  assert.ok(names.some((n) => /libzstd\.so/.test(n)), 'zstd (pxeherd packs with zstd)');
  for (const [i, e] of entries.entries()) {
    const parent = e.name.split('/').slice(0, -1).join('/');
    if (parent) assert.ok(names.slice(0, i).includes(parent), `${parent} comes before ${e.name}`);
    if (e.type === 'file') assert.ok(e.data.length > 0);
  }
  assert.equal(files[0], unsquashfs);
  // Symlinked libraries are carried as the files themselves.
  const loader = entries.find((e) => /ld-linux/.test(e.name));
  assert.equal(loader?.type, 'file');
  assert.equal((loader as { data: Buffer }).data.length, fs.statSync(fs.realpathSync(files.find((f) => /ld-linux/.test(f))!)).size);
});
