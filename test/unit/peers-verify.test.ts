import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { revisionFileOf, RevisionArtifacts } from '../../src/peers/artifacts.js';
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
