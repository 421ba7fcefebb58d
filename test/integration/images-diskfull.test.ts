/**
 * A disk that fills up while an image is committed: the state directory sits on a small tmpfs,
 * a first revision fits, a second one whose tree fits but whose packed squashfs does not fails
 * with a message that says the disk is full and what to do; no revision is made, no staging
 * directory is left behind, and the first revision stays current with its files intact
 * (each artifact still has the sha256 its manifest records). Needs root (mount) and mksquashfs.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pxeherd } from '../helpers/cli.js';

const skip =
  process.getuid?.() !== 0 ? 'needs root (mounts a small tmpfs)' : spawnSync('sh', ['-c', 'command -v mksquashfs']).status !== 0 ? 'needs mksquashfs (Debian package squashfs-tools)' : false;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-diskfull-'));
const mnt = path.join(dir, 'small');
after(() => {
  spawnSync('umount', ['-l', mnt]);
  fs.rmSync(dir, { recursive: true, force: true });
});

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

test('a disk that fills up during the pack: clear message, no revision, nothing staged, the current revision intact', { skip, timeout: 120_000 }, () => {
  fs.mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', mnt]);
  const statedir = path.join(mnt, 'var');
  const config = path.join(dir, 'pxeherd.yaml');
  fs.writeFileSync(config, `statedir: ${statedir}\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nhttp: { port: 0 }\nadmin: { port: 0 }\n`);
  const small = path.join(dir, 'small-tree');
  fs.mkdirSync(path.join(small, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(small, 'etc', 'hostname'), 'node\n');
  const first = pxeherd(['vnfs', 'import', 'img', small, '--json'], { config });
  assert.equal(first.code, 0, first.stderr);

  // 14 MiB that no compressor shrinks: the tree fits in what is left, tree + squashfs do not.
  const big = path.join(dir, 'big-tree');
  fs.mkdirSync(path.join(big, 'data'), { recursive: true });
  fs.writeFileSync(path.join(big, 'data', 'noise'), crypto.randomBytes(14 << 20));
  const r = pxeherd(['vnfs', 'import', 'img', big, '--json'], { config });
  console.log(r.stderr.trim().split("\n").pop());
  assert.equal(r.code, 1, `a full disk is a run-time failure, not bad input: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /filled up during the import of img .*no revision was made and revision 1 stays current; free space, or remove old revisions with "pxeherd vnfs prune img --keep N"/);

  const revs = JSON.parse(pxeherd(['vnfs', 'revisions', 'img', '--json'], { config }).stdout) as { revisions: { rev: number }[] };
  assert.deepEqual(revs.revisions.map((x) => x.rev), [1]);
  const leftovers = [path.join(statedir, 'images', 'img'), path.join(statedir, 'vnfs', 'img')].flatMap((d) => fs.readdirSync(d).filter((f) => f !== '1' && f !== 'r1' && f !== '.lock' && !f.startsWith('xattrs')));
  assert.deepEqual(leftovers, [], 'no staging directory or half revision is left');
  const manifest = JSON.parse(fs.readFileSync(path.join(statedir, 'vnfs', 'img', 'r1', 'manifest.json'), 'utf8')) as { artifacts: Record<string, { sha256: string; size: number }> };
  assert.ok(Object.keys(manifest.artifacts).length > 0);
  for (const [file, a] of Object.entries(manifest.artifacts)) assert.equal(sha256(path.join(statedir, 'vnfs', 'img', 'r1', file)), a.sha256, `r1/${file} intact`);
  // Space freed: the same import now succeeds as revision 2.
  execFileSync('mount', ['-o', 'remount,size=64m', mnt]);
  const again = pxeherd(['vnfs', 'import', 'img', big, '--json'], { config });
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual((JSON.parse(pxeherd(['vnfs', 'revisions', 'img', '--json'], { config }).stdout) as { revisions: { rev: number }[] }).revisions.map((x) => x.rev), [1, 2]);
});
