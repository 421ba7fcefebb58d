/**
 * The stateless defaults (issue 17) without QEMU: the init nodescripts are rendered for a
 * node by the real engine on the master, then their node-side shell runs under dash and
 * under busybox sh (with busybox's applets first in PATH, as in stage one), in a private
 * mount namespace (unshare -m, a tmpfs on /run), against pxeherd's real HTTP routes for the
 * image and the per-node files. The squashfs is really mounted with a tmpfs overlay; what the
 * scripts wrote into $DESTDIR is then checked file by file.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import os from 'node:os';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { Store } from '../../src/store/store.js';
import { createHttpApp } from '../../src/http/app.js';
import { vnfsRouter } from '../../src/http/vnfs.js';
import { NodescriptEngine } from '../../src/nodescripts/engine.js';
import { installDefaultNodescripts, DEFAULT_NODESCRIPTS_SRC } from '../../src/nodescripts/install.js';
import { NodeTokens } from '../../src/security/tokens.js';
import { statelessParts, overlaySources, currentRevOf } from '../../src/stateless/wiring.js';
import { nodeImage } from '../../src/stateless/image.js';
import { keptHostKeys } from '../../src/stateless/identity.js';
import { nodeOverlay } from '../../src/stateless/context.js';
import { loadConfig } from '../../src/config/load.js';
import type { BootEvent } from '../../src/nodes/types.js';
import { provisionRouter } from '../../src/provision/http.js';
import { ProvisionService } from '../../src/provision/service.js';
import { provisionBackend } from '../../src/server/backends.js';
import { httpAuthorizer } from '../../src/security/authorize.js';

function which(b: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${b}`]).status === 0;
}
const why =
  process.getuid?.() !== 0
    ? 'needs root (mount namespaces, loop and overlay mounts)'
    : !['dash', 'busybox', 'mksquashfs', 'unshare', 'ssh-keygen'].every(which)
      ? 'needs dash, busybox, squashfs-tools, util-linux unshare and openssh-client (Debian packages)'
      : spawnSync('unshare', ['-m', 'true']).status !== 0
        ? 'unshare -m does not work here'
        : undefined;

const MAC = '52:54:00:5e:00:01';
const HASH = '$6$saltsalt$' + 'a'.repeat(86);

interface Ctx {
  dir: string;
  statedir: string;
  store: Store;
  server: http.Server;
  url: string;
  events: BootEvent[];
  tokens: NodeTokens;
  engine: NodescriptEngine;
  bbdir: string;
  sha: string;
}

function makeImage(c: Ctx, rev: number, marker: string): string {
  const tree = path.join(c.dir, `tree${rev}`);
  for (const d of ['etc/ssh', 'sbin', 'lib/systemd/system', 'root', 'var/lib', 'usr/lib']) fs.mkdirSync(path.join(tree, d), { recursive: true });
  fs.writeFileSync(path.join(tree, 'etc/shadow'), 'root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n', { mode: 0o640 });
  fs.writeFileSync(path.join(tree, 'etc/hostname'), 'image\n');
  fs.writeFileSync(path.join(tree, 'etc/machine-id'), '');
  fs.writeFileSync(path.join(tree, 'etc/ssh/ssh_host_ed25519_key'), 'the image builder\'s key: must be replaced\n', { mode: 0o600 });
  fs.writeFileSync(path.join(tree, 'etc/motd'), 'image motd\n');
  fs.writeFileSync(path.join(tree, 'etc/image-marker'), marker);
  fs.writeFileSync(path.join(tree, 'lib/systemd/system/systemd-networkd.service'), '[Service]\n');
  fs.symlinkSync('/lib/systemd/systemd', path.join(tree, 'sbin/init'));
  const out = path.join(c.statedir, 'vnfs', 'deb', `r${rev}`);
  fs.mkdirSync(out, { recursive: true });
  const sq = path.join(out, 'rootfs.squashfs');
  execFileSync('mksquashfs', [tree, sq, '-quiet', '-noappend', '-all-root'], { stdio: 'ignore' });
  const data = fs.readFileSync(sq);
  const sha = crypto.createHash('sha256').update(data).digest('hex');
  // Pretty-printed like JSON.stringify(m, null, 2), keys in the contract's order.
  const manifest = { vnfs: 'deb', rev, parent: rev > 1 ? rev - 1 : null, arch: 'x86_64', source: 'dir:/test', comment: '', createdAt: Date.now(), kernel: '6.1.0-test', kernelVersions: ['6.1.0-test'], artifacts: { 'rootfs.squashfs': { sha256: sha, size: data.length } }, tree: { files: 9, bytes: 100 } };
  fs.writeFileSync(path.join(out, 'manifest.json'), JSON.stringify(manifest, null, 2));
  c.store.vnfs.addRevision({ vnfs: 'deb', rev, parent: manifest.parent, source: manifest.source, comment: '', createdAt: manifest.createdAt, manifest: JSON.stringify(manifest) });
  return sha;
}

/** Render the init scripts for NODE on the master, run their node side with SHELL in a private mount namespace. */
async function bootScripts(c: Ctx, shell: 'dash' | 'busybox', nodeName: string): Promise<{ status: number | null; out: string; root: string; switchRoot: string; fstype: string; runFiles: string }> {
  const node = c.store.nodes.byName(nodeName)!;
  const token = c.tokens.issueToken(node.mac);
  const r = await c.engine.renderScript(node, 'init', { attrs: c.store.attrsFor(node), ip: node.ip, token });
  assert.ok(r.ok, `the master-side scripts succeed: ${r.failure?.script} ${r.failure?.reason} ${r.failure?.stderr}`);
  const work = fs.mkdtempSync(path.join(c.dir, `run-${shell}-`));
  const script = path.join(work, 'init.sh');
  fs.writeFileSync(script, r.text);
  const root = path.join(work, 'root');
  fs.mkdirSync(root);
  const sh = shell === 'dash' ? 'dash' : 'busybox sh';
  // What stage one provides: /run a tmpfs with the lease, PXEHERD_MASTER and PXEHERD_TOKEN,
  // /bin/busybox. After the scripts, the new root is copied out before the namespace ends.
  const wrapper = `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
printf "LEASE_ip='127.0.0.1'\\nLEASE_mask='24'\\nLEASE_router='127.0.0.254'\\nLEASE_dns='10.9.9.9 10.9.9.8'\\nLEASE_ntpsrv='10.9.9.7'\\n" > /run/pxeherd.lease
export PATH=${c.bbdir}:$PATH PXEHERD_MASTER=${c.url} PXEHERD_TOKEN=${token} DESTDIR=/run/newroot
set +e
${sh} ${script}
rc=$?
if mountpoint -q /run/newroot; then tar -C /run/newroot -cf ${work}/root.tar . ; findmnt -n -o FSTYPE /run/newroot > ${work}/fstype; fi
ls -A /run/pxeherd > ${work}/run-files 2>/dev/null
cp /run/pxeherd.switch_root ${work}/switch_root 2>/dev/null
exit $rc
`;
  // Asynchronously: the HTTP server the scripts talk to runs in this process.
  const p = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const ch = spawn('unshare', ['-m', 'sh', '-c', wrapper], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    ch.stdout.on('data', (d) => (stdout += d));
    ch.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => ch.kill('SIGKILL'), 90_000);
    ch.on('close', (status) => {
      clearTimeout(t);
      resolve({ status, stdout, stderr });
    });
  });
  if (fs.existsSync(path.join(work, 'root.tar'))) execFileSync('tar', ['-C', root, '-xf', path.join(work, 'root.tar')]);
  const sr = path.join(work, 'switch_root');
  const text = (f: string) => (fs.existsSync(path.join(work, f)) ? fs.readFileSync(path.join(work, f), 'utf8') : '');
  return { status: p.status, out: (p.stdout ?? '') + (p.stderr ?? ''), root, switchRoot: fs.existsSync(sr) ? fs.readFileSync(sr, 'utf8') : '', fstype: text('fstype').trim(), runFiles: text('run-files') };
}

