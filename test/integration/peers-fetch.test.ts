/**
 * Issue 19: VNFS bytes on each server's disk, fetched from a peer and verified. Two real
 * `pxeherd serve` processes on loopback share one database (server B opens server A's SQLite
 * file: the revision records and manifests) but keep artifacts in their own state directories;
 * B starts with none. A plain nginx plays a broken origin (corrupt or truncated copies in the
 * same /vnfs layout). Real curl is the client. What must hold: B serves only bytes that match
 * the manifest's sha256, fetches them from the first origin that has them, rejects an origin
 * serving other bytes, shares one fetch among concurrent requests, refuses and replaces a
 * corrupt local copy, answers 503 naming the problem when no origin has the bytes, never
 * loops between peers, and `vnfs sync` prefetches.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { CLI, pxeherd } from '../helpers/cli.js';
import { downloadFrom } from '../../src/peers/download.js';

const PA = 18971; // server A (has the bytes)
const PB = 18972; // server B (starts empty)
const PN = 18973; // nginx: a broken origin
const PR = 18974; // a flaky origin (cuts the first transfer)
const has = (t: string) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
const skip = !has('mksquashfs') ? 'needs mksquashfs (squashfs-tools)' : !has('curl') ? 'needs curl' : !nginx ? 'needs nginx (nginx-light)' : !fs.existsSync(CLI) ? 'needs npm run build (dist/cli.js)' : false;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phpeers-'));
const procs: ChildProcess[] = [];
let sqlite = '';
let manifest: { artifacts: Record<string, { sha256: string; size: number }> };
const run = promisify(execFile);

const A = { statedir: path.join(dir, 'a'), config: path.join(dir, 'a.yaml') };
const B = { statedir: path.join(dir, 'b'), config: path.join(dir, 'b.yaml') };
const C = { statedir: path.join(dir, 'c'), config: path.join(dir, 'c.yaml') };
const SQ = 'rootfs.squashfs';

function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

async function curl(port: number, p: string): Promise<{ status: number; body: Buffer }> {
  const out = path.join(dir, `curl-${crypto.randomBytes(4).toString('hex')}`);
  const { stdout } = await run('curl', ['-sS', '--max-time', '30', '-o', out, '-w', '%{http_code}', `http://127.0.0.1:${port}${p}`]);
  const body = fs.readFileSync(out);
  fs.rmSync(out);
  return { status: Number(stdout), body };
}

function events(kind: string): { detail: Record<string, unknown>; server_id: string }[] {
  const db = new Database(sqlite, { readonly: true });
  try {
    return db.prepare<[string], { detail: string; server_id: string }>('SELECT detail, server_id FROM events WHERE kind = ? ORDER BY id').all(kind).map((r) => ({ detail: JSON.parse(r.detail) as Record<string, unknown>, server_id: r.server_id }));
  } finally {
    db.close();
  }
}

/** Servers write events in batches (setImmediate): wait until `n` of a kind are in the database, then return them all. */
async function eventsAtLeast(kind: string, n: number, server?: string): Promise<ReturnType<typeof events>> {
  for (let i = 0; ; i++) {
    const got = events(kind).filter((e) => !server || e.server_id === server);
    if (got.length >= n || i >= 50) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function serve(cfg: string): Promise<ChildProcess> {
  const p = spawn(process.execPath, [CLI, 'serve', '--config', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  procs.push(p);
  return p;
}

async function waitHttp(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => http.get(`http://127.0.0.1:${port}/`, (r) => (r.resume(), resolve(true))).on('error', () => resolve(false)));
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

before(async () => {
  if (skip) return;
  fs.chmodSync(dir, 0o755); // nginx's worker reads its root as nobody
  const common = 'tftp: { port: 0 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\naddress: 127.0.0.1\nnodes: { auto_register: false }\n';
  sqlite = path.join(A.statedir, 'pxeherd.db');
  // A has no origin but B (so a request A cannot satisfy would loop A -> B -> A without the peer header).
  fs.writeFileSync(A.config, `statedir: ${A.statedir}\nserver_id: boot-a\nhttp: { port: ${PA} }\nimages: { origins: ["http://127.0.0.1:${PB}"] }\n${common}`);
  // B: the broken nginx first, then A.
  fs.writeFileSync(B.config, `statedir: ${B.statedir}\ndatabase: sqlite:${sqlite}\nserver_id: boot-b\nhttp: { port: ${PB} }\nimages: { origins: ["http://127.0.0.1:${PN}", "http://127.0.0.1:${PA}"], fetch_attempts: 2 }\n${common}`);
  fs.writeFileSync(C.config, `statedir: ${C.statedir}\ndatabase: sqlite:${sqlite}\nserver_id: boot-c\nhttp: { port: 0 }\nimages: { origins: ["http://127.0.0.1:${PR}", "http://127.0.0.1:${PA}"] }\n${common}`);

  // A tiny revision (only a root filesystem: no kernel in the tree), and a second one.
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'etc', 'hostname'), 'node\n');
  fs.writeFileSync(path.join(tree, 'etc', 'blob'), crypto.randomBytes(400_000));
  let r = pxeherd(['vnfs', 'import', 'img', tree, '--json'], { config: A.config });
  assert.equal(r.code, 0, r.stderr);
  manifest = (JSON.parse(r.stdout) as { manifest: typeof manifest }).manifest;
  fs.writeFileSync(path.join(tree, 'etc', 'hostname'), 'node2\n');
  r = pxeherd(['vnfs', 'import', 'img', tree, '--json'], { config: A.config });
  assert.equal(r.code, 0, r.stderr);
  // Revision 2 exists in the database only: its bytes are gone everywhere.
  fs.rmSync(path.join(A.statedir, 'vnfs', 'img', 'r2', SQ));

  // nginx serves a corrupt copy of r1 (same size, one byte changed) and a truncated copy of r2.
  const ng = path.join(dir, 'nginx');
  for (const d of ['logs', 'tmp', 'root/vnfs/img/r1', 'root/vnfs/img/r2']) fs.mkdirSync(path.join(ng, d), { recursive: true });
  const good = fs.readFileSync(path.join(A.statedir, 'vnfs', 'img', 'r1', SQ));
  const bad = Buffer.from(good);
  bad[1000] = bad[1000]! ^ 0xff;
  fs.writeFileSync(path.join(ng, 'root/vnfs/img/r1', SQ), bad);
  fs.writeFileSync(path.join(ng, 'root/vnfs/img/r2', SQ), good.subarray(0, 4096));
  fs.writeFileSync(
    path.join(ng, 'nginx.conf'),
    `daemon off;\nworker_processes 1;\npid ${ng}/nginx.pid;\nerror_log ${ng}/logs/error.log warn;\nevents { worker_connections 64; }\nhttp {\n  access_log off;\n  client_body_temp_path ${ng}/tmp/body;\n  proxy_temp_path ${ng}/tmp/proxy;\n  fastcgi_temp_path ${ng}/tmp/fastcgi;\n  server { listen 127.0.0.1:${PN}; root ${ng}/root; default_type application/octet-stream; }\n}\n`,
  );
  procs.push(spawn(nginx!, ['-c', path.join(ng, 'nginx.conf'), '-p', ng, '-e', `${ng}/logs/error.log`], { stdio: 'ignore' }));
  await serve(A.config);
  await serve(B.config);
  await Promise.all([waitHttp(PA), waitHttp(PB), waitHttp(PN)]);
});

after(() => {
  for (const p of procs) p.kill('SIGTERM');
  if (process.env.PHPEERS_KEEP) console.log(dir);
  else fs.rmSync(dir, { recursive: true, force: true });
});

test('a server lacking an artifact fetches it from the first origin whose bytes match the manifest, rejecting one that serves other bytes', { skip, timeout: 60_000 }, async () => {
  const want = manifest.artifacts[SQ]!;
  assert.equal(fs.existsSync(path.join(B.statedir, 'vnfs', 'img', 'r1', SQ)), false, 'B starts without the bytes');
  const r = await curl(PB, `/vnfs/img/r1/${SQ}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.length, want.size);
  assert.equal(crypto.createHash('sha256').update(r.body).digest('hex'), want.sha256);
  assert.equal(sha256(path.join(B.statedir, 'vnfs', 'img', 'r1', SQ)), want.sha256, 'kept on B\'s disk');
  const rejected = await eventsAtLeast('vnfs.fetch.rejected', 1);
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]!.detail.origin, `http://127.0.0.1:${PN}`);
  assert.match(String(rejected[0]!.detail.reason), /served different bytes: sha256 [0-9a-f]{64}, the manifest says/);
  const fetched = await eventsAtLeast('vnfs.fetch', 1);
  assert.equal(fetched.length, 1);
  assert.deepEqual({ origin: fetched[0]!.detail.origin, bytes: fetched[0]!.detail.bytes, server: fetched[0]!.detail.server, by: fetched[0]!.server_id }, { origin: `http://127.0.0.1:${PA}`, bytes: want.size, server: 'boot-b', by: 'boot-b' });
  assert.equal(typeof fetched[0]!.detail.ms, 'number');
  // The manifest comes from the database, byte for byte.
  const m = await curl(PB, '/vnfs/img/r1/manifest.json');
  assert.equal(m.status, 200);
  assert.equal(m.body.toString(), fs.readFileSync(path.join(A.statedir, 'vnfs', 'img', 'r1', 'manifest.json'), 'utf8'));
  assert.equal(fs.readdirSync(path.join(B.statedir, 'vnfs', 'img', 'r1')).filter((f) => f.startsWith('.fetch-')).length, 0, 'no temporary file left');
});

test('concurrent requests for a missing file share one fetch, and every one gets the verified bytes', { skip, timeout: 60_000 }, async () => {
  const want = manifest.artifacts[SQ]!;
  const f = path.join(B.statedir, 'vnfs', 'img', 'r1', SQ);
  fs.rmSync(f);
  const before = events('vnfs.fetch').length;
  const got = await Promise.all(Array.from({ length: 12 }, () => curl(PB, `/vnfs/img/r1/${SQ}`)));
  for (const r of got) {
    assert.equal(r.status, 200);
    assert.equal(crypto.createHash('sha256').update(r.body).digest('hex'), want.sha256);
  }
  assert.equal((await eventsAtLeast('vnfs.fetch', before + 1)).length, before + 1, 'one fetch for twelve requests');
  await new Promise((r) => setTimeout(r, 300)); // a second fetch's event would be written by now
  assert.equal(events('vnfs.fetch').length, before + 1, 'one fetch for twelve requests');
});

test('a corrupt local copy is refused (event, kept aside) and fetched again from an origin', { skip, timeout: 60_000 }, async () => {
  const want = manifest.artifacts[SQ]!;
  const f = path.join(B.statedir, 'vnfs', 'img', 'r1', SQ);
  const buf = fs.readFileSync(f);
  buf[2000] = buf[2000]! ^ 0x01;
  fs.writeFileSync(f, buf); // same size, new mtime: the verified marker no longer holds
  const r = await curl(PB, `/vnfs/img/r1/${SQ}`);
  assert.equal(r.status, 200);
  assert.equal(crypto.createHash('sha256').update(r.body).digest('hex'), want.sha256);
  const corrupt = await eventsAtLeast('vnfs.corrupt', 1, 'boot-b');
  assert.equal(corrupt.length, 1);
  assert.match(String(corrupt[0]!.detail.reason), /has sha256 [0-9a-f]{12}…, the manifest says/);
  assert.ok(fs.existsSync(path.join(B.statedir, 'vnfs', 'img', 'r1', `.corrupt-${SQ}`)), 'the bad copy is kept aside, unserved');
  assert.equal(sha256(f), want.sha256);
});

test('missing everywhere: 503 naming each origin\'s answer (a truncated copy included), no loop between peers', { skip, timeout: 60_000 }, async () => {
  const b = await curl(PB, `/vnfs/img/r2/${SQ}`);
  assert.equal(b.status, 503);
  const text = b.body.toString();
  assert.match(text, /img r2\/rootfs\.squashfs is not on this server and no origin had it verified/);
  assert.match(text, new RegExp(`127\\.0\\.0\\.1:${PN}: serves 4096 bytes, the manifest says \\d+`), 'the truncated copy is refused from its length');
  assert.match(text, new RegExp(`127\\.0\\.0\\.1:${PA}: HTTP 404`), 'A does not pass a peer\'s request on to its own origins');
  // Asked directly, A tries its origin B, which does not ask A back: an answer, not a loop.
  const a = await curl(PA, `/vnfs/img/r2/${SQ}`);
  assert.equal(a.status, 503);
  assert.match(a.body.toString(), new RegExp(`127\\.0\\.0\\.1:${PB}: HTTP 404`));
  assert.ok((await eventsAtLeast('vnfs.fetch.fail', 2)).length >= 2);
  // A revision the database does not know: 404 with the reason.
  const none = await curl(PB, `/vnfs/img/r9/${SQ}`);
  assert.equal(none.status, 404);
  assert.match(none.body.toString(), /VNFS "img" has no revision 9 in the database/);
});

test('a corrupt file on a server without origins is refused with 503 naming the problem', { skip, timeout: 60_000 }, async () => {
  // C has no origins configured here: its own statedir, a corrupt copy put in by hand.
  const cfg = path.join(dir, 'c0.yaml');
  const sd = path.join(dir, 'c0');
  fs.writeFileSync(cfg, `statedir: ${sd}\ndatabase: sqlite:${sqlite}\nserver_id: boot-c0\nhttp: { port: ${PR} }\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\naddress: 127.0.0.1\nnodes: { auto_register: false }\n`);
  const rdir = path.join(sd, 'vnfs', 'img', 'r1');
  fs.mkdirSync(rdir, { recursive: true });
  fs.writeFileSync(path.join(rdir, SQ), Buffer.alloc(100, 7));
  const p = await serve(cfg);
  await waitHttp(PR);
  const r = await curl(PR, `/vnfs/img/r1/${SQ}`);
  p.kill('SIGTERM');
  await new Promise((res) => p.once('exit', res));
  assert.equal(r.status, 503);
  assert.match(r.body.toString(), new RegExp(`img r1/rootfs\\.squashfs on this server is 100 bytes, the manifest says ${manifest.artifacts[SQ]!.size} and no images\\.origins are configured`));
});

test('pxeherd vnfs sync prefetches current and pinned revisions, resuming a transfer an origin cuts; exit 1 when one cannot be had', { skip, timeout: 60_000 }, async () => {
  const good = fs.readFileSync(path.join(A.statedir, 'vnfs', 'img', 'r1', SQ));
  // A flaky origin: the first transfer stops halfway (connection reset), a Range request then gets the rest.
  let cuts = 0;
  const ranges: string[] = [];
  const flaky = http.createServer((req, res) => {
    if (req.url !== `/vnfs/img/r1/${SQ}`) return res.writeHead(404).end();
    const range = req.headers.range;
    if (!range) {
      cuts++;
      res.writeHead(200, { 'content-length': good.length });
      res.write(good.subarray(0, good.length >> 1), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    ranges.push(range);
    const from = Number(/^bytes=(\d+)-$/.exec(range)![1]);
    res.writeHead(206, { 'content-length': good.length - from, 'content-range': `bytes ${from}-${good.length - 1}/${good.length}` });
    res.end(good.subarray(from));
  });
  await new Promise<void>((r) => flaky.listen(PR, '127.0.0.1', r));
  try {
    // Pin r1 on a node, so a plain `vnfs sync` wants r1 (pinned) and r2 (current).
    assert.equal(pxeherd(['node', 'add', 'aa:bb:cc:00:19:01', 'n1', '--vnfs', 'img@1'], { config: C.config }).code, 0);
    // Not spawnSync: the flaky origin lives in this process and must keep answering.
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [CLI, 'vnfs', 'sync', '--json', '--config', C.config], (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr })),
    );
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout) as { server: string; failed: number; files: { rev: number; file: string; status: string; origin: string | null; error: string | null }[] };
    assert.equal(out.server, 'boot-c');
    const by = (rev: number, file: string) => out.files.find((f) => f.rev === rev && f.file === file)!;
    assert.deepEqual([by(1, SQ).status, by(1, SQ).origin], ['fetched', `http://127.0.0.1:${PR}`]);
    assert.equal(cuts, 1);
    assert.deepEqual(ranges, [`bytes=${good.length >> 1}-`], 'resumed where the cut transfer stopped');
    assert.equal(sha256(path.join(C.statedir, 'vnfs', 'img', 'r1', SQ)), manifest.artifacts[SQ]!.sha256);
    assert.equal(by(1, 'manifest.json').status, 'written');
    assert.equal(by(2, SQ).status, 'failed');
    assert.equal(out.failed, 1);
    assert.match(r.stderr, /img r1\/rootfs\.squashfs: fetched from http:\/\/127\.0\.0\.1:18974/);
    // Again, for r1 only: nothing to fetch, the marker vouches for the file.
    const again = pxeherd(['vnfs', 'sync', 'img@1', '--json'], { config: C.config });
    assert.equal(again.code, 0, again.stderr);
    assert.equal((JSON.parse(again.stdout) as typeof out).files.find((f) => f.file === SQ)!.status, 'present');
    // Bad usage: exit 2 with the reason.
    const bad = pxeherd(['vnfs', 'sync', 'img@x'], { config: C.config });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"img@x" is not NAME or NAME@REV/);
  } finally {
    flaky.close();
  }
});

