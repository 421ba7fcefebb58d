/**
 * DirectStats: statInRoot for names directly in the TFTP root, remembered until the directory
 * changes (inotify) and never longer than its maximum age; the same answers as statInRoot.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DirectStats, statInRoot } from '../../src/tftp/paths.js';

/** Wait until `cond` holds (the watch's event arrives on a later turn), at most 2 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`never: ${what}`);
}

function fixture() {
  const base = mkdtempSync(path.join(tmpdir(), 'phtftp-dstats-'));
  const root = path.join(base, 'root');
  mkdirSync(path.join(root, 'sub'), { recursive: true });
  writeFileSync(path.join(root, 'undionly.kpxe'), 'v1');
  writeFileSync(path.join(root, 'sub', 'f'), 'inner');
  writeFileSync(path.join(base, 'secret'), 'outside');
  symlinkSync('../secret', path.join(root, 'link-out'));
  return { base, root, done: () => rmSync(base, { recursive: true, force: true }) };
}

test('a direct name is answered from memory until the file is rewritten, then the new version is seen', async () => {
  const f = fixture();
  const d = new DirectStats(f.root, 60_000);
  try {
    const first = d.get('undionly.kpxe');
    assert.equal(first?.stat.size, 2);
    assert.equal(d.get('undionly.kpxe'), first, 'the same answer object: no lstat');
    writeFileSync(path.join(f.root, 'undionly.kpxe'), 'version 2');
    await until(() => d.get('undionly.kpxe')?.stat.size === 9, 'the rewrite is seen');
  } finally {
    d.close();
    f.done();
  }
});

test('a replaced (renamed over) or removed file is seen', async () => {
  const f = fixture();
  const d = new DirectStats(f.root, 60_000);
  try {
    const ino = d.get('undionly.kpxe')!.stat.ino;
    writeFileSync(path.join(f.root, 'new.tmp'), 'replacement');
    renameSync(path.join(f.root, 'new.tmp'), path.join(f.root, 'undionly.kpxe'));
    await until(() => d.get('undionly.kpxe')?.stat.ino !== ino, 'the replacement is seen');
    assert.equal(d.get('undionly.kpxe')?.stat.size, 11);
    unlinkSync(path.join(f.root, 'undionly.kpxe'));
    await until(() => d.get('undionly.kpxe') === undefined, 'the removal is seen');
  } finally {
    d.close();
    f.done();
  }
});

test('entries expire after maxAgeMs even without a change event', () => {
  const f = fixture();
  const d = new DirectStats(f.root, 1000);
  try {
    const t0 = Date.now();
    const a = d.get('undionly.kpxe', t0);
    assert.equal(d.get('undionly.kpxe', t0 + 999), a);
    assert.notEqual(d.get('undionly.kpxe', t0 + 1000), a, 'asked again after a second');
  } finally {
    d.close();
    f.done();
  }
});

test('same answers as statInRoot: names below the root, symlinks out of it and missing names', () => {
  const f = fixture();
  const d = new DirectStats(f.root);
  try {
    for (const name of ['undionly.kpxe', 'sub/f', 'link-out', 'missing', 'sub']) {
      assert.deepEqual(d.get(name)?.real, statInRoot(f.root, name)?.real, name);
    }
    assert.equal(d.get('link-out'), undefined, 'a symlink out of the root is not served');
    assert.equal(d.get('missing'), undefined);
    writeFileSync(path.join(f.root, 'missing'), 'now here');
    assert.equal(d.get('missing')?.stat.size, 8, 'a miss is not remembered');
  } finally {
    d.close();
    f.done();
  }
});

test('a missing root gives nothing and no error', () => {
  const d = new DirectStats(path.join(tmpdir(), 'phtftp-dstats-does-not-exist'));
  assert.equal(d.get('undionly.kpxe'), undefined);
  d.close();
});