function overlayOf(c: Ctx, name: string) {
  const config = loadConfig(path.join(c.dir, 'pxeherd.yaml'));
  return nodeOverlay(overlaySources(config, c.store, { address: '127.0.0.1', httpPort: 8080 }), c.store.nodes.byName(name)!);
}

describe('stateless nodescripts: rendered on the master, node side run by dash and busybox sh', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;

  before(async () => {
    c.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-stateless-'));
    c.statedir = path.join(c.dir, 'var');
    fs.mkdirSync(c.statedir);
    const cfgFile = path.join(c.dir, 'pxeherd.yaml');
    fs.writeFileSync(cfgFile, `statedir: ${c.statedir}\naddress: 127.0.0.1\nhttp: { port: 8080 }\n`);
    const config = loadConfig(cfgFile);
    c.store = Store.open(c.statedir);
    c.bbdir = path.join(c.dir, 'bb');
    fs.mkdirSync(c.bbdir);
    execFileSync('busybox', ['--install', '-s', c.bbdir]);
    c.sha = makeImage(c, 1, 'revision one');
    const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };
    c.store.nodes.add({ mac: MAC, name: 'n0000', vnfs: 'deb', ip: '127.0.0.1', attrs: { root_password_hash: HASH, authorized_keys: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXTRAKEYEXTRAKEYEXTRAKEYEXTRAKEYEXTRAKEYEX admin@desk', ntp: '10.1.1.1,10.1.1.2', checkin_interval: '60' } }, policy);
    c.store.nodes.add({ mac: '52:54:00:5e:00:02', name: 'n0001', vnfs: 'deb', ip: '10.77.0.51' }, policy);
    c.events = [];
    const events = { record: (e: BootEvent) => void c.events.push({ time: Date.now(), ...e }) };
    c.tokens = new NodeTokens({ key: crypto.randomBytes(32), ttlSeconds: 3600 });
    await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, path.join(c.statedir, 'nodescripts'));
    c.server = http.createServer();
    await new Promise<void>((r) => c.server.listen(0, '127.0.0.1', r));
    const port = (c.server.address() as AddressInfo).port;
    c.url = `http://127.0.0.1:${port}`;
    const parts = await statelessParts({ config: { ...config, http: { ...config.http, port } }, store: c.store, serverAddress: '127.0.0.1', events, tokens: c.tokens });
    c.engine = new NodescriptEngine({
      dir: path.join(c.statedir, 'nodescripts'),
      statedir: c.statedir,
      events,
      attrsFor: (n) => c.store.attrsFor(n),
      imageFor: (n, attrs) => nodeImage(n.vnfs, attrs, currentRevOf(c.store, n.vnfs)),
    });
    // /provision/ready for the OS check-in, with tokens required as in `serve`.
    const provision = new ProvisionService(provisionBackend(c.store, config, events, c.tokens), c.engine);
    const authorize = httpAuthorizer({ enabled: true, tokens: c.tokens, events });
    c.server.on('request', createHttpApp({ routers: [provisionRouter(provision, { authorize }), vnfsRouter({ vnfsRoot: path.join(c.statedir, 'vnfs'), events, cache: false }), ...parts.routers] }));
  });

  after(async () => {
    await c.engine?.close();
    c.server?.close();
    c.store?.close();
    fs.rmSync(c.dir, { recursive: true, force: true });
  });

  for (const shell of ['dash', 'busybox'] as const) {
    test(`${shell}: fetch + verify + overlay mount, then hostname, network by MAC, hosts, identity, keys, password, time, check-in, switch_root request`, async () => {
      const since = Date.now();
      const r = await bootScripts(c, shell, 'n0000');
      assert.equal(r.status, 0, `the node-side scripts succeed under ${shell}:\n${r.out}`);
      const read = (p: string) => fs.readFileSync(path.join(r.root, p), 'utf8');
      assert.equal(read('etc/image-marker'), 'revision one', 'the revision is mounted at $DESTDIR');
      assert.match(r.out, new RegExp(`rootfs.squashfs verified \\(sha256 ${c.sha}\\)`));
      assert.equal(read('etc/hostname'), 'n0000\n');
      const net = read('etc/systemd/network/10-pxeherd-boot.network');
      assert.match(net, /^\[Match\]\nMACAddress=52:54:00:5e:00:01$/m, 'the boot NIC is matched by MAC');
      assert.match(net, /^DHCP=ipv4$/m);
      assert.match(net, /^DNS=10\.9\.9\.9$/m, 'DNS from the lease');
      assert.match(net, /^ClientIdentifier=mac$/m);
      assert.ok(r.out.includes('no interface with MAC 52:54:00:5e:00:01 here'), 'no such NIC on this host: the OS names it (in QEMU a .link keeps the name)');
      assert.ok(fs.lstatSync(path.join(r.root, 'etc/systemd/system/multi-user.target.wants/systemd-networkd.service')).isSymbolicLink(), 'networkd enabled');
      assert.equal(read('etc/resolv.conf'), '# written by pxeherd (nodescript 52-os-network)\nnameserver 10.9.9.9\nnameserver 10.9.9.8\n');
      assert.match(read('etc/systemd/timesyncd.conf.d/pxeherd.conf'), /^NTP=10\.1\.1\.1 10\.1\.1\.2$/m, 'the ntp attribute wins over the lease');
      const hosts = read('etc/hosts');
      assert.match(hosts, /^127\.0\.0\.1\tn0000$/m, 'every node with an address in /etc/hosts');
      assert.match(hosts, /^10\.77\.0\.51\tn0001$/m);
      // Identity: the master's copy, never the image's.
      const kept = keptHostKeys(c.statedir, 'n0000');
      assert.equal(kept.length, 3);
      for (const t of ['ed25519', 'ecdsa', 'rsa']) {
        assert.equal(read(`etc/ssh/ssh_host_${t}_key`), fs.readFileSync(path.join(c.statedir, 'hostkeys/n0000', `ssh_host_${t}_key`), 'utf8'), `${t} private key is the master's`);
        assert.equal(fs.statSync(path.join(r.root, `etc/ssh/ssh_host_${t}_key`)).mode & 0o777, 0o600);
      }
      assert.equal(read('etc/machine-id'), fs.readFileSync(path.join(c.statedir, 'hostkeys/n0000/machine-id'), 'utf8'));
      assert.match(read('etc/machine-id'), /^[0-9a-f]{32}\n$/);
      assert.equal(read('etc/shadow').split('\n')[0], `root:${HASH}:19000:0:99999:7:::`, "root's hash from the attribute");
      assert.match(read('etc/shadow'), /^daemon:\*:/m, 'other lines untouched');
      const ak = read('root/.ssh/authorized_keys');
      assert.ok(ak.includes(fs.readFileSync(path.join(c.statedir, 'ssh/id_ed25519.pub'), 'utf8').trim()), "pxeherd's key is authorized");
      assert.match(ak, /admin@desk$/m, 'and the attribute keys');
      assert.equal(fs.statSync(path.join(r.root, 'root/.ssh/authorized_keys')).mode & 0o777, 0o600);
      // Check-in service
      assert.match(read('etc/systemd/system/pxeherd-checkin.timer'), /^OnUnitActiveSec=60s$/m);
      assert.match(read('etc/pxeherd/checkin.conf'), new RegExp(`PXEHERD_MASTER='${c.url}'`));
      assert.match(read('var/lib/pxeherd/token'), /^[0-9a-z]+\.[0-9a-f]+\.\S+\n$/);
      assert.ok(fs.existsSync(path.join(r.root, 'usr/lib/pxeherd/busybox')));
      assert.equal(read('var/lib/pxeherd/overlay.hash').trim(), overlayOf(c, 'n0000').hash, 'the applied overlay hash is kept for the check-in');
      assert.equal(r.switchRoot, '/run/newroot /sbin/init\n', 'stage one is asked to switch_root into /sbin/init');
      const kinds = c.events.filter((e) => (e.time ?? 0) >= since).map((e) => e.kind);
      for (const k of ['http.file', 'image.download', 'image.verify', 'node.identity', 'overlay.send', 'image.switch_root']) assert.ok(kinds.includes(k), `event ${k} (have ${kinds.join(' ')})`);
      const dl = c.events.filter((e) => e.kind === 'image.download').pop()!;
      assert.equal((dl.detail as { bytes: number }).bytes, fs.statSync(path.join(c.statedir, 'vnfs/deb/r1/rootfs.squashfs')).size);
      const secrets = JSON.stringify(c.events);
      assert.ok(!secrets.includes(HASH) && !secrets.includes('PRIVATE KEY'), 'no secret in any event');
    });
  }

  test('wipe_on_boot (node release --wipe): 07-disk-wipe erases the disk it is given (quick: tables and signatures; full: every byte), reports wipe.done, and the master removes the attribute', async (t) => {
    const MiB = 1 << 20;
    const img = path.join(c.dir, 'disk.img');
    fs.writeFileSync(img, Buffer.alloc(64 * MiB, 0xaa));
    let loop: string;
    try {
      loop = execFileSync('losetup', ['-f', '--show', '-P', img]).toString().trim();
    } catch (e) {
      return t.skip(`no loop device here: ${(e as Error).message}`);
    }
    t.after(() => spawnSync('losetup', ['-d', loop]));
    const disk = path.basename(loop);
    execFileSync('sfdisk', ['--quiet', loop], { input: 'label: gpt\n,32M\n,16M,S\n' });
    const p1 = `${loop}p1`;
    // Without udev the kernel may not have read the new table yet: partx adds the partitions.
    if (!fs.existsSync(`/sys/block/${disk}/${disk}p2`)) spawnSync('partx', ['-a', loop]);
    for (let i = 0; i < 50 && !fs.existsSync(p1); i++) await new Promise((r) => setTimeout(r, 100));
    execFileSync('mkfs.ext4', ['-q', '-F', p1]);
    execFileSync('mkswap', [`${loop}p2`], { stdio: 'ignore' });
    assert.equal(spawnSync('blkid', ['-p', p1]).status, 0, 'the partition has an ext4 signature to erase');
    const n = c.store.nodes.byName('n0000')!;
    const at = (off: number, len = MiB) => {
      const fd = fs.openSync(img, 'r');
      const b = Buffer.alloc(len);
      fs.readSync(fd, b, 0, len, off);
      fs.closeSync(fd);
      return b;
    };
    const zero = (b: Buffer) => b.every((x) => x === 0);
    try {
      c.store.nodes.set([n.mac], 'attr.wipe_disks', disk);
      c.store.nodes.set([n.mac], 'attr.wipe_on_boot', 'yes');
      const since = Date.now();
      const r = await bootScripts(c, 'busybox', 'n0000');
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, new RegExp(`pxeherd: wiping ${disk} \\(64 MiB, quick\\)`));
      assert.match(r.out, new RegExp(`pxeherd: wiped ${disk} \\(quick\\)`));
      for (const [what, off] of [['protective MBR + primary GPT', 0], ['ext4 superblock', 1 * MiB], ['end of partition 1', 32 * MiB], ['swap signature', 33 * MiB], ['backup GPT', 63 * MiB]] as const) {
        assert.ok(zero(at(off)), `${what} erased (MiB at ${off / MiB})`);
      }
      assert.ok(at(40 * MiB, 4096).every((x) => x === 0xaa), 'quick leaves the data between the ends alone');
      assert.notEqual(spawnSync('blkid', ['-p', loop]).status, 0, 'no partition table signature left');
      const done = c.events.filter((e) => (e.time ?? 0) >= since && e.kind === 'wipe.done');
      assert.deepEqual(done.map((e) => e.detail && { mode: (e.detail as Record<string, unknown>).mode, disks: (e.detail as Record<string, unknown>).disks }), [{ mode: 'quick', disks: disk }]);
      assert.equal(c.store.nodes.byName('n0000')!.attrs.wipe_on_boot, undefined, 'the master removed wipe_on_boot: the next boot does not wipe again');
      assert.ok(c.events.some((e) => (e.time ?? 0) >= since && e.kind === 'wipe.recorded'));
      const again = await bootScripts(c, 'busybox', 'n0000');
      assert.equal(again.status, 0, again.out);
      assert.doesNotMatch(again.out, /wiping/, 'no wipe without the attribute');

      fs.writeFileSync(img, Buffer.alloc(64 * MiB, 0xaa));
      c.store.nodes.set([n.mac], 'attr.wipe_on_boot', 'full');
      const full = await bootScripts(c, 'dash', 'n0000');
      assert.equal(full.status, 0, full.out);
      for (let off = 0; off < 64 * MiB; off += 8 * MiB) assert.ok(zero(at(off, 8 * MiB)), `full: every byte zero (8 MiB at ${off / MiB} MiB)`);
      const last = c.events.filter((e) => e.kind === 'wipe.done').pop()!;
      assert.equal((last.detail as { bytes: number }).bytes, 64 * MiB);

      // A disk that is not there stops the boot, names it and keeps the attribute for the next try.
      c.store.nodes.set([n.mac], 'attr.wipe_disks', 'nosuchdisk');
      c.store.nodes.set([n.mac], 'attr.wipe_on_boot', 'yes');
      const bad = await bootScripts(c, 'busybox', 'n0000');
      assert.notEqual(bad.status, 0);
      assert.match(bad.out, /pxeherd: WIPE FAILED on nosuchdisk: wipe_disks names nosuchdisk but this machine has no such disk/);
      assert.ok(c.events.some((e) => e.kind === 'wipe.fail' && (e.detail as { disk?: string }).disk === 'nosuchdisk'));
      assert.equal(c.store.nodes.byName('n0000')!.attrs.wipe_on_boot, 'yes');
      assert.equal(bad.switchRoot, '', 'no switch_root after a failed wipe');

      c.store.nodes.set([n.mac], 'attr.wipe_on_boot', 'maybe');
      const odd = await bootScripts(c, 'busybox', 'n0000');
      assert.notEqual(odd.status, 0);
      assert.match(odd.out, /NOT BOOTING n0000: attribute wipe_on_boot="maybe" is not one of yes, quick, full, no/);
    } finally {
      c.store.nodes.set([n.mac], 'attr.wipe_on_boot', '');
      c.store.nodes.set([n.mac], 'attr.wipe_disks', '');
    }
  });

  test('runtime refresh: a node added later reaches /etc/hosts through overlay-apply; an unchanged overlay is one empty answer', async () => {
    const r = await bootScripts(c, 'dash', 'n0000');
    assert.equal(r.status, 0, r.out);
    const n = c.store.nodes.byName('n0000')!;
    const q = (extra = '') => `${c.url}/node/overlay.tar?mac=${n.mac}&token=${c.tokens.issueToken(n.mac)}${extra}`;
    const have = fs.readFileSync(path.join(r.root, 'var/lib/pxeherd/overlay.hash'), 'utf8').trim();
    const same = await fetch(q(`&have=${have}`));
    assert.equal(same.status, 200);
    assert.equal((await same.arrayBuffer()).byteLength, 0, 'unchanged: an empty answer');

    c.store.nodes.add({ mac: '52:54:00:5e:00:03', name: 'n0002', ip: '10.77.0.52' }, { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' });
    const changed = await fetch(q(`&have=${have}`));
    const body = Buffer.from(await changed.arrayBuffer());
    assert.ok(body.length > 0, 'changed: the bundle');
    const bundle = path.join(c.dir, 'refresh.tar');
    fs.writeFileSync(bundle, body);
    const hostsBefore = fs.statSync(path.join(r.root, 'etc/hosts')).ino;
    const motd = fs.statSync(path.join(r.root, 'etc/hostname')).ino;
    for (const shell of [['busybox', 'sh'], ['dash']]) {
      const out = execFileSync(shell[0]!, [...shell.slice(1), path.join(r.root, 'usr/lib/pxeherd/overlay-apply'), r.root, bundle], { encoding: 'utf8', env: { ...process.env, PATH: `${c.bbdir}:${process.env.PATH}` } });
      assert.equal(out.trim(), shell[0] === 'busybox' ? '1' : '0', `${shell.join(' ')}: one path changed the first time, none the second`);
    }
    assert.match(fs.readFileSync(path.join(r.root, 'etc/hosts'), 'utf8'), /^10\.77\.0\.52\tn0002$/m, 'the new node is in /etc/hosts');
    assert.notEqual(fs.statSync(path.join(r.root, 'etc/hosts')).ino, hostsBefore, 'replaced by rename (a new inode), never rewritten in place');
    assert.equal(fs.statSync(path.join(r.root, 'etc/hostname')).ino, motd);
    assert.equal(fs.readFileSync(path.join(r.root, 'var/lib/pxeherd/overlay.hash'), 'utf8').trim(), changed.headers.get('x-pxeherd-overlay'));
    c.store.nodes.delete(['52:54:00:5e:00:03']);
  });

  test("the OS check-in (pxeherd-checkin in the node's root): ready with health and a renewed token, the first check-in reported, overlay refreshed only when changed", async () => {
    const r = await bootScripts(c, 'dash', 'n0000');
    assert.equal(r.status, 0, r.out);
    const n = c.store.nodes.byName('n0000')!;
    // The real root would have /proc and a tmpfs /run; the service runs the script with busybox.
    const checkin = () =>
      new Promise<{ status: number | null; out: string }>((resolve) => {
        const ch = spawn('unshare', ['-m', 'sh', '-c', `mount --make-rprivate / && mkdir -p "$1/proc" "$1/run" && mount -t proc proc "$1/proc" && mount --bind "${c.dir}/osrun" "$1/run" && mkdir -p "$1/dev" && mount --bind /dev "$1/dev" && chroot "$1" /usr/lib/pxeherd/busybox sh /usr/lib/pxeherd/pxeherd-checkin`, 'sh', r.root], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        ch.stdout.on('data', (d) => (out += d));
        ch.stderr.on('data', (d) => (out += d));
        ch.on('close', (status) => resolve({ status, out }));
      });
    fs.rmSync(path.join(c.dir, 'osrun'), { recursive: true, force: true });
    fs.mkdirSync(path.join(c.dir, 'osrun'));
    const tokenFile = path.join(r.root, 'var/lib/pxeherd/token');
    const bootToken = fs.readFileSync(tokenFile, 'utf8');
    const since = Date.now();
    const first = await checkin();
    assert.equal(first.status, 0, first.out);
    assert.equal(c.store.nodes.byName('n0000')!.state, 'ready', 'state ready from the OS');
    const ready = c.events.filter((e) => e.kind === 'provision.start' && (e.time ?? 0) >= since).pop()!;
    assert.equal((ready.detail as { state: string }).state, 'ready');
    assert.ok((ready.detail as { health?: { uptimeS?: number } }).health, 'with health values');
    const renewed = fs.readFileSync(tokenFile, 'utf8');
    assert.notEqual(renewed, bootToken, 'the token is renewed by every check-in: ');
    assert.ok(c.tokens.verifyToken(n.mac, renewed.trim()).ok);
    assert.equal((fs.statSync(tokenFile).mode & 0o777), 0o600);
    const ck = c.events.filter((e) => e.kind === 'node.checkin' && (e.time ?? 0) >= since);
    assert.equal(ck.length, 1);
    assert.deepEqual(ck[0]!.detail, { rev: 1, first: true, overlay: 'same', changed: 0 });

    const sends = () => c.events.filter((e) => e.kind === 'overlay.send').length;
    const before = sends();
    const second = await checkin();
    assert.equal(second.status, 0, second.out);
    assert.equal(sends(), before, 'unchanged overlay: no bundle sent');
    c.store.nodes.add({ mac: '52:54:00:5e:00:04', name: 'n0003', ip: '10.77.0.53' }, { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' });
    try {
      const third = await checkin();
      assert.equal(third.status, 0, third.out);
      assert.match(third.out, /overlay updated \(1 paths\)/);
      assert.match(fs.readFileSync(path.join(r.root, 'etc/hosts'), 'utf8'), /^10\.77\.0\.53\tn0003$/m, 'runtime refresh');
      assert.deepEqual(c.events.filter((e) => e.kind === 'node.checkin').pop()!.detail, { rev: 1, first: false, overlay: 'updated', changed: 1 });
    } finally {
      c.store.nodes.delete(['52:54:00:5e:00:04']);
    }
  });

  test("per-node files only go to the node's own token and address: anything else is 403 and security.denied", async () => {
    const n0 = c.store.nodes.byName('n0000')!;
    const n1 = c.store.nodes.byName('n0001')!;
    const since = Date.now();
    const cases: [string, string][] = [
      [`/node/identity.tar?mac=${n0.mac}`, 'no token'],
      [`/node/identity.tar?mac=${n0.mac}&token=${c.tokens.issueToken(n1.mac)}`, `not issued for ${n0.mac}`],
      [`/node/identity.tar?mac=${n1.mac}&token=${c.tokens.issueToken(n1.mac)}`, "but the node's address is 10.77.0.51"],
      [`/node/overlay.tar?mac=${n1.mac}&token=${c.tokens.issueToken(n1.mac)}`, "but the node's address is 10.77.0.51"],
      [`/node/report/image.verify?mac=${n1.mac}&token=${c.tokens.issueToken(n1.mac)}&ok=1`, "but the node's address is 10.77.0.51"],
      ['/node/identity.tar', "give mac="],
    ];
    for (const [url, why] of cases) {
      const res = await fetch(c.url + url);
      const text = await res.text();
      assert.equal(res.status, 403, url);
      assert.ok(text.includes(why), `${url}: ${text}`);
      assert.ok(!text.includes('PRIVATE KEY'));
    }
    const denied = c.events.filter((e) => e.kind === 'security.denied' && (e.time ?? 0) >= since);
    assert.equal(denied.length, cases.length, 'one security.denied event per refusal');
    const ok = await fetch(`${c.url}/node/identity.tar?mac=${n0.mac}&token=${c.tokens.issueToken(n0.mac)}`);
    assert.equal(ok.status, 200, 'the node itself gets it');
    assert.ok(Buffer.from(await ok.arrayBuffer()).includes('OPENSSH PRIVATE KEY'));
  });

  test('bad attributes fail on the master with a message naming the attribute; the node gets no half-written root', async () => {
    const n = c.store.nodes.byName('n0000')!;
    for (const [k, v, re] of [
      ['root_password_hash', 'hunter2', /root_password_hash is not a crypt\(3\) hash/],
      ['authorized_keys', 'not a key', /attribute authorized_keys: "not a key" is not an SSH public key/],
      ['address', '10.0.0.300', /attribute address "10.0.0.300" is not an IPv4 address/],
      ['mtu', '9k', /attribute mtu "9k" is not an MTU/],
    ] as const) {
      const old = n.attrs[k];
      c.store.nodes.set([n.mac], `attr.${k}`, v);
      try {
        const node = c.store.nodes.byName('n0000')!;
        const r = await c.engine.renderScript(node, 'init', { attrs: c.store.attrsFor(node), ip: node.ip });
        assert.equal(r.ok, false, `${k}=${v} fails`);
        assert.match(r.failure!.stderr, re);
        assert.ok(!r.text.includes('switch_root'), 'the stream stops before the switch_root request');
      } finally {
        c.store.nodes.set([n.mac], `attr.${k}`, old ?? '');
      }
    }
    const res = await fetch(`${c.url}/node/identity.tar?mac=${n.mac}&token=${c.tokens.issueToken(n.mac)}`);
    assert.equal(res.status, 200);
  });

  test('static network attributes: address, netmask, gateway, DNS and MTU in the .network matched by MAC', async () => {
    const n = c.store.nodes.byName('n0000')!;
    const set = { address: '127.0.0.1', netmask: '255.255.255.0', gateway: '127.0.0.254', dns: '10.2.2.2', mtu: '9000' };
    for (const [k, v] of Object.entries(set)) c.store.nodes.set([n.mac], `attr.${k}`, v);
    try {
      const r = await bootScripts(c, 'busybox', 'n0000');
      assert.equal(r.status, 0, r.out);
      const net = fs.readFileSync(path.join(r.root, 'etc/systemd/network/10-pxeherd-boot.network'), 'utf8');
      assert.match(net, /^MACAddress=52:54:00:5e:00:01$/m);
      assert.match(net, /^\[Link\]\nMTUBytes=9000$/m);
      assert.match(net, /^Address=127\.0\.0\.1\/24$/m);
      assert.match(net, /^Gateway=127\.0\.0\.254$/m);
      assert.match(net, /^DNS=10\.2\.2\.2$/m);
      assert.ok(!/DHCP=/.test(net), 'no DHCP with a static address');
    } finally {
      for (const k of Object.keys(set)) c.store.nodes.set([n.mac], `attr.${k}`, '');
    }
  });

  test('vnfs_mode=tmpfs (busybox): the image unpacked into a tmpfs at $DESTDIR sized from the manifest, the download deleted, image.unpack reported; a bad mode fails on the master', async () => {
    c.store.nodes.set([MAC], 'attr.vnfs_mode', 'tmpfs');
    const since = Date.now();
    try {
      const r = await bootScripts(c, 'busybox', 'n0000');
      assert.equal(r.status, 0, r.out);
      assert.equal(r.fstype, 'tmpfs', '$DESTDIR is a tmpfs, not an overlay');
      assert.equal(fs.readFileSync(path.join(r.root, 'etc/image-marker'), 'utf8'), 'revision one');
      assert.equal(fs.readFileSync(path.join(r.root, 'etc/hostname'), 'utf8'), 'n0000\n', 'configured like an overlay root');
      // tree 100 bytes, 9 files in the manifest: 0 + 9 pages + 256 MiB of room.
      assert.match(r.out, /unpacking deb r1 into a tmpfs of 256 MiB at \/run\/newroot/);
      assert.ok(!r.runFiles.includes('rootfs.squashfs'), `the download is deleted (left in /run/pxeherd: ${r.runFiles.trim()})`);
      assert.equal(r.switchRoot, '/run/newroot /sbin/init\n');
      const u = c.events.filter((e) => (e.time ?? 0) >= since && e.kind === 'image.unpack');
      assert.equal(u.length, 1, 'image.unpack reported');
    } finally {
      c.store.nodes.set([MAC], 'attr.vnfs_mode', '');
    }
    c.store.nodes.set([MAC], 'attr.vnfs_mode', 'ramdisk');
    try {
      const node = c.store.nodes.byName('n0000')!;
      const r = await c.engine.renderScript(node, 'init', { attrs: c.store.attrsFor(node), ip: node.ip, token: c.tokens.issueToken(node.mac) });
      assert.equal(r.ok, false);
      assert.match(`${r.failure?.script} ${r.failure?.stderr}`, /10-vnfs-root.*attribute vnfs_mode "ramdisk" is not a root mode: overlay .* or tmpfs/s);
    } finally {
      c.store.nodes.set([MAC], 'attr.vnfs_mode', '');
    }
  });

  test('a corrupted image stops the boot with the file, the expected and the actual hash, and image.verify ok=false', async () => {
    const f = path.join(c.statedir, 'vnfs/deb/r1/rootfs.squashfs');
    const orig = fs.readFileSync(f);
    const bad = Buffer.from(orig);
    bad[bad.length - 100] ^= 0xff;
    fs.writeFileSync(f, bad);
    try {
      const actual = crypto.createHash('sha256').update(bad).digest('hex');
      const r = await bootScripts(c, 'busybox', 'n0000');
      assert.notEqual(r.status, 0, 'the node-side shell fails');
      assert.ok(r.out.includes(`VERIFY FAILED: deb r1 rootfs.squashfs: expected sha256 ${c.sha}, got ${actual}`), r.out);
      assert.equal(r.switchRoot, '', 'no switch_root request');
      assert.ok(!fs.existsSync(path.join(r.root, 'etc/hostname')), 'nothing mounted, nothing configured');
      const v = c.events.filter((e) => e.kind === 'image.verify').pop()!;
      assert.deepEqual(v.detail, { file: 'rootfs.squashfs', rev: 1, expected: c.sha, actual, ok: false });
    } finally {
      fs.writeFileSync(f, orig);
    }
  });
});
