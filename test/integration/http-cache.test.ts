import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createHttpApp } from '../../src/http/app.js';
import { vnfsRouter, tftpHttpRouter } from '../../src/http/vnfs.js';
import { FileCache, parseByteRange } from '../../src/http/files.js';
import { curl, listen } from './http-curl.js';

/**
 * The in-memory copies of hot files (FileCache): answers identical to the streaming path,
 * never a stale or out-of-root file, bounded size, one read for concurrent first requests.
 */
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-http-cache-'));
const vnfsRoot = path.join(dir, 'vnfs');
const img = path.join(vnfsRoot, 'img');
fs.mkdirSync(img, { recursive: true });
fs.writeFileSync(path.join(dir, 'outside.txt'), 'OUTSIDE-SECRET');
const initrd = crypto.randomBytes(2 << 20);
fs.writeFileSync(path.join(img, 'initrd.img'), initrd);
fs.writeFileSync(path.join(img, 'notes.txt'), 'plain text\n');
fs.writeFileSync(path.join(img, 'empty'), '');
const noop = { record: () => {} };
const backend = { vnfs: () => ({ kernel: 'vmlinuz', initrd: 'initrd.img' }), nodeName: () => undefined };

// settleMs 0: every copy is kept, so these tests exercise hits, not the young-file rule.
const cache = new FileCache({ settleMs: 0 });
const cached = await listen(createHttpApp({ routers: [vnfsRouter({ vnfsRoot, backend, events: noop, cache }), tftpHttpRouter({ root: img, events: noop, cache })] }), 0);
const streamed = await listen(createHttpApp({ routers: [vnfsRouter({ vnfsRoot, backend, events: noop, cache: false })] }), 0);
after(async () => {
  await cached.close();
  await streamed.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const HEADERS = ['content-length', 'content-range', 'content-type', 'etag', 'last-modified', 'accept-ranges', 'cache-control'];

const cases: [string, string[]][] = [
  ['initrd.img', []],
  ['initrd.img', ['-I']],
  ['notes.txt', []],
  ['empty', []],
  ['initrd.img', ['-r', '100-1123']],
  ['initrd.img', ['-r', '0-0']],
  ['initrd.img', ['-H', 'Range: bytes=-10']],
  ['initrd.img', ['-H', 'Range: bytes=2000000-']],
  ['initrd.img', ['-H', 'Range: bytes=0-99,50-199']],
  ['initrd.img', ['-H', 'Range: bytes=0-9,100-109']],
  ['initrd.img', ['-H', 'Range: bytes=5-2']],
  ['initrd.img', ['-H', 'Range: bytes=abc']],
  ['initrd.img', ['-H', 'Range: items=0-5']],
  ['initrd.img', ['-H', `Range: bytes=${initrd.length}-`]],
  ['initrd.img', ['-I', '-H', 'Range: bytes=10-19']],
  ['empty', ['-H', 'Range: bytes=0-']],
  ['initrd.img', ['-H', 'If-None-Match: W/"0-0"']],
  ['initrd.img', ['-H', 'If-None-Match: *']],
  ['initrd.img', ['-H', 'If-Match: "nope"']],
  ['initrd.img', ['-H', 'If-Match: *']],
  ['initrd.img', ['-H', 'If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT']],
  ['initrd.img', ['-H', 'If-Unmodified-Since: Fri, 01 Jan 2100 00:00:00 GMT']],
  ['initrd.img', ['-H', 'If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT']],
  ['initrd.img', ['-H', 'If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT', '-H', 'Cache-Control: no-cache']],
  ['initrd.img', ['-H', 'If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT']],
  ['initrd.img', ['-r', '0-9', '-H', 'If-Range: W/"dead-beef"']],
  ['initrd.img', ['-r', '0-9', '-H', 'If-Range: Fri, 01 Jan 2100 00:00:00 GMT']],
  ['initrd.img', ['-r', '0-9', '-H', 'If-Range: Thu, 01 Jan 1970 00:00:00 GMT']],
];

test(`${cases.length} requests (GET, HEAD, ranges, conditionals) get the same status, headers and bytes from the cache as from the streaming path`, async () => {
  const etag = (await curl(`${streamed.base}/vnfs/img/initrd.img`, ['-I'])).headers['etag']!;
  const lm = (await curl(`${streamed.base}/vnfs/img/initrd.img`, ['-I'])).headers['last-modified']!;
  const all: [string, string[]][] = [
    ...cases,
    ['initrd.img', ['-H', `If-None-Match: ${etag}`]],
    ['initrd.img', ['-H', `If-None-Match: "x", ${etag.replace(/^W\//, '')}`]],
    ['initrd.img', ['-H', `If-Modified-Since: ${lm}`]],
    ['initrd.img', ['-H', `If-Match: ${etag}`]],
    ['initrd.img', ['-r', '0-9', '-H', `If-Range: ${etag}`]],
    ['initrd.img', ['-r', '0-9', '-H', `If-Range: ${lm}`]],
  ];
  const hits0 = cache.stats.hits;
  for (const [file, args] of all) {
    const want = await curl(`${streamed.base}/vnfs/img/${file}`, args);
    const got = await curl(`${cached.base}/vnfs/img/${file}`, args);
    const what = `${file} ${args.join(' ')}`;
    assert.equal(got.status, want.status, what);
    for (const h of HEADERS) {
      // Error answers differ in their (one-line) bodies, so in length and type: only status and Content-Range count there.
      if (want.status >= 400 && h !== 'content-range') continue;
      assert.equal(got.headers[h], want.headers[h], `${what}: ${h}`);
    }
    // With -I curl prints the headers (Date included) as the body: only check nothing follows them.
    if (args.includes('-I')) assert.ok(got.body.toString('latin1').endsWith('\r\n\r\n') && got.body.toString('latin1').split('\r\n\r\n').length === 2, `${what}: no body`);
    else if (want.status < 400) assert.ok(got.body.equals(want.body), `${what}: body`);
  }
  assert.ok(cache.stats.hits - hits0 >= all.length - 3, `answers came from the cache (${cache.stats.hits - hits0} hits)`);
});

test('parseByteRange reads Range headers as send does', () => {
  assert.deepEqual(parseByteRange(100, 'bytes=0-9'), { start: 0, end: 9 });
  assert.deepEqual(parseByteRange(100, 'bytes=90-'), { start: 90, end: 99 });
  assert.deepEqual(parseByteRange(100, 'bytes=-5'), { start: 95, end: 99 });
  assert.deepEqual(parseByteRange(100, 'bytes=50-500'), { start: 50, end: 99 });
  assert.deepEqual(parseByteRange(100, 'bytes=0-10,5-20'), { start: 0, end: 20 });
  assert.deepEqual(parseByteRange(100, 'bytes=0-10,11-20'), { start: 0, end: 20 });
  assert.equal(parseByteRange(100, 'bytes=0-10,12-20'), 'ignore');
  assert.equal(parseByteRange(100, 'bytes=x-1'), 'ignore');
  assert.equal(parseByteRange(100, 'bytes'), 'ignore');
  assert.equal(parseByteRange(100, 'bytes=100-'), 'unsatisfiable');
  assert.equal(parseByteRange(100, 'bytes=9-3'), 'unsatisfiable');
  assert.equal(parseByteRange(0, 'bytes=0-'), 'unsatisfiable');
});

const get = (p: string) => curl(`${cached.base}${p}`);

test('a replaced file is never served stale: rename over it, rewrite in place with the old mtime, truncate', async () => {
  const f = path.join(img, 'vmlinuz');
  // Every version gets the same whole-second mtime (one a utimes call can put back exactly).
  const T = 1_700_000_000;
  fs.writeFileSync(f, 'version-1 aaaa');
  fs.utimesSync(f, T, T);
  assert.equal((await get('/vnfs/img/vmlinuz')).body.toString(), 'version-1 aaaa');
  const hits = cache.stats.hits;
  assert.equal((await get('/vnfs/img/vmlinuz')).body.toString(), 'version-1 aaaa');
  assert.equal(cache.stats.hits, hits + 1, 'the second GET is a cache hit');

  // New inode renamed over the old name (how images are usually installed).
  fs.writeFileSync(f + '.new', 'version-2 bbbb');
  fs.utimesSync(f + '.new', T, T);
  fs.renameSync(f + '.new', f);
  assert.equal((await get('/vnfs/img/vmlinuz')).body.toString(), 'version-2 bbbb');
  assert.equal((await get('/vnfs/img/vmlinuz')).body.toString(), 'version-2 bbbb');

  // Same inode, same size, mtime put back: only ctime tells, and it is enough.
  fs.writeFileSync(f, 'version-3 cccc');
  fs.utimesSync(f, T, T);
  assert.equal(fs.statSync(f).mtimeMs, T * 1000);
  assert.equal((await get('/vnfs/img/vmlinuz')).body.toString(), 'version-3 cccc');

  fs.truncateSync(f, 4);
  assert.equal((await get('/vnfs/img/vmlinuz')).body.toString(), 'vers');
  fs.rmSync(f);
  assert.equal((await get('/vnfs/img/vmlinuz')).status, 404, 'a deleted file is gone, whatever was cached');
});

test('a cached file swapped for a symlink out of the root is refused, not served from memory', async () => {
  const f = path.join(img, 'swap.img');
  fs.writeFileSync(f, 'INSIDE-CONTENT');
  assert.equal((await get('/vnfs/img/swap.img')).body.toString(), 'INSIDE-CONTENT');
  assert.equal((await get('/tftp/swap.img')).body.toString(), 'INSIDE-CONTENT');
  fs.rmSync(f);
  fs.symlinkSync(path.join(dir, 'outside.txt'), f);
  for (const p of ['/vnfs/img/swap.img', '/tftp/swap.img']) {
    const r = await get(p);
    assert.equal(r.status, 403, p);
    assert.ok(!r.body.toString().includes('INSIDE-CONTENT') && !r.body.toString().includes('OUTSIDE-SECRET'), `${p}: ${r.body}`);
  }
});

test('a copy read while the file was young is used until it settles, then read again', async () => {
  const young = new FileCache({ settleMs: 400 });
  const srv = await listen(createHttpApp({ routers: [vnfsRouter({ vnfsRoot, backend, events: noop, cache: young })] }), 0);
  try {
    fs.writeFileSync(path.join(img, 'fresh.img'), 'FRESH');
    assert.equal((await curl(`${srv.base}/vnfs/img/fresh.img`)).body.toString(), 'FRESH');
    assert.equal((await curl(`${srv.base}/vnfs/img/fresh.img`)).body.toString(), 'FRESH');
    assert.deepEqual([young.stats.loads, young.stats.hits], [1, 1], 'young copy served while young');
    await new Promise((r) => setTimeout(r, 450));
    assert.equal((await curl(`${srv.base}/vnfs/img/fresh.img`)).body.toString(), 'FRESH');
    assert.equal(young.stats.loads, 2, 'read again once settled');
    await curl(`${srv.base}/vnfs/img/fresh.img`);
    assert.deepEqual([young.stats.loads, young.stats.hits], [2, 2], 'the settled copy is kept');
  } finally {
    await srv.close();
  }
});

test('the cache stays within its byte budget; larger files are streamed; answers stay right', async () => {
  const small = new FileCache({ maxBytes: 250_000, maxFileBytes: 150_000, settleMs: 0 });
  const srv = await listen(createHttpApp({ routers: [vnfsRouter({ vnfsRoot, backend, events: noop, cache: small })] }), 0);
  try {
    const files = ['a', 'b', 'c'].map((n) => {
      const body = crypto.randomBytes(100_000);
      fs.writeFileSync(path.join(img, `${n}.bin`), body);
      return { n, body };
    });
    for (let round = 0; round < 2; round++) {
      for (const { n, body } of files) {
        const r = await curl(`${srv.base}/vnfs/img/${n}.bin`);
        assert.ok(r.body.equals(body), `${n}.bin`);
        assert.ok(small.bytes <= small.maxBytes, `held ${small.bytes}`);
      }
    }
    assert.equal(small.size, 2);
    assert.ok(small.stats.evictions >= 4, `evictions ${small.stats.evictions}`);
    const big = await curl(`${srv.base}/vnfs/img/initrd.img`, ['-r', '10-19']);
    assert.equal(big.status, 206);
    assert.ok(big.body.equals(initrd.subarray(10, 20)));
    assert.ok(small.stats.bypass >= 1 && small.bytes <= small.maxBytes);
  } finally {
    await srv.close();
  }
});

test('concurrent first requests share one read of the file', async () => {
  const fresh = new FileCache({ settleMs: 0 });
  const srv = await listen(createHttpApp({ routers: [vnfsRouter({ vnfsRoot, backend, events: noop, cache: fresh })] }), 0);
  try {
    const one = () =>
      new Promise<Buffer>((resolve, reject) => {
        http.get(`${srv.base}/vnfs/img/initrd.img`, { agent: false }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve(Buffer.concat(chunks)));
          res.on('error', reject);
        }).on('error', reject);
      });
    const bodies = await Promise.all(Array.from({ length: 20 }, one));
    for (const b of bodies) assert.ok(b.equals(initrd));
    assert.equal(fresh.stats.loads, 1);
  } finally {
    await srv.close();
  }
});
