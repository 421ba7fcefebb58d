import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { captureCommand, cleanCapturedTree, excludePattern, shellQuote, splitExcludes } from '../../src/images/capture.js';
import { ImageError } from '../../src/images/errors.js';

test('excludes: absolute paths become anchored tar patterns; relative, "..", "/" and control characters are refused naming the value', () => {
  assert.equal(excludePattern('/var/cache/apt/archives/'), './var/cache/apt/archives');
  assert.equal(excludePattern('//srv/./*.tmp'), './srv/*.tmp');
  assert.throws(() => excludePattern('var/log'), (e: Error) => e instanceof ImageError && /--exclude "var\/log" must be an absolute path on the node/.test(e.message));
  assert.throws(() => excludePattern('/var/../etc', 'attribute capture_exclude of n1'), /attribute capture_exclude of n1 "\/var\/\.\.\/etc" has a "\.\." component/);
  assert.throws(() => excludePattern('/'), /would exclude the whole root filesystem/);
  assert.throws(() => excludePattern('/a\nb'), /control character/);
  assert.deepEqual(splitExcludes(' /a, /b\n/c  '), ['/a', '/b', '/c']);
  assert.deepEqual(splitExcludes(undefined), []);
});

test('the node-side command is valid sh and passes each pattern to tar as one word, quotes included', () => {
  const cmd = captureCommand(['./proc/*', "./it's here"]);
  assert.equal(spawnSync('sh', ['-n', '-c', cmd]).status, 0, 'sh -n accepts it');
  assert.match(cmd, /--one-file-system/);
  assert.match(cmd, /--exclude='\.\/proc\/\*'/);
  // What tar would receive: run the exec line with a stand-in that prints its arguments.
  const exec = cmd.split('\n').find((l) => l.startsWith('exec tar '))!.replace(/^exec tar /, 'printf "%s\\n" ');
  const args = spawnSync('sh', ['-c', exec], { encoding: 'utf8' }).stdout.split('\n');
  assert.ok(args.includes("--exclude=./it's here"), args.join(' | '));
  assert.ok(args.includes('--xattrs-include=*'));
  assert.equal(shellQuote("a'b"), `'a'\\''b'`);
});

function write(root: string, rel: string, data = 'x', mode = 0o644): string {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data, { mode });
  return p;
}

