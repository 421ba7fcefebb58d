import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { revisionFileOf, RevisionArtifacts, vnfsRefOf } from '../../src/peers/artifacts.js';
import { revisionArtifactsFor } from '../../src/peers/wiring.js';
import { loadConfig } from '../../src/config/load.js';
import { Store } from '../../src/store/store.js';
import { openDatabase } from '../../src/store/db.js';
import { markerHolds } from '../../src/peers/verify.js';
import { parseSyncTarget } from '../../src/cli/commands/sync.js';
import type { BootEvent } from '../../src/nodes/types.js';

test('revision artifacts are r<rev>/{vmlinuz,initrd.img,rootfs.squashfs,manifest.json}; other VNFS files are not', () => {
  assert.deepEqual(revisionFileOf(['img', 'r3', 'vmlinuz']), { vnfs: 'img', rev: 3, file: 'vmlinuz' });
  assert.deepEqual(revisionFileOf(['img', 'r12', 'manifest.json']), { vnfs: 'img', rev: 12, file: 'manifest.json' });
  for (const segs of [['img', 'vmlinuz'], ['img', 'r0', 'vmlinuz'], ['img', 'r01', 'vmlinuz'], ['img', 'r3', 'other'], ['img', 'r3', 'sub', 'vmlinuz'], ['../x', 'r1', 'vmlinuz']]) {
    assert.equal(revisionFileOf(segs), undefined, segs.join('/'));
  }
});

test('a verified marker holds only for the same sha256, size, mtime and inode', () => {
  const want = { sha256: 'ab', size: 10 };
  const st = { size: 10, mtimeMs: 5, ino: 7 };
  const m = { sha256: 'ab', size: 10, mtimeMs: 5, ino: 7 };
  assert.equal(markerHolds(m, st, want), true);
  assert.equal(markerHolds(undefined, st, want), false);
  assert.equal(markerHolds({ ...m, sha256: 'cd' }, st, want), false, 'another manifest');
  assert.equal(markerHolds(m, { ...st, mtimeMs: 6 }, want), false, 'rewritten');
  assert.equal(markerHolds(m, { ...st, ino: 8 }, want), false, 'replaced');
  assert.equal(markerHolds(m, { ...st, size: 9 }, want), false, 'truncated');
});

test('vnfs sync targets: NAME or NAME@REV, anything else is bad usage', () => {
  assert.deepEqual(parseSyncTarget('img'), { name: 'img', rev: undefined });
  assert.deepEqual(parseSyncTarget('img@4'), { name: 'img', rev: 4 });
  for (const bad of ['img@', 'img@0', 'img@x', '@3', 'a@1@2']) assert.throws(() => parseSyncTarget(bad), /is not NAME or NAME@REV/, bad);
});

test('a local file is hashed once: later requests trust the marker until the file changes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phverify-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bytes = crypto.randomBytes(5000);
  const manifest = JSON.stringify({ vnfs: 'img', rev: 1, artifacts: { 'initrd.img': { sha256: crypto.createHash('sha256').update(bytes).digest('hex'), size: bytes.length } } });
  fs.mkdirSync(path.join(dir, 'img', 'r1'), { recursive: true });
  const file = path.join(dir, 'img', 'r1', 'initrd.img');
  fs.writeFileSync(file, bytes);
  const evs: BootEvent[] = [];
  const mk = () => new RevisionArtifacts({ vnfsRoot: dir, manifestOf: () => manifest, origins: [], serverId: 's1', events: { record: (e) => evs.push(e) } });
  const ref = { vnfs: 'img', rev: 1, file: 'initrd.img' as const };
  const a = mk();
  assert.equal(((await a.ensure(ref)) as { how: string }).how, 'checked');
  assert.equal(((await a.ensure(ref)) as { how: string }).how, 'verified');
  assert.equal(((await mk().ensure(ref)) as { how: string }).how, 'verified', 'a restarted server trusts the marker');
  assert.deepEqual(evs.map((e) => e.kind), ['vnfs.verify']);
  // Same size, other bytes: refused, no origins -> 503 naming the problem.
  const bad = Buffer.from(bytes);
  bad[0] = bad[0]! ^ 1;
  fs.writeFileSync(file, bad);
  const r = await a.ensure(ref);
  assert.equal(r.ok, false);
  assert.deepEqual([(r as { status: number }).status], [503]);
  assert.match((r as { reason: string }).reason, /^img r1\/initrd\.img on this server has sha256 [0-9a-f]{12}…, the manifest says [0-9a-f]{12}… and no images\.origins are configured to fetch it from$/);
  assert.equal(fs.existsSync(file), false, 'never served again under its name');
  assert.deepEqual(evs.map((e) => e.kind), ['vnfs.verify', 'vnfs.corrupt']);
});

