import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { extractTar } from '../../src/images/tar.js';
import { ImageError } from '../../src/images/errors.js';
import { describeTree, diffTrees } from '../helpers/fstree.js';
import { ustar } from '../helpers/ustar.js';

// GNU tar extracting as root: owners, setuid bits, device nodes and security.capability need
// root, and getfattr/setcap/xz/zstd are the real tools the comparison is made with.
const tools = ['tar', 'setcap', 'getfattr', 'setfattr', 'xz', 'zstd', 'gzip'];
const missing = tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const skip =
  process.getuid?.() !== 0
    ? 'extracting with owners, setuid bits and device nodes needs root'
    : missing.length
      ? `needs ${missing.join(', ')} (Debian packages tar, libcap2-bin, attr, xz-utils, zstd, gzip)`
      : undefined;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-tar-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = (what: string) => fs.mkdtempSync(path.join(tmp, `${what}-${n++}-`));
const sh = (cmd: string, cwd?: string) => execFileSync('sh', ['-c', cmd], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

const LONG_DIR = 'usr/share/' + 'a-directory-name-long-enough-to-need-an-extended-header/'.repeat(3);

/** A small root filesystem with everything a real one carries. */
function makeTree(): string {
  const root = fresh('src');
  sh(
    [
      'mkdir -p usr/bin usr/sbin etc/ssl dev home/alice ' + JSON.stringify(LONG_DIR),
      'echo hello > etc/motd && chmod 0640 etc/motd && chown 0:42 etc/motd',
      'cp /bin/true usr/bin/su && chown 0:0 usr/bin/su && chmod 4755 usr/bin/su',
      'cp /bin/true usr/bin/wall && chown 0:5 usr/bin/wall && chmod 2755 usr/bin/wall',
      'cp /bin/true usr/bin/ping && setcap cap_net_raw+ep usr/bin/ping',
      'echo data > home/alice/notes && chown -R 1000:1000 home/alice && chmod 0700 home/alice',
      'setfattr -n user.origin -v pxeherd-test home/alice/notes',
      'head -c 300000 /dev/urandom > usr/bin/big && ln usr/bin/big usr/sbin/big-link && ln usr/bin/big usr/bin/big2',
      'ln -s /usr/bin/su usr/sbin/su-abs && ln -s ../bin/su usr/sbin/su-rel && ln -s ../../etc/motd home/alice/motd',
      `echo deep > ${JSON.stringify(LONG_DIR + 'file-with-a-long-name.txt')}`,
      `ln -s ${JSON.stringify('/' + LONG_DIR + 'file-with-a-long-name.txt')} etc/long-target`,
      'mknod dev/null c 1 3 && mknod dev/loop0 b 7 0 && mkfifo dev/initctl && chmod 0666 dev/null',
      'chmod 1777 etc/ssl',
    ].join(' && '),
    root,
  );
  return root;
}

function assertRefused(e: unknown, entry: string, re: RegExp): true {
  assert.ok(e instanceof ImageError, `an ImageError, got ${e}`);
  assert.equal(e.entry, entry);
  assert.ok(e.message.includes(entry), `message names "${entry}": ${e.message}`);
  assert.match(e.message, re);
  return true;
}

test('a root filesystem comes back file by file (owners, setuid/setgid, sticky, capability, user xattr, hard links, symlinks, devices, long names) from tar, gzip, xz and zstd told apart by magic', { skip }, async () => {
  const src = makeTree();
  const want = describeTree(src);
  const plain = path.join(fresh('arch'), 'rootfs.bin');
  sh(`tar --xattrs --xattrs-include='*' --numeric-owner --format=posix -cf ${plain} -C ${src} .`);
  const gnu = path.join(fresh('arch'), 'gnu.bin');
  sh(`tar --numeric-owner --format=gnu -cf ${gnu} -C ${src} .`);
  const variants: [string, string][] = [
    ['pax', plain],
    ['gnu long names', gnu],
    ['gzip', path.join(path.dirname(plain), 'a.bin')],
    ['xz', path.join(path.dirname(plain), 'b.bin')],
    ['zstd', path.join(path.dirname(plain), 'c.bin')],
  ];
  sh(`gzip -c ${plain} > ${variants[2][1]} && xz -c ${plain} > ${variants[3][1]} && zstd -q -c ${plain} > ${variants[4][1]}`);
  for (const [label, file] of variants) {
    const dest = fresh('out');
    const stats = await extractTar(file, dest);
    // The GNU format carries no xattrs (GNU tar writes them only in pax headers).
    const xattrs = label !== 'gnu long names';
    assert.deepEqual(diffTrees(xattrs ? want : describeTree(src, { xattrs }), describeTree(dest, { xattrs }), (rel) => rel === '.'), [], label);
    assert.equal(stats.compression, label === 'gzip' || label === 'xz' || label === 'zstd' ? label : 'none');
    assert.equal(stats.hardlinks, 2, `${label}: two hard links to usr/bin/big`);
    assert.equal(stats.devices, 3);
    assert.ok(stats.bytes > 300_000);
  }
});

test('a stream is extracted like a file, the uncompressed stream\'s sha256 is reported as the diff_id, and progress counts up to the whole tar', { skip }, async () => {
  const src = makeTree();
  const tarFile = path.join(fresh('arch'), 'r.tar');
  sh(`tar --xattrs --xattrs-include='*' --format=posix -cf ${tarFile} -C ${src} .`);
  const gz = tarFile + '.gz';
  fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(tarFile)));
  const dest = fresh('out');
  const seen: number[] = [];
  const stats = await extractTar(fs.createReadStream(gz), dest, { onProgress: (b) => seen.push(b) });
  assert.deepEqual(diffTrees(describeTree(src), describeTree(dest), (rel) => rel === '.'), []);
  const sha = execFileSync('sha256sum', [tarFile], { encoding: 'utf8' }).split(' ')[0];
  assert.equal(stats.diffId, `sha256:${sha}`);
  assert.ok(seen.length > 0 && seen.every((b, i) => i === 0 || b >= seen[i - 1]), 'progress only grows');
  assert.equal(seen.at(-1), fs.statSync(tarFile).size);
  assert.deepEqual(fs.readdirSync(path.dirname(dest)).filter((f) => f.includes('.spool-')), [], 'the spooled stream is removed');
});

