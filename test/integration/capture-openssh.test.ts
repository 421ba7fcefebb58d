/**
 * `vnfs capture` against Debian's OpenSSH server, without a VM: the "node" is sshd chrooted
 * into a root laid out as a stateless node's is — an overlay with a tmpfs upper over a
 * squashfs lower, changed after boot (a file added, one deleted, one edited), with /proc,
 * /dev, /run and /tmp mounted and the host's /usr bind-mounted read-only (a different file
 * system, which --one-file-system must leave out). It runs in its own mount namespace inside a
 * lab network namespace; pxeherd logs in with its key and checks the host key it keeps.
 *
 * Proves: one-file-system on an overlay root, the fixed and configured excludes, cleaning in
 * the copy and not on the node, a second capture as a child revision, and failures that leave
 * no revision and nothing staged: host key mismatch, unreachable node, a node without GNU tar,
 * a hostile archive, tar failing half-way, a full disk.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createLab, labUnavailable, run, tmpDir, waitFor, type Lab } from '../lab/lab.js';
import { CLI } from '../helpers/cli.js';
import { ustar } from '../helpers/ustar.js';
import { ensureKey } from '../../src/remote/keys.js';
import { ensureIdentity } from '../../src/stateless/identity.js';
import { Store } from '../../src/store/store.js';

const why = labUnavailable(['mksquashfs', 'unshare', 'chroot', 'setfattr', 'getfattr', 'setcap', 'getcap', 'ssh-keygen']) ?? (fs.existsSync('/usr/sbin/sshd') ? undefined : 'needs Debian openssh-server (/usr/sbin/sshd)') ?? (fs.existsSync(CLI) ? undefined : `needs ${CLI}: run "npm run build"`);
const NODE_IP = '10.77.0.50';
const MID = '0123456789abcdef0123456789abcdef';

interface Ctx {
  lab: Lab;
  dir: string;
  statedir: string;
  config: string;
  lower: string;
  /** The master's files a hostile tree's absolute symlinks point at. */
  sentinel: string;
}

async function cli(c: Ctx, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { ns: c.lab.ns, timeoutMs: 120_000, env: { ...process.env, PXEHERD_CONFIG: c.config, PXEHERD_PROGRESS: '1' } });
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
  }
}

function put(root: string, rel: string, data: string | Buffer = 'x', mode = 0o644): string {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  fs.chmodSync(p, mode);
  return p;
}