test('NAME/FILE is a candidate kernel+initrd VNFS file (the database decides); dotfiles, deeper paths and bad names are not', () => {
  assert.deepEqual(vnfsRefOf(['plain', 'vmlinuz-6.1']), { vnfs: 'plain', file: 'vmlinuz-6.1' });
  assert.deepEqual(vnfsRefOf(['img', 'r2', 'vmlinuz']), { vnfs: 'img', rev: 2, file: 'vmlinuz' });
  assert.equal(vnfsRefOf(['plain', '.verified-vmlinuz']), undefined);
  assert.equal(vnfsRefOf(['plain', 'sub', 'x']), undefined);
  assert.equal(vnfsRefOf(['../x', 'vmlinuz']), undefined);
});

test('a kernel+initrd VNFS on one SQLite server: served against the recorded sha256, recorded on first use when missing, forgotten by vnfs set kernel, refused when changed by hand', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phvnfsfile-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const store = new Store(openDatabase(':memory:'));
  const evs: BootEvent[] = [];
  const cfgFile = path.join(dir, 'c.yaml');
  fs.writeFileSync(cfgFile, `statedir: ${dir}\n`);
  const artifacts = revisionArtifactsFor(loadConfig(cfgFile, {}), store, { record: (e) => evs.push(e) });
  const k = crypto.randomBytes(4000);
  const sha = crypto.createHash('sha256').update(k).digest('hex');
  fs.mkdirSync(path.join(dir, 'vnfs', 'v'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'vnfs', 'v', 'vmlinuz'), k);
  fs.writeFileSync(path.join(dir, 'vnfs', 'v', 'other'), k);
  // No hash recorded (a VNFS from before migration 12): hashed here, recorded, served.
  store.vnfs.put({ name: 'v', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: '' });
  const ref = { vnfs: 'v', file: 'vmlinuz' };
  assert.equal(((await artifacts.ensure(ref)) as { how: string }).how, 'recorded');
  assert.deepEqual(store.vnfs.file('v', 'vmlinuz'), { role: 'kernel', hash: { sha256: sha, size: k.length } });
  assert.equal(((await artifacts.ensure(ref)) as { how: string }).how, 'verified');
  assert.equal(store.vnfs.recordFileHash('v', 'vmlinuz', { sha256: 'f'.repeat(64), size: 1 }), false, 'a recorded hash is never overwritten by a record');
  // The initrd is on no disk and has no hash: refused, never fetched unverified.
  const missing = await artifacts.ensure({ vnfs: 'v', file: 'initrd.img' });
  assert.equal(missing.ok, false);
  assert.match((missing as { reason: string }).reason, /^v\/initrd\.img is not on this server and the database records no sha256 for it/);
  // A file the VNFS does not name is served as it is.
  assert.equal(((await artifacts.ensure({ vnfs: 'v', file: 'other' })) as { how: string }).how, 'unmanaged');
  // vnfs set kernel: another file, its hash unknown until recorded.
  store.vnfs.set('v', 'kernel', 'other');
  assert.deepEqual(store.vnfs.file('v', 'other'), { role: 'kernel', hash: undefined });
  store.vnfs.set('v', 'kernel', 'vmlinuz');
  assert.equal(((await artifacts.ensure(ref)) as { how: string }).how, 'recorded');
  // Changed by hand after it was recorded: refused and kept aside (no origins to fetch it from).
  const bad = Buffer.from(k);
  bad[7] = bad[7]! ^ 1;
  fs.writeFileSync(path.join(dir, 'vnfs', 'v', 'vmlinuz'), bad);
  const r = await artifacts.ensure(ref);
  assert.equal(r.ok, false);
  assert.match((r as { reason: string }).reason, /^v\/vmlinuz on this server has sha256 [0-9a-f]{12}…, the database says [0-9a-f]{12}… and no images\.origins are configured/);
  assert.ok(fs.existsSync(path.join(dir, 'vnfs', 'v', '.corrupt-vmlinuz')));
  assert.deepEqual(evs.map((e) => e.kind), ['vnfs.record', 'vnfs.unverified', 'vnfs.record', 'vnfs.corrupt']);
  store.close();
});