test('as an OCI layer: .wh.NAME deletes from the layers below, .wh..wh..opq empties a directory of its lower content, a changed type replaces, and no .wh. file is extracted', { skip }, async () => {
  const dest = fresh('rootfs');
  sh(
    [
      'mkdir -p etc/old.d opt/keep var/cache/apt',
      'echo a > etc/gone && echo b > etc/stays && echo c > etc/old.d/one && echo d > var/cache/apt/pkg',
      'mkdir -p was-dir/sub && echo e > was-dir/sub/f && echo f > was-file',
      'ln -s /etc was-link',
    ].join(' && '),
    dest,
  );
  const layer = fresh('layer');
  sh(
    [
      'mkdir -p etc/old.d var/cache/apt was-file',
      'touch etc/.wh.gone etc/old.d/.wh..wh..opq var/cache/.wh.apt was-link',
      'echo new > etc/old.d/two && echo g > was-file/inside && echo h > was-dir',
      'rm was-link && mkdir was-link && echo i > was-link/real',
    ].join(' && '),
    layer,
  );
  const file = path.join(fresh('arch'), 'layer.tar');
  // The whiteout of var/cache/apt comes with a directory of the same name in the same layer.
  sh(`tar --format=posix -cf ${file} -C ${layer} .`);
  const stats = await extractTar(file, dest, { whiteouts: true });
  const got = [...describeTree(dest, { xattrs: false })].filter(([, f]) => f.type !== 'dir').map(([rel, f]) => `${rel}:${f.type}`).sort();
  assert.deepEqual(got, ['etc/old.d/two:file', 'etc/stays:file', 'was-dir:file', 'was-file/inside:file', 'was-link/real:file']);
  assert.ok(fs.statSync(path.join(dest, 'var/cache/apt')).isDirectory(), 'the layer\'s own var/cache/apt directory is there, empty');
  assert.deepEqual(fs.readdirSync(path.join(dest, 'var/cache/apt')), []);
  assert.equal(fs.readFileSync('/etc/hostname', 'utf8').length > 0, true, 'nothing written through the lower symlink to /etc');
  assert.equal(stats.whiteouts, 2);
  assert.equal(stats.opaqueDirs, 1);

  // Without whiteouts, .wh. files are plain files.
  const plain = fresh('plain');
  await extractTar(file, plain);
  assert.ok(fs.existsSync(path.join(plain, 'etc/.wh.gone')));
});

interface Hostile {
  name: string;
  entry: string;
  re: RegExp;
  archive: () => Buffer | string;
  lower?: (dest: string) => void;
  whiteouts?: boolean;
}

const victimDir = path.join(tmp, 'victim');
fs.mkdirSync(victimDir);
fs.writeFileSync(path.join(victimDir, 'passwd'), 'root:x:0:0\n');

function gnuTar(dir: (d: string) => void, flags = ''): Buffer {
  const d = fresh('h');
  dir(d);
  return execFileSync('sh', ['-c', `tar ${flags} -cf - -C ${d} .`], { maxBuffer: 64 << 20 });
}

