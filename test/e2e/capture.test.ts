/**
 * Capture (issue 18) in QEMU: a node boots stateless into the shared Debian image, gets an
 * extra package (a small .deb built here with dpkg-deb, copied over SSH and installed with
 * dpkg -i: the lab has no Debian mirror), and `pxeherd vnfs capture` makes a new VNFS from its
 * running root (overlay over squashfs). A second machine (another MAC, another node) boots the
 * captured revision: it has the package, and its own host keys and machine-id, not the first
 * node's. One VM at a time (TCG on shared cores).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { labUnavailable } from '../lab/lab.js';
import { startServe, stopServe } from '../lab/serve.js';
import { labAccel, type Vm } from '../lab/qemu.js';
import { imageToolsMissing, SHARED_IMAGE_NAME } from '../lab/image.js';
import { offlineImageUnavailable, mirrorReachable } from '../lab/offline-image.js';
import { bootToOs, cliInNs, createOsLab, execOnNode, installLabImage, withStore, type OsLab } from '../lab/os-node.js';
import { pxeherd } from '../helpers/cli.js';
import { STAGE1_CMDLINE } from '../../src/stage1/build.js';
import type { ChildProcess } from 'node:child_process';

const why =
  labUnavailable(['qemu-system-x86_64', 'busybox', 'ssh-keygen', 'dpkg-deb']) ??
  (fs.existsSync('/usr/lib/ipxe/qemu/pxe-e1000.rom') ? undefined : 'needs ipxe-qemu (Debian package)') ??
  (mirrorReachable() ? imageToolsMissing() : offlineImageUnavailable());
const NAME = SHARED_IMAGE_NAME;
const PKG = 'pxeherd-capture-probe';
const say = (m: string) => process.stderr.write(`# capture: ${m}\n`);

interface Ctx extends OsLab {
  server?: ChildProcess;
}

/** A tiny Debian package: one program, built with dpkg-deb (no mirror in the lab). */
function buildProbeDeb(dir: string): Buffer {
  const root = path.join(dir, 'probe-deb');
  fs.mkdirSync(path.join(root, 'DEBIAN'), { recursive: true });
  fs.mkdirSync(path.join(root, 'usr/bin'), { recursive: true });
  fs.writeFileSync(path.join(root, 'DEBIAN/control'), `Package: ${PKG}\nVersion: 1.0\nArchitecture: all\nMaintainer: pxeherd tests <tests@pxeherd.invalid>\nDescription: probe installed on a node before vnfs capture\n`);
  fs.writeFileSync(path.join(root, `usr/bin/${PKG}`), '#!/bin/sh\necho "probe from the captured node"\n', { mode: 0o755 });
  const deb = path.join(dir, `${PKG}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, deb], { stdio: 'pipe' });
  return fs.readFileSync(deb);
}

describe('vnfs capture of a stateless node in QEMU, booted on another machine', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;

  before(async () => {
    Object.assign(c, createOsLab({ name: 'phcp', dirPrefix: 'pxeherd-e2e-capture-' }));
    await installLabImage(c, NAME, say);
    assert.equal(pxeherd(['vnfs', 'set', NAME, 'cmdline', STAGE1_CMDLINE], { config: c.config }).code, 0);
    const r = pxeherd(['node', 'add', '52:54:00:e2:18:01', 'golden', '--vnfs', NAME, '--set', 'checkin_interval=30'], { config: c.config });
    assert.equal(r.code, 0, r.stderr);
    const log = path.join(c.dir, 'server.log');
    c.server = await startServe(c.lab, c.config, log, ['dhcp', 'http']);
    say(`QEMU accel ${labAccel()}, logs in ${c.dir}`);
  });

  after(async () => {
    await stopServe(c.server);
    c.lab?.destroy();
    if (!process.env.PXEHERD_KEEP_E2E) fs.rmSync(c.dir, { recursive: true, force: true });
  });

  test('a node with an extra package is captured; another machine boots the capture: the package is there, the host keys and machine-id are its own', async () => {
    const deb = buildProbeDeb(c.dir);
    let golden: Vm | undefined = (await bootToOs(c, { name: 'golden', mac: '52:54:00:e2:18:01', node: 'golden', say })).vm;
    let goldenKey = '';
    let goldenMid = '';
    try {
      const inst = await execOnNode(c, 'golden', `echo ${deb.toString('base64')} | base64 -d > /tmp/${PKG}.deb && dpkg -i /tmp/${PKG}.deb >/dev/null && ${PKG} && cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub`);
      assert.equal(inst.code, 0, inst.err);
      const [probe, mid, pub] = inst.out.split('\n');
      assert.equal(probe, 'probe from the captured node');
      goldenMid = mid!.trim();
      goldenKey = pub!.trim().split(' ').slice(0, 2).join(' ');
      assert.match(goldenMid, /^[0-9a-f]{32}$/);

      const t0 = Date.now();
      // Drivers no VM of this lab loads (a site would leave out what its hardware lacks): a
      // quarter less to stream under TCG, and the excludes' globs on a real root.
      const skipDrivers = ['drivers/gpu', 'sound', 'drivers/net/wireless', 'drivers/media', 'drivers/infiniband', 'drivers/staging', 'drivers/iio'].flatMap((d) => ['--exclude', `/usr/lib/modules/*/kernel/${d}`]);
      const cap = await cliInNs(c, ['vnfs', 'capture', 'golden', 'captured', ...skipDrivers, '--comment', 'golden with the probe', '--json'], { timeoutMs: 900_000, env: { PXEHERD_PROGRESS: '1' } });
      assert.equal(cap.code, 0, cap.stderr);
      const out = JSON.parse(cap.stdout) as { rev: number; parent: number | null; streamedBytes: number; streamMs: number; cleaned: { removed: string[] }; manifest: { kernel: string; tree: { files: number } } };
      say(`capture: ${(out.streamedBytes / 1048576).toFixed(0)} MiB streamed in ${(out.streamMs / 1000).toFixed(0)} s, whole capture ${((Date.now() - t0) / 1000).toFixed(0)} s, ${out.manifest.tree.files} files, kernel ${out.manifest.kernel}`);
      assert.equal(out.rev, 1);
      assert.ok(out.manifest.kernel, 'the captured image carries its kernel');
      // The copy on the master: cleaned; the node keeps its identity.
      const tree = path.join(c.statedir, 'images/captured/1/tree');
      assert.deepEqual(fs.readdirSync(path.join(tree, 'etc/ssh')).filter((f) => f.startsWith('ssh_host_')), []);
      assert.equal(fs.readFileSync(path.join(tree, 'etc/machine-id'), 'utf8'), '');
      for (const gone of ['var/lib/pxeherd/token', 'etc/pxeherd/checkin.conf', 'etc/systemd/network/10-pxeherd-boot.network']) assert.equal(fs.existsSync(path.join(tree, gone)), false, `${gone} not captured`);
      assert.ok(fs.existsSync(path.join(tree, `usr/bin/${PKG}`)));
      assert.equal(fs.existsSync(path.join(tree, `tmp/${PKG}.deb`)), false, '/tmp is left out');
      const kdir = path.join(tree, 'usr/lib/modules', out.manifest.kernel, 'kernel');
      assert.equal(fs.existsSync(path.join(kdir, 'sound')), false, 'an excluded glob');
      assert.ok(fs.existsSync(path.join(kdir, 'drivers/net/ethernet/intel/e1000')), 'the NIC driver the clone needs is kept');
      const still = await execOnNode(c, 'golden', 'cat /etc/machine-id; ls /etc/ssh/ssh_host_ed25519_key /var/lib/pxeherd/token');
      assert.equal(still.code, 0, `the node is unchanged: ${still.err}`);
      assert.equal(still.out.split('\n')[0], goldenMid);
    } finally {
      golden?.kill();
      golden = undefined;
    }

    const add = pxeherd(['node', 'add', '52:54:00:e2:18:02', 'clone', '--vnfs', 'captured', '--set', 'checkin_interval=30'], { config: c.config });
    assert.equal(add.code, 0, add.stderr);
    const { vm: clone } = await bootToOs(c, { name: 'clone', mac: '52:54:00:e2:18:02', node: 'clone', say });
    try {
      const r = await execOnNode(c, 'clone', `dpkg-query -W -f '\${Status}\\n' ${PKG}; ${PKG}; hostname; cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub`);
      assert.equal(r.code, 0, `exec with the clone's own kept host key: ${r.err}`);
      const [status, probe, hostname, mid, pub] = r.out.split('\n');
      assert.equal(status, 'install ok installed', 'the package installed on the captured node');
      assert.equal(probe, 'probe from the captured node');
      assert.equal(hostname, 'clone');
      assert.equal(mid, fs.readFileSync(path.join(c.statedir, 'hostkeys/clone/machine-id'), 'utf8').trim(), 'its own machine-id');
      assert.notEqual(mid, goldenMid);
      const clonePub = pub!.trim().split(' ').slice(0, 2).join(' ');
      assert.equal(clonePub, fs.readFileSync(path.join(c.statedir, 'hostkeys/clone/ssh_host_ed25519_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' '), 'its own host key');
      assert.notEqual(clonePub, goldenKey);
      const sw = withStore(c, (s) => s.events.query({ node: 'clone', kind: 'image.switch_root', limit: 1 }))[0]!;
      assert.equal((sw.detail as { rev: number }).rev, 1, 'booted captured r1');
    } finally {
      clone.kill();
    }
  });
});
