import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { imageEnvFor, pinnedRev, resolveVnfsRef, vnfsRefError } from '../../src/images/resolve.js';
import { chooseKernel, compareVersions } from '../../src/images/kernel.js';
import { parseExcludes } from '../../src/images/pack.js';
import { parseXattrDump } from '../../src/images/tree.js';
import { retargetSources, parsePackages, validateSuite } from '../../src/images/debian.js';
import { mountsUnder, dedupeAgainstParent, revDirsIn } from '../../src/images/revisions.js';
import { isOpaque, resolveInImage } from '../../src/images/exec.js';
import { manifestJson, parseManifest, type ImageManifest } from '../../src/images/manifest.js';
import { ImageError } from '../../src/images/errors.js';
import { bootRevision } from '../../src/boot/service.js';
import { decideBoot } from '../../src/boot/decide.js';
import { nodeRecord, type Vnfs } from '../../src/nodes/types.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';

test('resolveVnfsRef splits NAME@REV and leaves anything else as a name', () => {
  assert.deepEqual(resolveVnfsRef('deb12'), { name: 'deb12' });
  assert.deepEqual(resolveVnfsRef('deb12@3'), { name: 'deb12', rev: 3 });
  assert.deepEqual(resolveVnfsRef('deb12@0'), { name: 'deb12@0' });
  assert.deepEqual(resolveVnfsRef('deb12@x'), { name: 'deb12@x' });
  assert.deepEqual(resolveVnfsRef('@3'), { name: '@3' });
  assert.equal(vnfsRefError('deb12@3'), undefined);
  assert.match(vnfsRefError('deb12@-1')!, /revision "-1"/);
  assert.match(vnfsRefError('../x@2')!, /not allowed/);
  assert.match(vnfsRefError('a/b')!, /not allowed/);
});

test('a pin in the node field beats the vnfs_rev attribute, which beats the current revision', () => {
  assert.deepEqual(pinnedRev('d@2', { vnfs_rev: '5' }, 7), { name: 'd', rev: 2, pinned: true });
  assert.deepEqual(pinnedRev('d', { vnfs_rev: '5' }, 7), { name: 'd', rev: 5, pinned: true });
  assert.deepEqual(pinnedRev('d', { vnfs_rev: 'junk' }, 7), { name: 'd', rev: 7, pinned: false });
  assert.deepEqual(pinnedRev('d', {}, null), { name: 'd', rev: undefined, pinned: false });
  const env = imageEnvFor((n) => (n === 'd' ? { currentRev: 4 } : n === 'old' ? { currentRev: null } : undefined));
  assert.deepEqual(env({ vnfs: 'd' }, {}), { rev: 4, root: true });
  assert.deepEqual(env({ vnfs: 'd@2' }, {}), { rev: 2, root: true });
  assert.deepEqual(env({ vnfs: 'old' }, {}), { root: false });
  assert.deepEqual(env({ vnfs: '' }, {}), { root: false });
});

test('boot decisions: a pinned node boots r<REV>/vmlinuz + r<REV>/initrd.img; a kernel+initrd VNFS is unchanged', () => {
  const rooted: Vnfs = { name: 'd', kernel: 'r7/vmlinuz', initrd: 'r7/initrd.img', cmdline: '', attrs: {}, createdAt: 0, currentRev: 7 };
  const plain: Vnfs = { name: 'p', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: '', attrs: {}, createdAt: 0, currentRev: null };
  const node = nodeRecord({ mac: 'aa:bb:cc:dd:ee:ff', name: 'n1', vnfs: 'd@3' });
  const dec = decideBoot(node, { autoRegister: true, defaultVnfs: '', discoveryVnfs: 'stage1' });
  assert.equal(dec.vnfs, 'd');
  assert.equal(dec.pin, 3);
  assert.equal(dec.select.vnfs, 'd', 'templates are chosen by the bare name');
  const r = bootRevision(rooted, dec.pin, {});
  assert.ok(!('error' in r));
  assert.equal(r.rev, 3);
  assert.equal(r.vnfs.kernel, 'r3/vmlinuz');
  assert.equal(r.vnfs.initrd, 'r3/initrd.img');
  const byAttr = bootRevision(rooted, undefined, { vnfs_rev: '5' });
  assert.ok(!('error' in byAttr) && byAttr.vnfs.kernel === 'r5/vmlinuz');
  const cur = bootRevision(rooted, undefined, {});
  assert.ok(!('error' in cur) && cur.vnfs.kernel === 'r7/vmlinuz' && cur.rev === 7);
  const p = bootRevision(plain, undefined, { vnfs_rev: '5' });
  assert.ok(!('error' in p) && p.vnfs.kernel === 'vmlinuz' && p.rev === undefined, 'an attribute pin does not apply to a kernel+initrd VNFS');
  const bad = bootRevision(plain, 2, {});
  assert.ok('error' in bad && /no revisions/.test(bad.error));
});

