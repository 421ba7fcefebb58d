/**
 * VNFS images with the real tools: a Debian image built by `pxeherd vnfs build` (mmdebstrap,
 * shared by the run: test/lab/image.ts), then changed with `vnfs exec` (overlay in its own
 * mount namespace), rolled back, pruned, packed reproducibly, and attacked with hostile names
 * and a killed import. Skips with the reason when root or a tool is missing.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { pxeherd, dumpDb } from '../helpers/cli.js';
import { cloneSharedImage, imageToolsMissing, mirrorReachable, sharedDebianImage, type SharedImage } from '../lab/image.js';
import { readCpio } from '../../src/stage1/cpio.js';
import { mksquashfs, sha256File, SQUASHFS_OPTIONS } from '../../src/images/pack.js';
import { Store } from '../../src/store/store.js';

// The image is built with mmdebstrap from this machine's apt sources.
const why = imageToolsMissing() ?? (mirrorReachable() ? undefined : 'needs a Debian mirror: vnfs build installs the image with mmdebstrap from this machine\'s apt sources');

function json<T>(r: { code: number; stdout: string; stderr: string }, what: string): T {
  assert.equal(r.code, 0, `${what}: exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** Every file under dir with its inode: to count what a revision shares with another. */
function inodes(dir: string): Map<string, { ino: number; size: number }> {
  const out = new Map<string, { ino: number; size: number }>();
  const rec = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) rec(r);
      else if (e.isFile()) {
        const st = fs.lstatSync(path.join(dir, r));
        out.set(r, { ino: st.ino, size: st.size });
      }
    }
  };
  rec('');
  return out;
}