/** The image the node booted: what a stateless node's squashfs would hold, plus test users. */
function buildLower(c: Ctx, hostKeysDir: string, pubKey: string): void {
  const l = c.lower;
  for (const d of ['proc', 'sys', 'dev', 'run', 'tmp', 'usr', 'home', 'var/cache']) fs.mkdirSync(path.join(l, d), { recursive: true });
  for (const [link, to] of [['bin', 'usr/bin'], ['sbin', 'usr/sbin'], ['lib', 'usr/lib'], ['lib64', 'usr/lib64']]) fs.symlinkSync(to!, path.join(l, link!));
  put(l, 'etc/passwd', ['root:x:0:0:root:/root:/bin/sh', 'hostile:x:0:0::/root:/hostile/sh', 'failing:x:0:0::/root:/failing/sh', 'nogtar:x:0:0::/root:/nogtar/sh', 'alice:x:1000:1000::/home/alice:/bin/sh', 'sshd:x:100:65534::/run/sshd:/usr/sbin/nologin', ''].join('\n'));
  put(l, 'etc/group', 'root:x:0:\nutmp:x:43:\nalice:x:1000:\nnogroup:x:65534:\n');
  put(l, 'etc/shadow', 'root:*:19000:0:99999:7:::\nhostile:*:19000:0:99999:7:::\nfailing:*:19000:0:99999:7:::\nnogtar:*:19000:0:99999:7:::\nalice:*:19000:0:99999:7:::\n', 0o640);
  put(l, 'etc/nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\n');
  put(l, 'etc/motd', 'as built\n');
  put(l, 'etc/ssh/sshd_config', [`ListenAddress ${NODE_IP}:22`, 'HostKey /etc/ssh/ssh_host_ed25519_key', 'PidFile /run/sshd.pid', 'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password', 'LogLevel VERBOSE', ''].join('\n'));
  for (const f of fs.readdirSync(hostKeysDir).filter((f) => f.startsWith('ssh_host_'))) put(l, `etc/ssh/${f}`, fs.readFileSync(path.join(hostKeysDir, f)), f.endsWith('.pub') ? 0o644 : 0o600);
  put(l, 'etc/machine-id', MID + '\n', 0o444);
  put(l, 'etc/hostname', 'cap1\n');
  put(l, 'etc/udev/rules.d/70-persistent-net.rules', 'SUBSYSTEM=="net", ATTR{address}=="52:54:00:00:00:01", NAME="eth0"\n');
  put(l, 'etc/pxeherd/checkin.conf', "PXEHERD_MAC='52-54-00-00-00-01'\n");
  put(l, 'etc/systemd/network/10-pxeherd-boot.network', '[Match]\nMACAddress=52:54:00:00:00:01\n');
  put(l, 'var/lib/pxeherd/token', 'node-token-secret\n', 0o600);
  put(l, 'var/lib/dhcp/dhclient.eth0.leases', 'lease { fixed-address 10.77.0.50; }\n');
  put(l, 'var/lib/systemd/random-seed', crypto.randomBytes(32), 0o600);
  put(l, 'var/log/syslog', 'boot messages\n', 0o640);
  put(l, 'var/log/syslog.1', 'older\n');
  put(l, 'var/log/wtmp', Buffer.alloc(384, 1), 0o664);
  put(l, `var/log/journal/${MID}/system.journal`, 'journal');
  put(l, 'root/.bash_history', 'echo secret\n', 0o600);
  put(l, 'root/.ssh/authorized_keys', pubKey + '\n', 0o600);
  put(l, 'home/alice/.bash_history', 'ls\n');
  put(l, 'home/alice/notes', 'kept\n');
  fs.chownSync(path.join(l, 'home/alice/notes'), 1000, 1000);
  // Data: a setuid program, hard links, a relative symlink, an extended attribute, a FIFO.
  put(l, 'opt/app/bin/tool', '#!/bin/sh\necho tool\n', 0o4755);
  put(l, 'opt/app/data', 'linked\n');
  fs.linkSync(path.join(l, 'opt/app/data'), path.join(l, 'opt/app/data-link'));
  fs.symlinkSync('bin', path.join(l, 'opt/app/current'));
  execFileSync('setfattr', ['-n', 'user.pxeherd', '-v', 'kept', path.join(l, 'opt/app/data')]);
  put(l, 'opt/app/bin/pinger', '#!/bin/sh\n', 0o755);
  execFileSync('setcap', ['cap_net_raw+ep', path.join(l, 'opt/app/bin/pinger')]);
  execFileSync('mkfifo', [path.join(l, 'opt/app/fifo')]);
  put(l, 'opt/app/removed-on-node', 'deleted after boot\n');
  put(l, 'opt/app/cache/blob', 'excluded by the config\n');
  put(l, 'var/cache/big/blob', crypto.randomBytes(64 << 10));
  put(l, 'srv/keep.dat', 'kept\n');
  put(l, 'srv/drop-1.tmp', 'excluded by the attribute\n');
  // Payload: incompressible, so the full-disk case fills a small tmpfs.
  put(l, 'opt/payload', crypto.randomBytes(6 << 20));
  // Absolute symlinks out of the tree: on the master they point at the master's own files.
  fs.symlinkSync(c.sentinel, path.join(l, 'home/evil'));
  fs.symlinkSync(c.sentinel, path.join(l, 'var/lib/dhclient'));
  // Users whose shell puts a stand-in `tar` first in PATH: what a broken or hostile node sends.
  for (const u of ['hostile', 'failing', 'nogtar']) put(l, `${u}/sh`, `#!/bin/sh\nPATH=/${u}/bin:/usr/bin:/bin\nexport PATH\nexec /bin/sh "$@"\n`, 0o755);
  put(l, 'hostile/evil.tar', ustar([{ name: 'etc/', type: '5' }, { name: '../../escaped-from-capture', data: 'pwned' }]));
  put(l, 'hostile/bin/tar', '#!/bin/sh\ncase "$1" in --version) echo "tar (GNU tar) 1.34" ;; *) cat /hostile/evil.tar ;; esac\n', 0o755);
  put(l, 'failing/bin/tar', '#!/bin/sh\ncase "$1" in --version) echo "tar (GNU tar) 1.34"; exit 0 ;; esac\n/usr/bin/tar -cf - -C / etc 2>/dev/null | head -c 20480\necho "tar: ./var/lib/x: Read error at byte 0, while reading 512 bytes: Input/output error" >&2\nexit 2\n', 0o755);
  put(l, 'nogtar/bin/tar', '#!/bin/sh\necho "BusyBox v1.36.1 (Debian 1:1.36.1-3) multi-call binary."\n', 0o755);
}