test('migration 3: revisions, current revision, the VNFS record points at the current revision, numbers are never reused', () => {
  const s = new Store(openDatabase(':memory:'));
  assert.ok((s.db.pragma('user_version', { simple: true }) as number) >= 3, 'migration 3 ran');
  s.vnfs.put({ name: 'old', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: 'quiet' });
  assert.equal(s.vnfs.get('old')!.kernel, 'vmlinuz');
  assert.equal(s.vnfs.get('old')!.currentRev, null);
  const m = (rev: number) => ({ vnfs: 'd', rev, parent: rev > 1 ? rev - 1 : null, source: 'dir:/x', comment: '', createdAt: rev, manifest: '{}' });
  s.vnfs.addRevision(m(1));
  s.vnfs.addRevision(m(2));
  assert.equal(s.vnfs.get('d')!.kernel, 'r2/vmlinuz');
  assert.equal(s.vnfs.get('d')!.initrd, 'r2/initrd.img');
  assert.equal(s.vnfs.get('d')!.arch, 'x86_64');
  s.vnfs.setCurrent('d', 1);
  assert.equal(s.vnfs.get('d')!.kernel, 'r1/vmlinuz');
  s.vnfs.deleteRevision('d', 2);
  assert.equal(s.vnfs.maxRev('d'), 2, 'a pruned number stays used');
  s.nodes.add({ mac: 'aa:bb:cc:dd:ee:01', name: 'n1', vnfs: 'd@1' }, { pattern: 'n####', firstNumber: 0, defaultGroup: '', defaultVnfs: '' });
  s.nodes.add({ mac: 'aa:bb:cc:dd:ee:02', name: 'n2', vnfs: 'd' }, { pattern: 'n####', firstNumber: 0, defaultGroup: '', defaultVnfs: '' });
  s.nodes.add({ mac: 'aa:bb:cc:dd:ee:03', name: 'n3', vnfs: 'dx' }, { pattern: 'n####', firstNumber: 0, defaultGroup: '', defaultVnfs: '' });
  assert.deepEqual(s.vnfs.usersOf('d').map((u) => u.name), ['n1', 'n2']);
  assert.equal(s.vnfs.list().find((v) => v.name === 'd')!.nodes, 2);
  assert.throws(() => s.nodes.set(['aa:bb:cc:dd:ee:02'], 'vnfs', 'd@x'), /revision "x"/);
  assert.throws(() => s.vnfs.delete('d'), /used by 2 node/);
  s.close();
});

test('kernel versions sort like sort -V; --kernel must name one the image has', () => {
  assert.ok(compareVersions('6.1.0-9-amd64', '6.1.0-10-amd64') < 0);
  assert.ok(compareVersions('6.10.0-1-amd64', '6.9.0-1-amd64') > 0);
  assert.equal(chooseKernel(['6.1.0-9-amd64', '6.1.0-10-amd64'].sort(compareVersions), undefined, 'x'), '6.1.0-10-amd64');
  assert.equal(chooseKernel([], undefined, 'x'), undefined);
  assert.throws(() => chooseKernel(['6.1.0-9-amd64'], '6.2', 'img'), (e: unknown) => e instanceof ImageError && /has no kernel 6.2 .* it has 6.1.0-9-amd64/.test(e.message));
  assert.throws(() => chooseKernel([], '6.2', 'img'), /no kernel in \/boot/);
});

test('excludes file: comments and blanks dropped, leading slashes removed, .. refused', () => {
  assert.deepEqual(parseExcludes('# cache\n/var/cache/apt/*\n\n  tmp/*  \n/../etc/shadow\n/var/log/\n'), ['var/cache/apt/*', 'tmp/*', 'var/log']);
});