describe('VNFS images: build, exec, revisions, packing', { skip: why, concurrency: false }, () => {
  let img: SharedImage;
  let dir = '';
  let config = '';
  let statedir = '';
  const name = 'deb12';
  // --config goes before a command's `--`: after it, it would be part of the command run in the image.
  const cli = (args: string[]) => {
    const dd = args.indexOf('--');
    return dd < 0 ? pxeherd(args, { config }) : pxeherd([...args.slice(0, dd), '--config', config, ...args.slice(dd)]);
  };

  before(async () => {
    img = await sharedDebianImage();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-images-'));
    ({ statedir, config } = cloneSharedImage(img, dir));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('vnfs build makes revision 1: the image\'s own kernel, a stage one with its own modules, a squashfs, a manifest that matches the files', () => {
    const revs = json<{ revisions: { rev: number; current: boolean; kernel: string; source: string; artifacts: Record<string, { sha256: string; size: number }> }[] }>(cli(['vnfs', 'revisions', name, '--json']), 'revisions');
    assert.equal(revs.revisions.length, 1);
    const r = revs.revisions[0]!;
    assert.equal(r.current, true);
    assert.equal(r.source, 'debian:bookworm');
    assert.match(r.kernel, /^\d+\.\d+\.\d+-\d+-amd64$/);
    const art = path.join(statedir, 'vnfs', name, `r${r.rev}`);
    for (const f of ['vmlinuz', 'initrd.img', 'rootfs.squashfs']) {
      assert.equal(sha256File(path.join(art, f)), r.artifacts[f]!.sha256, `${f} matches its manifest sha256`);
      assert.equal(fs.statSync(path.join(art, f)).size, r.artifacts[f]!.size);
    }
    const manifest = JSON.parse(fs.readFileSync(path.join(art, 'manifest.json'), 'utf8')) as { kernel: string; vnfs: string; rev: number };
    assert.equal(manifest.vnfs, name);
    assert.equal(manifest.kernel, r.kernel);
    assert.ok(fs.readFileSync(path.join(art, 'vmlinuz')).equals(fs.readFileSync(path.join(img.tree, 'boot', `vmlinuz-${r.kernel}`))), 'vmlinuz is the image\'s own kernel');
    const members = readCpio(zlib.gunzipSync(fs.readFileSync(path.join(art, 'initrd.img'))));
    const mods = members.filter((m) => m.name.startsWith('lib/modules/') && m.name.endsWith('.ko')).map((m) => path.basename(m.name, '.ko'));
    for (const m of ['squashfs', 'overlay', 'loop', 'virtio_net', 'e1000']) assert.ok(mods.includes(m), `initrd carries ${m}.ko (has ${mods.join(' ')})`);
    const info = members.find((m) => m.name === 'etc/pxeherd/build-info')!.data.toString();
    assert.match(info, new RegExp(`kernel=${r.kernel.replace(/\./g, '\\.')}`), 'modules come from the image\'s kernel version');
    assert.ok(members.some((m) => m.name === 'init'), 'stage one /init');
    // Today's boot path: the VNFS record points at the current revision's files.
    const show = json<{ kernel: string; initrd: string; currentRev: number }>(cli(['vnfs', 'show', name, '--json']), 'show');
    assert.equal(show.kernel, `r${r.rev}/vmlinuz`);
    assert.equal(show.initrd, `r${r.rev}/initrd.img`);
  });

  test('the squashfs keeps file capabilities, setuid bits, owners and hard links', () => {
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    const sq = path.join(statedir, 'vnfs', name, `r${img.rev}`, 'rootfs.squashfs');
    const m = spawnSync('mount', ['-o', 'loop,ro', '-t', 'squashfs', sq, mnt], { encoding: 'utf8' });
    assert.equal(m.status, 0, m.stderr);
    try {
      const cap = (root: string) => spawnSync('getfattr', ['-h', '-n', 'security.capability', '-e', 'hex', '--absolute-names', path.join(root, 'usr/bin/ping')], { encoding: 'utf8' }).stdout.trim().split('\n').pop();
      assert.match(cap(img.tree) ?? '', /^security\.capability=0x/, 'the image has ping with a file capability');
      assert.equal(cap(mnt), cap(img.tree), 'the squashfs keeps it');
      const passwd = fs.statSync(path.join(mnt, 'usr/bin/passwd'));
      assert.equal(passwd.mode & 0o4000, 0o4000, 'setuid kept');
      assert.equal(passwd.uid, 0);
      const shadow = fs.statSync(path.join(mnt, 'etc/shadow'));
      assert.equal(shadow.gid, fs.statSync(path.join(img.tree, 'etc/shadow')).gid, 'group owner kept (shadow)');
      const ino = (root: string, f: string) => fs.statSync(path.join(root, f)).ino;
      assert.equal(ino(img.tree, 'usr/bin/perl'), ino(img.tree, 'usr/bin/perl5.36.0'), 'Debian ships perl5.36.0 as a hard link of perl');
      assert.equal(ino(mnt, 'usr/bin/perl'), ino(mnt, 'usr/bin/perl5.36.0'), 'the squashfs keeps it one inode');
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  test('the squashfs is reproducible: packing the same tree again gives the same sha256', async () => {
    const m = json<{ revisions: { artifacts: Record<string, { sha256: string }> }[] }>(cli(['vnfs', 'revisions', name, '--json']), 'revisions');
    const out = path.join(dir, 'again.squashfs');
    await mksquashfs(img.tree, out, { extra: SQUASHFS_OPTIONS });
    assert.equal(sha256File(out), m.revisions[0]!.artifacts['rootfs.squashfs']!.sha256);
    fs.rmSync(out);
  });

  test('vnfs exec installs a package with apt inside the image: a new revision has it, the old one does not', () => {
    // A local package, so the test needs no network: apt and dpkg run inside the image all the same.
    const pkg = path.join(dir, 'pkg');
    fs.mkdirSync(path.join(pkg, 'DEBIAN'), { recursive: true });
    fs.mkdirSync(path.join(pkg, 'usr/bin'), { recursive: true });
    fs.writeFileSync(path.join(pkg, 'DEBIAN/control'), 'Package: pxeherd-test-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: pxeherd tests <root@localhost>\nDescription: says hello\n');
    fs.writeFileSync(path.join(pkg, 'usr/bin/pxeherd-hello'), '#!/bin/sh\necho "Hello from the image"\n', { mode: 0o755 });
    const deb = path.join(dir, 'pxeherd-test-hello.deb');
    const b = spawnSync('dpkg-deb', ['--root-owner-group', '--build', pkg, deb], { encoding: 'utf8' });
    assert.equal(b.status, 0, b.stderr);
    const before = dumpDb(statedir);
    const r = spawnSync(process.execPath, [path.resolve('dist/cli.js'), 'vnfs', 'exec', name, '--comment', 'add hello', '--json', '--config', config, '--', 'sh', '-c', 'cat > /tmp/p.deb && apt-get install -y -q /tmp/p.deb && rm /tmp/p.deb'], { input: fs.readFileSync(deb), encoding: 'utf8' });
    const res = json<{ rev: number; parent: number }>({ code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr }, 'exec apt-get install');
    assert.equal(res.parent, img.rev);
    assert.notEqual(dumpDb(statedir), before);
    const tree = path.join(statedir, 'images', name, String(res.rev), 'tree');
    assert.ok(fs.existsSync(path.join(tree, 'usr/bin/pxeherd-hello')), 'installed in the new revision');
    assert.match(fs.readFileSync(path.join(tree, 'var/lib/dpkg/status'), 'utf8'), /Package: pxeherd-test-hello\nStatus: install ok installed/);
    assert.ok(!fs.existsSync(path.join(img.tree, 'usr/bin/pxeherd-hello')), 'the parent revision is untouched');
    assert.ok(!fs.existsSync(path.join(tree, 'tmp/p.deb')), 'the package file was removed');
    // Nothing of the exec's mounts is committed.
    assert.deepEqual(fs.readdirSync(path.join(tree, 'proc')), []);
    assert.deepEqual(fs.readdirSync(path.join(tree, 'sys')), []);
    const hello = spawnSync('chroot', [tree, '/usr/bin/pxeherd-hello'], { encoding: 'utf8' });
    assert.equal(hello.stdout.trim(), 'Hello from the image');
  });

  test('inside the image the master\'s resolv.conf is visible, /proc is mounted, and a command that changes nothing makes no revision', () => {
    const revs = json<{ revisions: unknown[] }>(cli(['vnfs', 'revisions', name, '--json']), 'revisions').revisions.length;
    const r = cli(['vnfs', 'exec', name, '--json', '--', 'sh', '-c', 'cat /etc/resolv.conf >&2; test -r /proc/self/status; test -c /dev/null']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stderr.includes(fs.readFileSync('/etc/resolv.conf', 'utf8').trim()), 'the master\'s resolv.conf');
    assert.equal(JSON.parse(r.stdout).unchanged, true);
    assert.equal(json<{ revisions: unknown[] }>(cli(['vnfs', 'revisions', name, '--json']), 'revisions').revisions.length, revs);
  });

  test('a failing command makes no revision and leaves the image and the database as they were', () => {
    const revsBefore = json<{ revisions: unknown[] }>(cli(['vnfs', 'revisions', name, '--json']), 'revisions').revisions;
    const filesBefore = fs.readdirSync(path.join(statedir, 'images', name)).sort();
    const r = cli(['vnfs', 'exec', name, '--', 'sh', '-c', 'echo junk > /root/junk; rm -rf /usr/bin; exit 3']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /exited with 3 .*no revision made/);
    assert.deepEqual(json<{ revisions: unknown[] }>(cli(['vnfs', 'revisions', name, '--json']), 'revisions').revisions, revsBefore);
    assert.deepEqual(fs.readdirSync(path.join(statedir, 'images', name)).sort(), filesBefore, 'no staging directory left');
    const cur = json<{ currentRev: number }>(cli(['vnfs', 'show', name, '--json']), 'show').currentRev;
    assert.ok(fs.existsSync(path.join(statedir, 'images', name, String(cur), 'tree/usr/bin/sh')), 'the current revision still has /usr/bin/sh');
  });

  test('a one-file change costs about that file: every other file is a hard link to the parent\'s', () => {
    const cur = json<{ currentRev: number }>(cli(['vnfs', 'show', name, '--json']), 'show').currentRev;
    const res = json<{ rev: number }>(cli(['vnfs', 'exec', name, '--json', '--', 'sh', '-c', 'head -c 300000 /dev/urandom > /root/one-file']), 'exec one file');
    const a = inodes(path.join(statedir, 'images', name, String(cur), 'tree'));
    const b = inodes(path.join(statedir, 'images', name, String(res.rev), 'tree'));
    const fresh = [...b].filter(([p, x]) => a.get(p)?.ino !== x.ino);
    assert.deepEqual(fresh.map(([p]) => p), ['root/one-file'], 'only the new file has its own inode');
    const bytes = fresh.reduce((s, [, x]) => s + x.size, 0);
    assert.equal(bytes, 300000);
    const show = json<{ revisions: { rev: number; disk: { addedBytes: number } }[] }>(cli(['vnfs', 'show', name, '--json']), 'show');
    const added = show.revisions.find((x) => x.rev === res.rev)!.disk.addedBytes;
    const sq = json<{ revisions: { rev: number; artifacts: Record<string, { size: number }> }[] }>(cli(['vnfs', 'revisions', name, '--json']), 'revs').revisions.find((x) => x.rev === res.rev)!.artifacts['rootfs.squashfs']!.size;
    // The file (300 kB) plus the new squashfs; kernel and stage one are linked from the parent.
    assert.ok(added < sq + 2 * 300000 + (1 << 20), `revision ${res.rev} adds ${added} bytes (squashfs ${sq})`);
  });

  test('rollback makes the previous revision current; a pinned node keeps its revision through prune, which says why', () => {
    const revs = json<{ revisions: { rev: number; current: boolean }[] }>(cli(['vnfs', 'revisions', name, '--json']), 'revisions').revisions;
    assert.ok(revs.length >= 3, `three revisions or more, not ${revs.length}`);
    const first = revs[0]!.rev;
    const last = revs[revs.length - 1]!.rev;
    assert.equal(cli(['node', 'add', '52:54:00:16:00:01', 'n0001', '--vnfs', `${name}@${first}`]).code, 0);
    assert.equal(cli(['node', 'add', '52:54:00:16:00:02', 'n0002', '--vnfs', `${name}@999`]).code, 2, 'a pin to a revision that does not exist is refused');
    const rb = json<{ from: number; to: number }>(cli(['vnfs', 'rollback', name, '--json']), 'rollback');
    assert.equal(rb.from, last);
    assert.ok(rb.to < last, 'rolled back to an older revision');
    const pr = json<{ removed: { rev: number }[]; kept: { rev: number; why: string[] }[] }>(cli(['vnfs', 'prune', name, '--keep', '0', '--json']), 'prune');
    const kept = new Map(pr.kept.map((k) => [k.rev, k.why.join('; ')]));
    assert.match(kept.get(rb.to) ?? '', /current/);
    assert.match(kept.get(first) ?? '', /pinned by n0001/);
    assert.ok(pr.removed.length >= 1, 'prune removed something');
    for (const r of pr.removed) {
      assert.ok(!fs.existsSync(path.join(statedir, 'images', name, String(r.rev))), `tree of r${r.rev} removed`);
      assert.ok(!fs.existsSync(path.join(statedir, 'vnfs', name, `r${r.rev}`)), `files of r${r.rev} removed`);
    }
    // The pinned node boots r<first>; the rest boot the current revision.
    const s = Store.open(statedir);
    try {
      assert.equal(s.vnfs.get(name)!.currentRev, rb.to);
    } finally {
      s.close();
    }
    const ex = cli(['explain', '52:54:00:16:00:01', '--ipxe']);
    assert.equal(ex.code, 0, ex.stderr);
    assert.match(ex.stdout, new RegExp(`/vnfs/${name}/r${first}/vmlinuz`));
    const rb2 = cli(['vnfs', 'rollback', name, String(pr.removed[0]!.rev)]);
    assert.equal(rb2.code, 2, 'rolling back to a pruned revision is refused');
  });

  test('hostile VNFS names are refused with exit 2 and create nothing', () => {
    const before = fs.readdirSync(statedir).sort();
    for (const bad of ['../x', 'a/b', '.hidden', '-rf', 'x'.repeat(80), 'a..b']) {
      for (const args of [
        ['vnfs', 'build', bad, '--debian', 'bookworm'],
        ['vnfs', 'import', bad, img.tree],
        ['vnfs', 'exec', bad, '--', 'true'],
        ['vnfs', 'rollback', bad],
        ['vnfs', 'prune', bad, '--keep', '1'],
      ]) {
        const r = cli(args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      }
    }
    assert.deepEqual(fs.readdirSync(statedir).sort(), before);
    assert.ok(!fs.existsSync(path.join(dir, 'x')), 'nothing created outside the state directory');
    assert.equal(cli(['vnfs', 'build', 'ok', '--debian', 'bookworm;rm']).code, 2, 'a hostile suite is refused');
    assert.equal(cli(['vnfs', 'build', 'ok', '--debian', 'bookworm', '--packages', 'a b,--foo']).code, 2, 'a hostile package name is refused');
  });

  test('an import killed half-way leaves no revision; the next operation removes what it left', async () => {
    const p = spawn(process.execPath, [path.resolve('dist/cli.js'), 'vnfs', 'import', 'killed', img.tree, '--config', config], { stdio: 'ignore' });
    const staging = path.join(statedir, 'images', 'killed');
    for (let i = 0; i < 200 && !(fs.existsSync(staging) && fs.readdirSync(staging).some((n) => n.startsWith('.staging-'))); i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 700));
    p.kill('SIGKILL');
    await new Promise((r) => p.on('close', r));
    assert.equal(cli(['vnfs', 'show', 'killed']).code, 2, 'no VNFS was recorded');
    const s = Store.open(statedir);
    try {
      assert.deepEqual(s.vnfs.revisions('killed'), []);
    } finally {
      s.close();
    }
    // A later import of the same name cleans up first and numbers from 1.
    const small = path.join(dir, 'small');
    fs.mkdirSync(path.join(small, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(small, 'etc/hostname'), 'x\n');
    const r = json<{ rev: number }>(cli(['vnfs', 'import', 'killed', small, '--json']), 'import after kill');
    assert.equal(r.rev, 1);
    assert.deepEqual(fs.readdirSync(staging).filter((n) => n.startsWith('.staging-')), []);
  });

  test('a build killed half-way leaves no revision, no mmdebstrap, apt or dpkg still running, nothing mounted', async () => {
    const p = spawn(process.execPath, [path.resolve('dist/cli.js'), 'vnfs', 'build', 'killedbuild', '--debian', 'bookworm', '--config', config], { stdio: 'ignore' });
    const imgDir = path.join(statedir, 'images', 'killedbuild');
    const started = () => fs.existsSync(imgDir) && fs.readdirSync(imgDir).some((n) => n.startsWith('.staging-') && fs.existsSync(path.join(imgDir, n, 'tree', 'var')));
    for (let i = 0; i < 600 && !started(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(started(), 'mmdebstrap started filling the staging tree');
    await new Promise((r) => setTimeout(r, 3000));
    p.kill('SIGKILL');
    await new Promise((r) => p.on('close', r));
    await new Promise((r) => setTimeout(r, 2000));
    const survivors = fs
      .readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(imgDir);
        } catch {
          return false;
        }
      });
    assert.deepEqual(survivors, [], 'no process of the build is left');
    assert.deepEqual(fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(imgDir)), [], 'nothing left mounted in the staging tree');
    assert.equal(cli(['vnfs', 'show', 'killedbuild']).code, 2, 'no VNFS was recorded');
    const small = path.join(dir, 'small2');
    fs.mkdirSync(path.join(small, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(small, 'etc/hostname'), 'y\n');
    assert.equal(json<{ rev: number }>(cli(['vnfs', 'import', 'killedbuild', small, '--json']), 'import after a killed build').rev, 1);
    assert.deepEqual(fs.readdirSync(imgDir).filter((n) => n.startsWith('.staging-')), [], 'the next operation removed what the build left');
  });
});
