import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { buildOverlay, overlayLayers, overlayTar, OverlayError } from '../../src/stateless/overlay.js';
import { splitVnfsRef, nodeImage } from '../../src/stateless/image.js';
import { isCryptHash } from '../../src/stateless/identity.js';

function tree(files: Record<string, string | { data: string; mode: number }>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-overlay-'));
  for (const [rel, v] of Object.entries(files)) {
    const f = path.join(dir, rel);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    if (typeof v === 'string') fs.writeFileSync(f, v);
    else {
      fs.writeFileSync(f, v.data);
      fs.chmodSync(f, v.mode);
    }
  }
  return dir;
}

const ctx = { node: { name: 'n0001', ip: '10.0.0.2', attrs: { rack: 'r12' } }, nodes: [{ name: 'n0000', ip: '10.0.0.1' }, { name: 'n0001', ip: '10.0.0.2' }] };

test('layers vnfs < all < group < node: the more specific file wins, whiteouts delete, .hbs render per node, modes kept', () => {
  const statedir = tree({
    'overlays/vnfs/deb/etc/motd': 'vnfs motd\n',
    'overlays/vnfs/deb/etc/issue': 'vnfs issue\n',
    'overlays/vnfs/deb/opt/tool/bin': 'x',
    'overlays/all/etc/motd': 'all motd\n',
    'overlays/all/etc/rack.hbs': 'rack {{node.attrs.rack}} of {{node.name}}\n',
    'overlays/all/usr/local/bin/hello': { data: '#!/bin/sh\necho hi\n', mode: 0o750 },
    'overlays/group/compute/etc/motd': 'group motd\n',
    'overlays/group/compute/etc/.wh.issue': '',
    'overlays/group/compute/opt/.wh.tool': '',
    'overlays/node/n0001/etc/hosts.hbs': '{{#each nodes}}{{ip}} {{name}}\n{{/each}}',
    'overlays/node/n0002/etc/motd': 'other node\n',
  });
  try {
    const o = buildOverlay(overlayLayers(statedir, { name: 'n0001', group: 'compute' }, 'deb'), ctx);
    const get = (p: string) => o.files.find((f) => f.path === p);
    assert.equal(get('etc/motd')!.data!.toString(), 'group motd\n', 'group beats all beats vnfs; another node is not seen');
    assert.equal(get('etc/motd')!.source, 'group/compute:etc/motd');
    assert.equal(get('etc/rack')!.data!.toString(), 'rack r12 of n0001\n');
    assert.equal(get('etc/hosts')!.data!.toString(), '10.0.0.1 n0000\n10.0.0.2 n0001\n');
    assert.equal(get('usr/local/bin/hello')!.mode, 0o750);
    assert.equal(get('usr/local/bin/hello')!.uid, 0, "files owned by pxeherd's own user belong to root on the node");
    assert.equal(get('etc/issue'), undefined);
    assert.equal(get('opt/tool/bin'), undefined, 'a whiteout of a directory removes what lower layers put under it');
    assert.deepEqual(o.deletes, ['etc/issue', 'opt/tool']);
    assert.match(o.hash, /^[0-9a-f]{64}$/);
    assert.equal(buildOverlay(overlayLayers(statedir, { name: 'n0001', group: 'compute' }, 'deb'), ctx).hash, o.hash, 'same files, same hash');
    // The bundle unpacks with GNU tar and busybox tar.
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-overlay-x-'));
    fs.writeFileSync(path.join(out, 'b.tar'), overlayTar(o));
    execFileSync('busybox', ['tar', '-xf', path.join(out, 'b.tar'), '-C', out]);
    assert.equal(fs.readFileSync(path.join(out, 'root/etc/rack'), 'utf8'), 'rack r12 of n0001\n');
    assert.equal(fs.statSync(path.join(out, 'root/usr/local/bin/hello')).mode & 0o7777, 0o750);
    assert.equal(fs.readFileSync(path.join(out, 'delete'), 'utf8'), 'etc/issue\nopt/tool\n');
    assert.equal(execFileSync('tar', ['-tvf', path.join(out, 'b.tar')], { encoding: 'utf8' }).includes('root/etc/hosts'), true);
    fs.rmSync(out, { recursive: true, force: true });
  } finally {
    fs.rmSync(statedir, { recursive: true, force: true });
  }
});

test('a template naming a missing value is an error naming the overlay file, the line and the key', () => {
  const statedir = tree({ 'overlays/all/etc/app.conf.hbs': 'name={{node.name}}\nrack={{node.attrs.rak}}\n' });
  try {
    assert.throws(
      () => buildOverlay(overlayLayers(statedir, { name: 'n0001', group: '' }, ''), ctx),
      (e: Error) => e instanceof OverlayError && /overlay all:etc\/app\.conf\.hbs line 2: \{\{node\.attrs\.rak\}\} is not defined \(missing value "rak"\)/.test(e.message),
    );
  } finally {
    fs.rmSync(statedir, { recursive: true, force: true });
  }
});

test('revision refs: NAME@REV pins, then attribute vnfs_rev, then the current revision; no revision = kernel+initrd VNFS', () => {
  assert.deepEqual(splitVnfsRef('deb12@3'), { name: 'deb12', rev: 3 });
  assert.deepEqual(splitVnfsRef('deb12'), { name: 'deb12' });
  assert.deepEqual(splitVnfsRef('deb12@x'), { name: 'deb12@x' });
  assert.deepEqual(nodeImage('stage1', {}, null), { name: 'stage1', root: false }, 'no current revision: a kernel+initrd VNFS');
  assert.deepEqual(nodeImage('deb@2', { vnfs_rev: '1' }, 5), { name: 'deb', rev: 2, root: true });
  assert.deepEqual(nodeImage('deb', { vnfs_rev: '1' }, 5), { name: 'deb', rev: 1, root: true });
  assert.deepEqual(nodeImage('deb', {}, 5), { name: 'deb', rev: 5, root: true });
});

test('root password hashes: crypt(3) forms only, never a plain password', () => {
  for (const ok of ['$6$salt$' + 'a'.repeat(86), '$y$j9T$abcdefgh$ABCDEFGHIJKLMNOPQRSTUVWXYZ012345678901', '$2b$12$' + 'a'.repeat(53), '!', '*']) assert.ok(isCryptHash(ok), ok);
  for (const bad of ['hunter2', '$6$', 'password$6$', '$6$a b$c', '$9$abcdefghij']) assert.ok(!isCryptHash(bad), bad);
});