test('getfattr dumps parse into per-file attribute sets, names with escapes included', () => {
  const dump = '# file: /r/t\ntrusted.overlay.opaque=0x79\n\n# file: /r/t/usr/bin/ping\nsecurity.capability=0x0100000200200000000000000000000000000000\n\n# file: /r/t/a\\040b\nuser.x=0x31\n';
  const m = parseXattrDump(dump, '/r/t');
  assert.equal(m.get(''), 'trusted.overlay.opaque=0x79');
  assert.match(m.get('usr/bin/ping')!, /^security\.capability=/);
  assert.equal(m.get('a b'), 'user.x=0x31');
  assert.ok(isOpaque(m.get('')));
  assert.ok(!isOpaque(m.get('a b')));
});

test('host apt sources are re-targeted to the requested suite, updates and security included', () => {
  const deb822 = 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n';
  assert.equal(retargetSources(deb822, 'bookworm', 'trixie'), deb822.replace(/bookworm/g, 'trixie'));
  assert.equal(retargetSources('deb http://m/debian bookworm main\n', 'bookworm', 'bookworm'), 'deb http://m/debian bookworm main\n');
  assert.equal(retargetSources('deb http://m/bookworm-mirror/debian bookworm main\n', 'bookworm', 'trixie'), 'deb http://m/bookworm-mirror/debian trixie main\n');
  assert.deepEqual(parsePackages('hello, vim-tiny  gcc-12'), ['hello', 'vim-tiny', 'gcc-12']);
  assert.throws(() => parsePackages('ok,--force-yes'), ImageError);
  assert.throws(() => validateSuite('bookworm;rm -rf /'), ImageError);
});

test('mount points below a work directory are found deepest first (so removing it never reaches /dev)', () => {
  const info = [
    '22 1 0:21 / /proc rw - proc proc rw',
    '90 80 0:5 / /var/lib/p/images/x/.staging-1/tree/dev rw - devtmpfs udev rw',
    '91 90 0:6 / /var/lib/p/images/x/.staging-1/tree/dev/pts rw - devpts devpts rw',
    '92 80 0:7 / /var/lib/p/images/x/.staging-10/tree/proc rw - proc proc rw',
    '93 80 0:8 / /var/lib/p/images/x/.staging-1/a\\040b rw - tmpfs t rw',
  ].join('\n');
  assert.deepEqual(mountsUnder(info, '/var/lib/p/images/x/.staging-1'), [
    '/var/lib/p/images/x/.staging-1/tree/dev/pts',
    '/var/lib/p/images/x/.staging-1/tree/dev',
    '/var/lib/p/images/x/.staging-1/a b',
  ]);
  assert.deepEqual(revDirsIn(['1', '12', 'r3', '.staging-4', '007', 'x'], ''), [1, 12]);
  assert.deepEqual(revDirsIn(['r1', 'r12', '3', 'vmlinuz'], 'r'), [1, 12]);
});

