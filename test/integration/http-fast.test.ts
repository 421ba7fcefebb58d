import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Router } from 'express';
import { createHttpApp } from '../../src/http/app.js';
import { vnfsRouter } from '../../src/http/vnfs.js';
import { FileCache, SendGate, expressContentType } from '../../src/http/files.js';
import type { BootEvent } from '../../src/nodes/types.js';
import { curl, listen } from './http-curl.js';

/**
 * The raw fast path for /vnfs files (ahead of express): it takes plain GET/HEADs of cacheable
 * files, answers them exactly as the express route does, and leaves everything else to express.
 * A router mounted before vnfsRouter sees every request express handles, so it tells which
 * path answered.
 */
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-http-fast-'));
const img = path.join(dir, 'vnfs', 'img');
fs.mkdirSync(img, { recursive: true });
const kernel = crypto.randomBytes(300 << 10);
fs.writeFileSync(path.join(img, 'vmlinuz'), kernel);
fs.writeFileSync(path.join(img, 'notes.txt'), 'plain text\n');
fs.writeFileSync(path.join(img, 'conf.json'), '{}\n');
const old = new Date(Date.now() - 60_000);
for (const f of ['vmlinuz', 'notes.txt', 'conf.json']) fs.utimesSync(path.join(img, f), old, old);
const MAC = '52:54:00:12:34:56';
const backend = { vnfs: () => ({ kernel: 'vmlinuz', initrd: 'initrd.img' }), nodeName: (m: string) => (m === MAC ? 'n1' : undefined) };

const seenByExpress: string[] = [];
const spy = Router().use((req, _res, next) => {
  seenByExpress.push(req.url);
  next();
});
const events: BootEvent[] = [];
const gate = new SendGate(2, 1000);
const srv = await listen(createHttpApp({ routers: [spy, vnfsRouter({ vnfsRoot: path.join(dir, 'vnfs'), backend, events: { record: (e) => void events.push(e) }, cache: new FileCache({ settleMs: 0 }), gate })] }), 0);
after(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const HEADERS = ['status', 'content-length', 'content-type', 'etag', 'last-modified', 'accept-ranges', 'cache-control', 'content-range', 'x-powered-by'];
const view = (r: { status: number; headers: Record<string, string> }) => Object.fromEntries(HEADERS.map((h) => [h, h === 'status' ? String(r.status) : (r.headers[h] ?? null)]));

test('the fast path answers plain GET/HEAD of /vnfs files, first request (cache miss, concurrent) included, exactly as express does', async () => {
  // Concurrent first requests: one read, all answered by the fast path.
  seenByExpress.length = 0;
  const first = await Promise.all([1, 2, 3, 4].map(() => curl(`${srv.base}/vnfs/img/vmlinuz?mac=${MAC}`)));
  for (const r of first) assert.ok(r.status === 200 && r.body.equals(kernel), `first requests: status ${r.status}, ${r.body.length} of ${kernel.length} bytes`);
  assert.deepEqual(seenByExpress, [], 'first requests answered by the fast path');
  for (const [file, args] of [['vmlinuz', []], ['vmlinuz', ['-I']], ['notes.txt', []], ['conf.json', []], ['conf.json', ['-I']]] as [string, string[]][]) {
    seenByExpress.length = 0;
    const fast = await curl(`${srv.base}/vnfs/img/${file}?mac=${MAC}`, args);
    assert.deepEqual(seenByExpress, [], `${file} ${args.join(' ')}: answered by the fast path`);
    // An extra query key is not the fast path's: express answers, from the same cached copy.
    const slow = await curl(`${srv.base}/vnfs/img/${file}?mac=${MAC}&x=1`, args);
    assert.equal(seenByExpress.length, 1, `${file}: express answered the second request`);
    assert.deepEqual(view(fast), view(slow), `${file} ${args.join(' ')}`);
    // (With -I curl prints the headers as the body: Date may differ, the headers were compared above.)
    if (!args.includes('-I')) assert.ok(fast.body.equals(slow.body), `${file} ${args.join(' ')}: fast ${fast.body.length} bytes, express ${slow.body.length} bytes`);
  }
  assert.equal(expressContentType('x/notes.txt'), 'text/plain; charset=utf-8');
  assert.equal(expressContentType('vmlinuz'), 'application/octet-stream');
  // The events name the node and the kind as the express route's do.
  const k = events.filter((e) => e.kind === 'http.kernel');
  assert.ok(k.length >= 6);
  for (const e of k) assert.equal(e.node, 'n1');
  const d = k.map((e) => e.detail as Record<string, unknown>);
  assert.ok(d.every((x) => x.vnfs === 'img' && x.file === 'vmlinuz' && x.status === 200 && x.range === null && x.aborted === false));
  assert.ok(d.some((x) => x.method === 'GET' && x.bytes as number > kernel.length));
  assert.ok(d.some((x) => x.method === 'HEAD'));
  assert.ok(gate.stats.admitted >= 5, 'large GETs went through the admission gate');
});

test('what the fast path does not take reaches express: Range, conditionals, escapes, refusals, other methods', async () => {
  await curl(`${srv.base}/vnfs/img/vmlinuz`); // cached
  const cases: [string, string[], number][] = [
    ['/vnfs/img/vmlinuz', ['-r', '0-9'], 206],
    ['/vnfs/img/vmlinuz', ['-H', 'If-None-Match: *'], 304],
    ['/vnfs/img/vmlinuz', ['-H', 'If-Match: "nope"'], 412],
    ['/vnfs/img/vmlin%75z', [], 200],
    ['/vnfs/img/../img/vmlinuz', [], 403],
    ['/vnfs/img/.hidden', [], 403],
    ['/vnfs/img/missing', [], 404],
    ['/vnfs/img', [], 404],
    ['/vnfs/img/vmlinuz?mac=a&mac=b', [], 200],
    ['/vnfs/img/vmlinuz', ['-X', 'POST'], 404],
  ];
  for (const [p, args, status] of cases) {
    seenByExpress.length = 0;
    const r = await curl(srv.base + p, args);
    assert.equal(r.status, status, `${p} ${args.join(' ')}`);
    assert.equal(seenByExpress.length, 1, `${p} ${args.join(' ')}: express answered`);
  }
});