test('cleaning a captured tree: identity, logs, leases, histories and pxeherd state go; the rest stays; symlinks out of the tree are never followed', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-capture-clean-'));
  try {
    const tree = path.join(dir, 'tree');
    const outside = path.join(dir, 'outside');
    const sentinels = [write(outside, '.bash_history', 'master history'), write(outside, 'dhclient.leases', 'master lease'), write(outside, 'syslog', 'master log')];
    for (const t of ['ed25519', 'rsa']) {
      write(tree, `etc/ssh/ssh_host_${t}_key`, 'private', 0o600);
      write(tree, `etc/ssh/ssh_host_${t}_key.pub`, 'public');
    }
    write(tree, 'etc/ssh/sshd_config', 'Port 22\n');
    write(tree, 'etc/machine-id', '0123456789abcdef0123456789abcdef\n', 0o444);
    write(tree, 'etc/hostname', 'node1\n');
    write(tree, 'etc/fstab', '# written by pxeherd (nodescript 85-disk-boot) for node1: img r1 on /dev/vda\nUUID=0b6c7f5e-1111-2222-3333-444455556666 / ext4 errors=remount-ro 0 1\n');
    write(tree, 'etc/udev/rules.d/70-persistent-net.rules', 'SUBSYSTEM=="net"');
    write(tree, 'etc/udev/rules.d/99-site.rules', 'kept');
    write(tree, 'etc/pxeherd/checkin.conf', "PXEHERD_MAC='52-54-00-00-00-01'");
    write(tree, 'etc/pxeherd/excludes', '/var/cache\n');
    write(tree, 'etc/systemd/network/10-pxeherd-boot.network', '[Match]\nMACAddress=52:54:00:00:00:01\n');
    write(tree, 'etc/systemd/network/20-site.network', 'kept');
    write(tree, 'etc/systemd/system/pxeherd-checkin.service', '[Unit]');
    fs.mkdirSync(path.join(tree, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
    fs.symlinkSync('/etc/systemd/system/pxeherd-checkin.service', path.join(tree, 'etc/systemd/system/multi-user.target.wants/pxeherd-checkin.service'));
    fs.symlinkSync('/lib/systemd/system/ssh.service', path.join(tree, 'etc/systemd/system/multi-user.target.wants/ssh.service'));
    write(tree, 'var/lib/pxeherd/token', 'secret-token', 0o600);
    write(tree, 'usr/lib/pxeherd/busybox', 'bb');
    write(tree, 'var/lib/dhcp/dhclient.eth0.leases', 'lease');
    write(tree, 'var/lib/systemd/random-seed', 'seed');
    write(tree, 'var/log/syslog', 'log lines', 0o640);
    write(tree, 'var/log/syslog.1', 'old');
    write(tree, 'var/log/apt/history.log.2.gz', 'gz');
    write(tree, 'var/log/journal/0123456789abcdef0123456789abcdef/system.journal', 'j');
    write(tree, 'var/log/hardlinked', 'shared content');
    fs.linkSync(path.join(tree, 'var/log/hardlinked'), path.join(tree, 'usr/lib/shared'));
    write(tree, 'root/.bash_history', 'rm -rf /');
    write(tree, 'root/.profile', 'kept');
    write(tree, 'home/alice/.bash_history', 'ls');
    write(tree, 'home/alice/notes', 'kept');
    // A node's absolute symlinks point at the MASTER's files once the tree sits on the master.
    fs.symlinkSync(outside, path.join(tree, 'home/evil'));
    fs.mkdirSync(path.join(tree, 'var/lib'), { recursive: true });
    fs.symlinkSync(outside, path.join(tree, 'var/lib/dhclient'));

    const rep = cleanCapturedTree(tree);
    const has = (rel: string) => fs.lstatSync(path.join(tree, rel), { throwIfNoEntry: false }) !== undefined;
    for (const gone of ['etc/ssh/ssh_host_ed25519_key', 'etc/ssh/ssh_host_rsa_key.pub', 'etc/udev/rules.d/70-persistent-net.rules', 'etc/pxeherd/checkin.conf', 'etc/systemd/network/10-pxeherd-boot.network', 'etc/systemd/system/pxeherd-checkin.service', 'etc/systemd/system/multi-user.target.wants/pxeherd-checkin.service', 'var/lib/pxeherd', 'usr/lib/pxeherd', 'var/lib/dhcp/dhclient.eth0.leases', 'var/lib/systemd/random-seed', 'var/log/syslog.1', 'var/log/apt/history.log.2.gz', 'var/log/journal/0123456789abcdef0123456789abcdef', 'var/log/hardlinked', 'root/.bash_history', 'home/alice/.bash_history']) {
      assert.equal(has(gone), false, `${gone} removed`);
      assert.ok(rep.removed.includes('/' + gone), `${gone} reported`);
    }
    for (const kept of ['etc/ssh/sshd_config', 'etc/udev/rules.d/99-site.rules', 'etc/pxeherd/excludes', 'etc/systemd/network/20-site.network', 'etc/systemd/system/multi-user.target.wants/ssh.service', 'root/.profile', 'home/alice/notes', 'var/log/journal', 'var/log/apt', 'usr/lib/shared']) assert.ok(has(kept), `${kept} kept`);
    assert.equal(fs.readFileSync(path.join(tree, 'usr/lib/shared'), 'utf8'), 'shared content', 'a log hard-linked elsewhere is unlinked, not emptied');
    const mid = fs.lstatSync(path.join(tree, 'etc/machine-id'));
    assert.ok(mid.isFile() && mid.size === 0 && (mid.mode & 0o777) === 0o444, 'machine-id is an empty regular file, 0444');
    assert.equal(fs.readFileSync(path.join(tree, 'etc/hostname'), 'utf8'), 'localhost\n');
    assert.doesNotMatch(fs.readFileSync(path.join(tree, 'etc/fstab'), 'utf8'), /UUID=/, 'the disk install\'s fstab names the captured node\'s disks: emptied');
    const log = fs.statSync(path.join(tree, 'var/log/syslog'));
    assert.equal(log.size, 0, 'a live log is emptied');
    assert.equal(log.mode & 0o777, 0o640, 'with its mode');
    for (const d of ['proc', 'sys', 'dev', 'run', 'tmp']) assert.ok(fs.statSync(path.join(tree, d)).isDirectory(), `/${d} mount point`);
    assert.equal(fs.statSync(path.join(tree, 'tmp')).mode & 0o7777, 0o1777);
    for (const s of sentinels) assert.ok(fs.existsSync(s), `${s} on the master untouched`);
    assert.ok(rep.skipped.includes('/var/lib/dhclient/*'), 'the symlinked lease directory is reported as skipped');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