test('symlinks resolve inside the image: /etc/resolv.conf -> /run/... stays in the image', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-img-unit-'));
  try {
    fs.mkdirSync(path.join(root, 'etc'));
    fs.symlinkSync('/run/systemd/resolve/stub-resolv.conf', path.join(root, 'etc/resolv.conf'));
    assert.equal(resolveInImage(root, 'etc/resolv.conf'), 'run/systemd/resolve/stub-resolv.conf');
    fs.symlinkSync('../../../../etc/passwd', path.join(root, 'etc/escape'));
    assert.equal(resolveInImage(root, 'etc/escape'), 'etc/passwd', '.. stops at the image root, as in a chroot');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('dedupe links unchanged files to the parent, keeps changed ones and staged hard-link groups together', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-dedupe-'));
  try {
    const p = path.join(root, 'parent');
    const s = path.join(root, 'staged');
    for (const d of [p, s]) fs.mkdirSync(path.join(d, 'etc'), { recursive: true });
    const t = new Date('2026-01-01T00:00:00Z');
    const put = (f: string, body: string, mode = 0o644) => {
      fs.writeFileSync(f, body, { mode });
      fs.chmodSync(f, mode);
      fs.utimesSync(f, t, t);
    };
    for (const d of [p, s]) {
      put(path.join(d, 'etc/same'), 'same');
      put(path.join(d, 'etc/mode'), 'm', d === p ? 0o644 : 0o600);
      put(path.join(d, 'etc/content'), d === p ? 'aaaa' : 'bbbb');
      put(path.join(d, 'etc/l1'), 'linked');
      put(path.join(d, 'etc/cap'), 'ping');
      fs.linkSync(path.join(d, 'etc/l1'), path.join(d, 'etc/l2'));
    }
    put(path.join(s, 'etc/new'), 'new');
    fs.utimesSync(path.join(s, 'etc'), t, t);
    const r = dedupeAgainstParent(s, p, new Map([['etc/cap', 'security.capability=0x01']]), new Map());
    const ino = (f: string) => fs.statSync(f).ino;
    assert.equal(ino(path.join(s, 'etc/same')), ino(path.join(p, 'etc/same')));
    assert.notEqual(ino(path.join(s, 'etc/mode')), ino(path.join(p, 'etc/mode')), 'a mode change is a change');
    assert.notEqual(ino(path.join(s, 'etc/content')), ino(path.join(p, 'etc/content')), 'same size, other bytes: a change');
    assert.equal(ino(path.join(s, 'etc/l1')), ino(path.join(p, 'etc/l1')));
    assert.equal(ino(path.join(s, 'etc/l2')), ino(path.join(s, 'etc/l1')), 'the hard-link group stays one inode');
    assert.equal(r.linked, 3, JSON.stringify(['same','mode','content','l1','l2'].map((f) => [f, ino(path.join(s, 'etc', f)) === ino(path.join(p, 'etc', f))])));
    assert.deepEqual(fs.readdirSync(path.join(s, 'etc')).sort(), ['cap', 'content', 'l1', 'l2', 'mode', 'new', 'same'], 'no temporary names left');
    assert.equal(fs.statSync(path.join(s, 'etc')).mtime.getTime(), t.getTime(), 'directory times are put back');
    assert.notEqual(ino(path.join(s, 'etc/cap')), ino(path.join(p, 'etc/cap')), 'an extended attribute (capability) change is a change');
    const again = dedupeAgainstParent(s, p, new Map([['etc/cap', 'security.capability=0x01']]), new Map());
    assert.equal(again.linked, 3, 'files already linked to the parent count once more, nothing breaks');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('manifest JSON has a stable key order and round-trips', () => {
  const m: ImageManifest = { vnfs: 'd', rev: 2, parent: 1, arch: 'x86_64', source: 'exec:true', comment: '', createdAt: 1, kernel: 'k', kernelVersions: ['k'], artifacts: { 'rootfs.squashfs': { sha256: 'ab', size: 3 }, vmlinuz: { sha256: 'cd', size: 1 } }, tree: { files: 1, bytes: 2 } };
  const text = manifestJson(m);
  assert.deepEqual(Object.keys(JSON.parse(text).artifacts), ['vmlinuz', 'rootfs.squashfs']);
  assert.deepEqual(parseManifest(text).artifacts, { vmlinuz: { sha256: 'cd', size: 1 }, 'rootfs.squashfs': { sha256: 'ab', size: 3 } });
  assert.throws(() => parseManifest('{"x":1}'), /not an image manifest/);
});

test('boot context of a revision: URLs keep r<REV>/ as a path, the initrd name is flat for UEFI stubs', async () => {
  const { buildContext } = await import('../../src/boot/decide.js');
  const node = nodeRecord({ mac: 'aa:bb:cc:dd:ee:ff', name: 'n1', vnfs: 'd@3' });
  const vnfs: Vnfs = { name: 'd', kernel: 'r3/vmlinuz', initrd: 'r3/initrd.img', cmdline: '', attrs: {}, createdAt: 0, currentRev: 7 };
  const decision = decideBoot(node, { autoRegister: true, defaultVnfs: '', discoveryVnfs: 'stage1' });
  const ctx = buildContext({ decision, mac: node.mac, node, attrs: {}, vnfs, rev: 3, server: { address: '10.0.0.1', httpPort: 8080 }, token: '' });
  assert.equal(ctx.vnfs.kernelUrl, 'http://10.0.0.1:8080/vnfs/d/r3/vmlinuz?mac=aa-bb-cc-dd-ee-ff');
  assert.equal(ctx.vnfs.initrdUrl, 'http://10.0.0.1:8080/vnfs/d/r3/initrd.img?mac=aa-bb-cc-dd-ee-ff');
  assert.equal(ctx.vnfs.initrdName, 'initrd.img');
  assert.equal(ctx.vnfs.rev, '3');
  assert.equal(ctx.vnfs.rootfs, true);
  assert.equal(ctx.vnfs.revUrl, 'http://10.0.0.1:8080/vnfs/d/r3');
});