const hostile: Hostile[] = [
  { name: 'a ../ entry', entry: '../escape', re: /"\.\."/, archive: () => ustar([{ name: 'ok' }, { name: '../escape', data: 'x' }]) },
  { name: 'a ../ inside a name', entry: 'etc/../../escape', re: /"\.\."/, archive: () => ustar([{ name: 'etc/../../escape', data: 'x' }]) },
  { name: 'an absolute path', entry: '/tmp/pxeherd-abs', re: /absolute path/, archive: () => ustar([{ name: '/tmp/pxeherd-abs', data: 'x' }]) },
  {
    name: 'a symlink, then a file written through it',
    entry: 'etc/evil',
    re: /through "etc", a symlink earlier in the archive/,
    archive: () => ustar([{ name: 'etc', type: '2', linkname: victimDir }, { name: 'etc/evil', data: 'pwned' }]),
  },
  {
    name: 'a symlink in a lower layer, then a layer writing through it',
    entry: 'lib/evil',
    re: /through "lib", a symlink in the layers below/,
    archive: () => ustar([{ name: 'lib/evil', data: 'pwned' }]),
    lower: (dest) => fs.symlinkSync(victimDir, path.join(dest, 'lib')),
    whiteouts: true,
  },
  {
    name: 'a whiteout that would delete through a lower symlink',
    entry: 'lib/.wh.passwd',
    re: /symlink/,
    archive: () => ustar([{ name: 'lib/.wh.passwd' }]),
    lower: (dest) => fs.symlinkSync(victimDir, path.join(dest, 'lib')),
    whiteouts: true,
  },
  { name: 'a hard link out of the tree', entry: 'h', re: /"\.\."/, archive: () => ustar([{ name: 'h', type: '1', linkname: '../../etc/passwd' }]) },
  { name: 'a hard link to an absolute path', entry: 'h', re: /outside|absolute/, archive: () => ustar([{ name: 'h', type: '1', linkname: '/etc/passwd' }]) },
  {
    name: 'a hard link through a symlink',
    entry: 'h',
    re: /through "s", a symlink earlier in the archive/,
    archive: () => ustar([{ name: 's', type: '2', linkname: victimDir }, { name: 'h', type: '1', linkname: 's/passwd' }]),
  },
  { name: 'a relative symlink climbing out', entry: 'usr/lib/x', re: /points outside the image/, archive: () => ustar([{ name: 'usr/lib/x', type: '2', linkname: '../../../etc/passwd' }]) },
  { name: 'a device node outside /dev', entry: 'etc/mem', re: /outside \/dev/, archive: () => ustar([{ name: 'etc/mem', type: '3' }]) },
  {
    name: 'a truncated tar (cut inside a file)',
    entry: './big',
    re: /truncated/,
    archive: () => gnuTar((d) => fs.writeFileSync(path.join(d, 'big'), Buffer.alloc(200_000, 1))).subarray(0, 100_000),
  },
  {
    name: 'a tar cut at an entry boundary (no end-of-archive block)',
    entry: 'b',
    re: /truncated.*after "b"/,
    archive: () => ustar([{ name: 'a', data: 'x' }, { name: 'b', data: 'y' }]).subarray(0, 2048),
  },
  {
    name: 'a corrupt header checksum',
    entry: 'a',
    re: /checksum/,
    archive: () => {
      const b = ustar([{ name: 'a', data: 'x' }, { name: 'b', data: 'y' }]);
      b[1024 + 10] ^= 0xff;
      return b;
    },
  },
  {
    name: 'corrupt gzip data',
    entry: 'ARCHIVE',
    re: /corrupt gzip|truncated/,
    archive: () => {
      const gz = zlib.gzipSync(gnuTar((d) => fs.writeFileSync(path.join(d, 'f'), Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7919) % 251)))));
      for (let i = 100; i < 140; i++) gz[i] ^= 0x5a;
      return gz;
    },
  },
  {
    name: 'truncated gzip data',
    entry: 'ARCHIVE',
    re: /gzip data is truncated/,
    archive: () => zlib.gzipSync(gnuTar((d) => fs.writeFileSync(path.join(d, 'f'), 'x'.repeat(50_000)))).subarray(0, 60),
  },
  {
    name: 'corrupt zstd data',
    entry: 'ARCHIVE',
    re: /corrupt or truncated zstd/,
    archive: () => {
      const z = execFileSync('zstd', ['-q', '-c'], { input: gnuTar((d) => fs.writeFileSync(path.join(d, 'f'), 'x'.repeat(50_000))) });
      return z.subarray(0, z.length - 8);
    },
  },
];

for (const h of hostile) {
  test(`refused before anything is written, naming the entry: ${h.name}`, { skip }, async () => {
    const dir = fresh('hostile');
    const file = path.join(dir, 'archive.tar');
    const archive = h.archive();
    fs.writeFileSync(file, archive);
    const dest = path.join(dir, 'rootfs');
    fs.mkdirSync(dest);
    h.lower?.(dest);
    const before = fs.readdirSync(dest);
    const entry = h.entry === 'ARCHIVE' ? file : h.entry;
    await assert.rejects(extractTar(file, dest, { whiteouts: h.whiteouts }), (e) => assertRefused(e, entry, h.re));
    assert.deepEqual(fs.readdirSync(dest), before, 'nothing written into dest');
    assert.deepEqual(fs.readdirSync(victimDir), ['passwd'], 'nothing written outside');
    assert.equal(fs.readFileSync(path.join(victimDir, 'passwd'), 'utf8'), 'root:x:0:0\n');
    assert.ok(!fs.existsSync('/tmp/pxeherd-abs'));
    assert.ok(!fs.existsSync(path.join(dir, 'escape')));
  });
}