/** Boot the "node": overlay root over the squashfs, changes after boot, sshd chrooted into it. */
async function startNode(c: Ctx): Promise<void> {
  const sq = path.join(c.dir, 'root.squashfs');
  execFileSync('mksquashfs', [c.lower, sq, '-quiet', '-no-progress', '-xattrs', '-noappend']);
  const m = path.join(c.dir, 'm');
  const script = `set -e
mkdir -p ${m}/ro ${m}/rw ${m}/root
mount -t squashfs -o ro,loop ${sq} ${m}/ro
mount -t tmpfs -o mode=0755 tmpfs ${m}/rw
mkdir ${m}/rw/upper ${m}/rw/work
mount -t overlay overlay -o lowerdir=${m}/ro,upperdir=${m}/rw/upper,workdir=${m}/rw/work ${m}/root
R=${m}/root
mount --bind /usr $R/usr && mount -o remount,bind,ro $R/usr
mount -t proc proc $R/proc
mount --bind /dev $R/dev
mount -t tmpfs -o mode=0755 tmpfs $R/run
mkdir -m 0755 $R/run/sshd
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
echo on-node > $R/tmp/scratch
echo added-after-boot > $R/etc/added-on-node
echo edited-after-boot > $R/etc/motd
rm $R/opt/app/removed-on-node
exec chroot $R /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config
`;
  const log = path.join(c.dir, 'sshd.log');
  c.lab.spawnInNs('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { ns: c.lab.clientNs, log });
  await waitFor('sshd on the node', 15_000, () => /Server listening on 10\.77\.0\.50/.test(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''), 100).catch((e) => {
    throw new Error(`${(e as Error).message}: ${fs.readFileSync(log, 'utf8')}`);
  });
}

function revisions(c: Ctx, name: string): number[] {
  const s = Store.open(c.statedir);
  try {
    return s.vnfs.revisions(name).map((r) => r.rev);
  } finally {
    s.close();
  }
}

/** Nothing staged or half made: only r<N>/<N> directories of recorded revisions. */
function leftovers(c: Ctx, name: string): string[] {
  const known = new Set(revisions(c, name).map(String));
  const out: string[] = [];
  for (const [d, pre] of [[path.join(c.statedir, 'images', name), ''], [path.join(c.statedir, 'vnfs', name), 'r']] as const) {
    for (const f of fs.existsSync(d) ? fs.readdirSync(d) : []) if (!(f.startsWith(pre) && known.has(f.slice(pre.length)))) out.push(path.join(d, f));
  }
  return out;
}

describe('vnfs capture from a real OpenSSH node (overlay root, no VM)', { skip: why, concurrency: false }, () => {
  const c = {} as Ctx;

  before(async () => {
    c.dir = tmpDir('pxeherd-capture-');
    c.statedir = path.join(c.dir, 'var');
    c.config = path.join(c.dir, 'pxeherd.yaml');
    c.lower = path.join(c.dir, 'lower');
    c.sentinel = path.join(c.dir, 'master-files');
    put(c.sentinel, '.bash_history', 'the master\'s history\n');
    put(c.sentinel, 'dhclient.leases', 'the master\'s lease\n');
    fs.writeFileSync(c.config, `statedir: ${c.statedir}\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nhttp: { port: 0 }\nadmin: { port: 0 }\nvnfs: { capture_exclude: [/opt/app/cache] }\n`);
    c.lab = createLab({ name: 'phcap', clientAddrs: [NODE_IP] });
    const key = ensureKey(c.statedir);
    const idDir = await ensureIdentity(c.statedir, 'cap1');
    buildLower(c, idDir, key.publicKey);
    await startNode(c);
    for (const args of [
      ['node', 'add', '52:54:00:00:00:01', 'cap1', '--ip', NODE_IP, '--set', 'capture_exclude=/srv/*.tmp'],
      ['node', 'add', '52:54:00:00:00:02', 'impostor', '--set', `ssh_host=${NODE_IP}`],
      ['node', 'add', '52:54:00:00:00:03', 'gone', '--set', `ssh_host=${NODE_IP}`, '--set', 'ssh_port=2222'],
    ]) {
      const r = await cli(c, args);
      assert.equal(r.code, 0, r.stderr);
    }
    // The impostor's kept keys are another machine's: the node at that address must be refused.
    await ensureIdentity(c.statedir, 'impostor');
  });

  after(() => {
    c.lab?.destroy();
    for (const m of ['images/full']) spawnUmount(path.join(c.statedir ?? '/nonexistent', m));
    if (c.dir && !process.env.PXEHERD_KEEP_TEST) fs.rmSync(c.dir, { recursive: true, force: true });
  });

  test('capture: what / shows on an overlay root, one file system, excludes left out, the copy cleaned, the node unchanged', async () => {
    const r = await cli(c, ['vnfs', 'capture', 'cap1', 'captured', '--exclude', '/var/cache/big', '--comment', 'golden', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { rev: number; parent: number | null; node: string; streamedBytes: number; excludes: string[]; cleaned: { removed: string[]; emptied: string[]; skipped: string[] } };
    assert.equal(out.rev, 1);
    assert.equal(out.parent, null);
    assert.equal(out.node, 'cap1');
    assert.ok(out.streamedBytes > 6 << 20, `streamed ${out.streamedBytes} bytes`);
    assert.deepEqual(out.excludes.sort(), ['/dev/*', '/opt/app/cache', '/proc/*', '/run/*', '/srv/*.tmp', '/sys/*', '/tmp/*', '/var/cache/big'].sort());
    assert.match(r.stderr, /received [0-9.]+ MiB from cap1 in [0-9.]+ s/, 'progress lines with bytes');
    const t = path.join(c.statedir, 'images/captured/1/tree');
    const read = (rel: string) => fs.readFileSync(path.join(t, rel), 'utf8');
    const has = (rel: string) => fs.lstatSync(path.join(t, rel), { throwIfNoEntry: false }) !== undefined;
    // The merged view: lower files, changes made after boot (upper), a deletion.
    assert.equal(read('etc/added-on-node'), 'added-after-boot\n');
    assert.equal(read('etc/motd'), 'edited-after-boot\n');
    assert.equal(has('opt/app/removed-on-node'), false);
    assert.equal(read('home/alice/notes'), 'kept\n');
    // One file system: the bind-mounted /usr is another one; mount points stay, empty.
    assert.deepEqual(fs.readdirSync(path.join(t, 'usr')), [], '/usr (another file system) is an empty mount point');
    for (const d of ['proc', 'dev', 'run', 'tmp', 'sys']) assert.deepEqual(fs.readdirSync(path.join(t, d)), [], `/${d} kept, empty`);
    assert.equal(fs.statSync(path.join(t, 'tmp')).mode & 0o7777, 0o1777);
    // Excludes: --exclude, attribute capture_exclude (glob), config vnfs.capture_exclude.
    assert.equal(has('var/cache/big'), false);
    assert.equal(has('srv/drop-1.tmp'), false);
    assert.equal(read('srv/keep.dat'), 'kept\n');
    assert.equal(has('opt/app/cache'), false);
    // What makes a root filesystem: setuid bit, hard links, symlinks, xattrs, FIFOs, owners.
    assert.equal(fs.statSync(path.join(t, 'opt/app/bin/tool')).mode & 0o7777, 0o4755);
    assert.equal(fs.statSync(path.join(t, 'opt/app/data')).ino, fs.statSync(path.join(t, 'opt/app/data-link')).ino);
    assert.equal(fs.readlinkSync(path.join(t, 'opt/app/current')), 'bin');
    assert.match(execFileSync('getfattr', ['-n', 'user.pxeherd', '--only-values', path.join(t, 'opt/app/data')], { encoding: 'utf8' }), /^kept$/);
    assert.ok(fs.lstatSync(path.join(t, 'opt/app/fifo')).isFIFO());
    assert.match(execFileSync('getcap', [path.join(t, 'opt/app/bin/pinger')], { encoding: 'utf8' }), /cap_net_raw[=+]ep/, 'a file capability (security.capability) survives the overlay and the stream');
    assert.equal(fs.statSync(path.join(t, 'home/alice/notes')).uid, 1000);
    // Cleaned in the copy.
    assert.deepEqual(fs.readdirSync(path.join(t, 'etc/ssh')).sort(), ['sshd_config']);
    assert.equal(read('etc/machine-id'), '');
    assert.equal(read('etc/hostname'), 'localhost\n');
    for (const gone of ['etc/udev/rules.d/70-persistent-net.rules', 'etc/pxeherd/checkin.conf', 'etc/systemd/network/10-pxeherd-boot.network', 'var/lib/pxeherd', 'var/lib/dhcp/dhclient.eth0.leases', 'var/lib/systemd/random-seed', 'var/log/syslog.1', `var/log/journal/${MID}`, 'root/.bash_history', 'home/alice/.bash_history']) assert.equal(has(gone), false, `${gone} not in the copy`);
    assert.equal(read('var/log/syslog'), '');
    assert.equal(fs.statSync(path.join(t, 'var/log/wtmp')).mode & 0o777, 0o664, 'an emptied log keeps its mode');
    assert.equal(read('root/.ssh/authorized_keys').trim().split(' ')[0], 'ssh-ed25519');
    assert.ok(out.cleaned.skipped.includes('/var/lib/dhclient/*'));
    assert.equal(fs.readFileSync(path.join(c.sentinel, '.bash_history'), 'utf8'), 'the master\'s history\n', 'an absolute symlink in the node\'s tree never reaches the master\'s files');
    assert.ok(fs.existsSync(path.join(c.sentinel, 'dhclient.leases')));
    // Packed and recorded.
    const manifest = JSON.parse(fs.readFileSync(path.join(c.statedir, 'vnfs/captured/r1/manifest.json'), 'utf8')) as { source: string; comment: string; artifacts: Record<string, { size: number }> };
    assert.equal(manifest.source, 'capture:cap1');
    assert.equal(manifest.comment, 'golden');
    assert.ok(manifest.artifacts['rootfs.squashfs']!.size > 0);
    const s = Store.open(c.statedir);
    try {
      const ev = s.events.query({ kind: 'vnfs.capture', limit: 5 })[0]!;
      assert.equal(ev.node, 'cap1', 'the event is on the node\'s timeline');
      assert.equal((ev.detail as { rev: number }).rev, 1);
      assert.equal((ev.detail as { streamedBytes: number }).streamedBytes, out.streamedBytes);
    } finally {
      s.close();
    }
    // The node itself is untouched (and still presents the kept host key: exec checks it).
    const n = await cli(c, ['exec', 'cap1', '--', 'cat /etc/machine-id /root/.bash_history /var/lib/pxeherd/token; ls /etc/ssh | wc -l; wc -c < /var/log/syslog']);
    assert.equal(n.code, 0, n.stderr);
    assert.equal(n.stdout, `cap1: ${MID}\ncap1: echo secret\ncap1: node-token-secret\ncap1: 7\ncap1: 14\n`);
  });

  test('a second capture is a new revision whose parent is the current one; unchanged files are shared', async () => {
    const e = await cli(c, ['exec', 'cap1', '--', 'echo second > /etc/motd']);
    assert.equal(e.code, 0, e.stderr);
    const r = await cli(c, ['vnfs', 'capture', 'cap1', 'captured', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { rev: number; parent: number; linkedFiles: number };
    assert.equal(out.rev, 2);
    assert.equal(out.parent, 1);
    assert.ok(out.linkedFiles > 5, `${out.linkedFiles} files shared with revision 1`);
    const t2 = path.join(c.statedir, 'images/captured/2/tree');
    assert.equal(fs.readFileSync(path.join(t2, 'etc/motd'), 'utf8'), 'second\n');
    assert.equal(fs.statSync(path.join(t2, 'opt/payload')).ino, fs.statSync(path.join(c.statedir, 'images/captured/1/tree/opt/payload')).ino);
    // Without --exclude this time: /var/cache/big is in.
    assert.ok(fs.existsSync(path.join(t2, 'var/cache/big/blob')));
  });

  test('failures make no revision and leave nothing staged: host key mismatch, unreachable, no GNU tar, hostile archive, tar failing half-way', async () => {
    const before = revisions(c, 'captured');
    const cases: { args: string[]; attr?: string; re: RegExp }[] = [
      { args: ['impostor'], re: /host key of root@10\.77\.0\.50:22 \(SHA256:[^)]+\) is not the one pxeherd keeps for it .*refusing to log in/ },
      { args: ['gone'], re: /cannot connect to root@10\.77\.0\.50:2222: connection refused/ },
      { args: ['cap1'], attr: 'nogtar', re: /cannot capture cap1: pxeherd-capture: this node has no GNU tar \(Debian package "tar"\)/ },
      { args: ['cap1'], attr: 'hostile', re: /cap1 sent an archive pxeherd refuses: entry "\.\.\/\.\.\/escaped-from-capture" has a "\.\." component/ },
      { args: ['cap1'], attr: 'failing', re: /tar on cap1 exited with 2: tar: \.\/var\/lib\/x: Read error at byte 0.*no revision was made/ },
    ];
    for (const k of cases) {
      if (k.attr) assert.equal((await cli(c, ['node', 'set', `attr.ssh_user=${k.attr}`, 'cap1'])).code, 0);
      const r = await cli(c, ['vnfs', 'capture', ...k.args, 'captured']);
      if (k.attr) assert.equal((await cli(c, ['node', 'set', 'attr.ssh_user=', 'cap1'])).code, 0);
      assert.equal(r.code, 1, `${k.attr ?? k.args[0]}: a run-time failure: ${r.stderr}`);
      assert.match(r.stderr, k.re);
      assert.deepEqual(revisions(c, 'captured'), before, `${k.attr ?? k.args[0]}: no revision`);
      assert.deepEqual(leftovers(c, 'captured'), [], `${k.attr ?? k.args[0]}: nothing staged`);
    }
    for (const p of [path.join(c.dir, 'escaped-from-capture'), path.join(c.statedir, 'escaped-from-capture'), path.join(c.statedir, 'images', 'escaped-from-capture')]) assert.equal(fs.existsSync(p), false, `${p} not written`);
    const s = Store.open(c.statedir);
    try {
      const failed = s.events.query({ kind: 'vnfs.capture', limit: 20 }).filter((e) => (e.detail as { ok?: boolean }).ok === false);
      assert.ok(failed.length >= 3, 'each failure is an event');
    } finally {
      s.close();
    }
    // Bad usage is refused before connecting: exit 2 naming the value.
    const bad = await cli(c, ['vnfs', 'capture', 'cap1', 'captured', '--exclude', 'var/log']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--exclude "var\/log" must be an absolute path on the node/);
    const none = await cli(c, ['vnfs', 'capture', 'nosuchnode', 'captured']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /nosuchnode/);
  });

  test('REST: POST /api/v1/vnfs/NAME/capture makes the next revision; a node-side failure is a 502 naming it', async () => {
    const conf = path.join(c.dir, 'serve.yaml');
    fs.writeFileSync(conf, `statedir: ${c.statedir}\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nhttp: { port: 0 }\nadmin: { listen: 127.0.0.1, port: 18181 }\nvnfs: { capture_exclude: [/opt/app/cache] }\n`);
    const log = path.join(c.dir, 'serve.log');
    const server = c.lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', conf], { log });
    try {
      await waitFor('the admin API', 20_000, () => fs.existsSync(log) && /admin listening/.test(fs.readFileSync(log, 'utf8')));
      const token = fs.readFileSync(path.join(c.statedir, 'admin.token'), 'utf8').trim();
      const post = async (body: unknown) => {
        const r = await run('curl', ['-s', '-w', '\n%{http_code}', '-X', 'POST', '-H', `Authorization: Bearer ${token}`, '-H', 'Content-Type: application/json', '--data', JSON.stringify(body), 'http://127.0.0.1:18181/api/v1/vnfs/captured/capture'], { ns: c.lab.ns, timeoutMs: 120_000 });
        const i = r.stdout.lastIndexOf('\n');
        return { status: Number(r.stdout.slice(i + 1)), body: JSON.parse(r.stdout.slice(0, i)) as Record<string, unknown> };
      };
      const ok = await post({ node: 'cap1', comment: 'over REST', exclude: ['/var/cache/big'] });
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
      assert.equal(ok.body.rev, 3);
      assert.equal(ok.body.parent, 2);
      assert.equal(fs.existsSync(path.join(c.statedir, 'images/captured/3/tree/var/cache/big')), false);
      assert.equal(fs.existsSync(path.join(c.statedir, 'images/captured/3/tree/opt/app/cache')), false, 'config excludes apply over REST too');
      const bad = await post({ node: 'impostor' });
      assert.equal(bad.status, 502);
      assert.match(String(bad.body.error), /host key of root@10\.77\.0\.50:22 .* is not the one pxeherd keeps/);
      const badEx = await post({ node: 'cap1', exclude: ['relative'] });
      assert.equal(badEx.status, 400);
      assert.equal(badEx.body.field, 'exclude');
      assert.deepEqual(revisions(c, 'captured'), [1, 2, 3]);
    } finally {
      server.kill('SIGTERM');
    }
  });

  test('a disk that fills up while the stream arrives: says so, no revision, nothing staged; with room the same capture succeeds', async () => {
    const mnt = path.join(c.statedir, 'images/full');
    fs.mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    try {
      const r = await cli(c, ['vnfs', 'capture', 'cap1', 'full']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /the disk holding .* filled up during the capture of full .*no revision was made and revision none stays current/);
      assert.deepEqual(revisions(c, 'full'), []);
      assert.deepEqual(fs.readdirSync(mnt), [], 'nothing staged on the full disk');
      execFileSync('mount', ['-o', 'remount,size=64m', mnt]);
      const ok = await cli(c, ['vnfs', 'capture', 'cap1', 'full', '--json']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal((JSON.parse(ok.stdout) as { rev: number }).rev, 1);
    } finally {
      spawnUmount(mnt);
    }
  });
});

function spawnUmount(p: string): void {
  try {
    execFileSync('umount', ['-l', p], { stdio: 'ignore' });
  } catch {
    /* not mounted */
  }
}