test('a download sends no more than the manifest says: an origin sending extra bytes is refused', { skip, timeout: 30_000 }, async () => {
  const srv = http.createServer((_req, res) => {
    res.writeHead(200); // no length: chunked, longer than the manifest's size
    res.end(Buffer.alloc(5000, 1));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const port = (srv.address() as { port: number }).port;
    const tmp = path.join(dir, 'extra.part');
    const r = await downloadFrom(`http://127.0.0.1:${port}/x`, tmp, { sha256: '0'.repeat(64), size: 1000 }, { attempts: 2, idleTimeoutMs: 5000, backoffMs: () => 0 });
    assert.deepEqual(r, { ok: false, kind: 'mismatch', reason: 'sent more than the manifest\'s 1000 bytes' });
  } finally {
    srv.close();
  }
});

test('a disk that fills up during a fetch: 503 saying so, no other origin tried, nothing half-written left', { skip: skip || (process.getuid?.() !== 0 ? 'needs root (mounts a small tmpfs)' : false), timeout: 30_000 }, async (t) => {
  const { RevisionArtifacts } = await import('../../src/peers/artifacts.js');
  const mnt = path.join(dir, 'full');
  fs.mkdirSync(mnt);
  spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mnt]);
  t.after(() => spawnSync('umount', ['-l', mnt]));
  const kinds: string[] = [];
  const db = new Database(sqlite, { readonly: true });
  const text = db.prepare<[], { manifest: string }>("SELECT manifest FROM vnfs_revisions WHERE vnfs = 'img' AND rev = 1").get()!.manifest;
  db.close();
  const a = new RevisionArtifacts({ vnfsRoot: mnt, manifestOf: () => text, origins: [`http://127.0.0.1:${PA}`, `http://127.0.0.1:${PN}`], serverId: 'small', events: { record: (e) => kinds.push(e.kind) } });
  const r = await a.ensure({ vnfs: 'img', rev: 1, file: SQ });
  assert.equal(r.ok, false);
  assert.equal((r as { status: number }).status, 503);
  assert.match((r as { reason: string }).reason, /is not on this server and this server cannot store it: cannot write .*ENOSPC.* \(free space under /);
  assert.deepEqual(kinds, ['vnfs.fetch.fail'], 'the second origin was not tried');
  assert.deepEqual(fs.readdirSync(path.join(mnt, 'img', 'r1')), [], 'the temporary file is removed');
});

