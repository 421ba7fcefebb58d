import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileCache, ChunkedFileSource, BufferSource } from '../../src/tftp/source.js';

async function open(p: string) {
  const h = await fsp.open(p, 'r');
  return { h, st: await h.stat() };
}

test('concurrent transfers of one file share one in-memory copy; an edited file is re-read', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'phtftp-src-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'f.bin');
  writeFileSync(f, 'version one');
  let now = 0;
  const cache = new FileCache({ now: () => now, ttlMs: 1000 });
  const a = await open(f);
  const b = await open(f);
  const sa = await cache.open(a.h, a.st);
  const sb = await cache.open(b.h, b.st);
  assert.equal(sa.slice(0, 100)?.toString(), 'version one');
  assert.equal(sa.slice(0, 100)!.buffer, sb.slice(0, 100)!.buffer, 'same backing memory');
  assert.equal(cache.bytes, 11);
  await new Promise((r) => setTimeout(r, 20)); // a different mtime
  writeFileSync(f, 'version two!');
  const c = await open(f);
  const sc = await cache.open(c.h, c.st);
  assert.equal(sc.slice(0, 100)?.toString(), 'version two!');
  sa.release();
  sb.release();
  sc.release();
  now = 5000;
  cache.sweep();
  assert.equal(cache.bytes, 0, 'unused entries expire');
});

test('unused entries are evicted when over the byte budget, in use ones are kept', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'phtftp-src-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const n of ['a', 'b', 'c']) writeFileSync(path.join(dir, n), Buffer.alloc(100, n));
  let now = 0;
  const cache = new FileCache({ now: () => now, maxBytes: 150, ttlMs: 60_000 });
  const srcs = [];
  for (const n of ['a', 'b', 'c']) {
    const o = await open(path.join(dir, n));
    srcs.push(await cache.open(o.h, o.st));
    now++;
  }
  assert.equal(cache.bytes, 300, 'all in use: nothing evicted');
  srcs[0]!.release();
  srcs[1]!.release();
  assert.equal(cache.bytes, 100, 'idle ones go first when over budget');
  srcs[2]!.release();
  assert.equal(cache.bytes, 100);
});

test('files above maxFileBytes are read in chunks on demand', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'phtftp-src-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const data = randomBytes(10_000);
  writeFileSync(path.join(dir, 'big'), data);
  const cache = new FileCache({ maxFileBytes: 1000, chunkBytes: 3000 });
  const o = await open(path.join(dir, 'big'));
  const s = await cache.open(o.h, o.st);
  assert.ok(s instanceof ChunkedFileSource);
  assert.equal(s.size, 10_000);
  assert.equal(s.slice(0, 512), undefined, 'nothing in memory before load');
  await s.load(0, 512);
  assert.deepEqual(s.slice(0, 512), data.subarray(0, 512));
  assert.deepEqual(s.slice(2500, 500), data.subarray(2500, 3000));
  assert.equal(s.slice(2900, 512), undefined, 'beyond the chunk');
  await s.load(9000, 5000);
  assert.deepEqual(s.slice(9000, 5000), data.subarray(9000));
  s.release();
});

test('BufferSource serves slices of its buffer', () => {
  const s = new BufferSource(Buffer.from('abcdef'));
  assert.equal(s.slice(2, 3).toString(), 'cde');
  assert.equal(s.slice(5, 10).toString(), 'f');
  assert.equal(s.slice(6, 10).length, 0);
});

test('hit() serves a loaded copy by file identity without I/O, and never a stale or unloaded one', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'phtftp-hit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'loader');
  writeFileSync(file, 'version one');
  const cache = new FileCache();
  const st1 = await fsp.stat(file);
  assert.equal(cache.hit(st1), undefined, 'nothing loaded yet');
  const first = await cache.open(await fsp.open(file, 'r'), st1);
  const hit = cache.hit(st1);
  assert.equal(hit?.all().toString(), 'version one');
  first.release();
  hit!.release();
  writeFileSync(file, 'version two!');
  const st2 = await fsp.stat(file);
  assert.equal(cache.hit(st2), undefined, 'an edited file is a different version');
  assert.equal(cache.hit(st1)?.all().toString(), 'version one', 'the old version is still the old bytes');
});

test('joinLoad() waits for a read under way instead of opening the file again, and steps aside after a failed one', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'phtftp-join-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'loader');
  const body = randomBytes(200_000);
  writeFileSync(file, body);
  const cache = new FileCache();
  const st = await fsp.stat(file);
  assert.equal(cache.joinLoad(st), undefined, 'no read under way: nothing to join');
  const loading = cache.open(await fsp.open(file, 'r'), st);
  const joined = cache.joinLoad(st);
  assert.ok(joined, 'a read is under way');
  assert.equal(cache.hit(st), undefined, 'not loaded yet');
  const [a, b] = await Promise.all([loading, joined!]);
  assert.ok(a.all().equals(body) && b!.all().equals(body));
  assert.equal(cache.joinLoad(st), undefined, 'loaded: hit() is the way now');
  a.release();
  b!.release();
  // A read that fails: the joiner gets undefined (and opens the file itself), the cache forgets it.
  const broken = await fsp.open(file, 'r');
  const fake = { ...st, size: st.size, ino: st.ino + 1 } as typeof st;
  await broken.close(); // reading a closed handle fails
  const failing = cache.open(broken, fake);
  const joiner = cache.joinLoad(fake);
  await assert.rejects(failing);
  assert.equal(await joiner, undefined);
  assert.equal(cache.hit(fake), undefined);
});