test('over TFTP (GRUB under Secure Boot loads kernels from vnfs/) the same rule holds: fetched and verified first, else refused with the reason', { skip, timeout: 60_000 }, async (t) => {
  const PT = 18975;
  const sd = path.join(dir, 'd');
  const cfg = path.join(dir, 'd.yaml');
  fs.writeFileSync(cfg, `statedir: ${sd}\ndatabase: sqlite:${sqlite}\nserver_id: boot-d\nhttp: { port: 0 }\ntftp: { port: ${PT} }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\naddress: 127.0.0.1\nnodes: { auto_register: false }\nimages: { origins: ["http://127.0.0.1:${PA}"] }\n`);
  const p = spawn(process.execPath, [CLI, 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => p.kill('SIGTERM'));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (/tftp listening on/.test(out)) resolve();
    });
    p.once('exit', () => reject(new Error(`serve exited: ${out}`)));
  });
  p.stdout!.resume();
  const out = path.join(dir, 'tftp-got');
  await run('curl', ['-sS', '--max-time', '30', '-o', out, `tftp://127.0.0.1:${PT}/vnfs/img/r1/${SQ}`]);
  assert.equal(sha256(out), manifest.artifacts[SQ]!.sha256);
  assert.equal(sha256(path.join(sd, 'vnfs', 'img', 'r1', SQ)), manifest.artifacts[SQ]!.sha256, 'fetched onto this server\'s disk');
  assert.equal((await eventsAtLeast('vnfs.fetch', 1, 'boot-d')).length, 1);
  const missing = await run('curl', ['-sS', '--max-time', '30', '-o', out, `tftp://127.0.0.1:${PT}/vnfs/img/r2/${SQ}`]).then(
    () => ({ code: 0, stderr: '' }),
    (e: { code: number; stderr: string }) => e,
  );
  assert.equal(missing.code, 68, `curl: TFTP file not found (${missing.stderr.trim()})`);
  const refused = (await eventsAtLeast('tftp.error', 1, 'boot-d')).map((e) => String(e.detail.error));
  assert.ok(refused.some((m) => /img r2\/rootfs\.squashfs is not on this server and no origin had it verified: http:\/\/127\.0\.0\.1:18971: HTTP 404/.test(m)), refused.join('\n'));
});
