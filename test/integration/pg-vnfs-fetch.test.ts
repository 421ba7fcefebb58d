/**
 * Issue 19, kernel+initrd VNFS: its files stay on each server's disk, content-addressed by the
 * sha256 `vnfs add` records in the database (migration 12). Two real `pxeherd serve` processes
 * share one real PostgreSQL; `vnfs add` runs with the CLI at server A's state directory, so only
 * A's disk has the files. B (images.origins: a broken origin first, then A) must give its node
 * the kernel and initrd over HTTP and TFTP with A's exact bytes, refusing the broken origin's
 * copy; a file no origin has intact is refused (503) and nothing lands on B's disk. A VNFS
 * recorded without hashes (added before migration 12) is served by the server holding its files,
 * which records the hash; B refuses it until then, then fetches and verifies it.
 * Real parts: PostgreSQL (test/lab/postgres.ts), the built CLI, curl (HTTP and TFTP), and a
 * plain node:http server playing an origin that serves other bytes under the same names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { CLI, pxeherd } from '../helpers/cli.js';
import { tmpDir, waitFor } from '../lab/lab.js';
import { postgresUnavailable, startPostgres } from '../lab/postgres.js';
import { freePort } from '../lab/procs.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { PostgresBackend } from '../../src/store/pg/backend.js';

const has = (t: string) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
const skip = postgresUnavailable() ?? (!has('curl') ? 'needs curl' : !fs.existsSync(CLI) ? 'needs npm run build (dist/cli.js)' : undefined);
const run = promisify(execFile);

/** The CLI with this test's configuration only (not the caller's database or config). */
const NO_ENV = { PXEHERD_DATABASE: undefined, PXEHERD_CONFIG: undefined };
const cli = (args: string[], config: string) => pxeherd(args, { config, env: NO_ENV });

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

async function curl(url: string): Promise<{ status: number; body: Buffer }> {
  const out = `${tmpDir('phvf-curl-')}/body`;
  try {
    const { stdout } = await run('curl', ['-sS', '--max-time', '60', '-o', out, '-w', '%{http_code}', url]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '0' }));
    return { status: Number(stdout), body: fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0) };
  } finally {
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  }
}

function startServe(config: string, log: string, procs: ChildProcess[]): ChildProcess {
  const out = fs.openSync(log, 'a');
  const p = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', out, out], env: { ...process.env, ...NO_ENV } });
  fs.closeSync(out);
  procs.push(p);
  return p;
}

test('a kernel+initrd VNFS added at one server is fetched by another from images.origins, verified against the sha256 in PostgreSQL, and served with identical bytes; a corrupt origin is refused', { skip, timeout: 300_000 }, async (t) => {
  const pg = await startPostgres();
  const dir = tmpDir('phpgvf-');
  const procs: ChildProcess[] = [];
  let bad: http.Server | undefined;
  const sql = connectPostgres(pg.url(), { max: 1 });
  t.after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    bad?.close();
    await sql.end();
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await migratePostgres(sql);

  // The broken origin: the same /vnfs/NAME/FILE layout, other bytes (one bit flipped, same length).
  const badRoot = path.join(dir, 'bad');
  bad = http.createServer((req, res) => {
    const f = path.join(badRoot, decodeURIComponent((req.url ?? '').split('?')[0]!));
    if (!f.startsWith(badRoot + '/') || !fs.existsSync(f)) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': fs.statSync(f).size }).end(fs.readFileSync(f));
  });
  await new Promise<void>((r) => bad!.listen(0, '127.0.0.1', r));
  const badUrl = `http://127.0.0.1:${(bad.address() as { port: number }).port}`;

  const [httpA, httpB, tftpB] = [await freePort(), await freePort(), await freePort()];
  const common = `database: "${pg.url()}"\naddress: 127.0.0.1\ndhcp: { mode: off }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\nsecurity: { node_tokens: false }\n`;
  const A = path.join(dir, 'a.yaml');
  const B = path.join(dir, 'b.yaml');
  fs.writeFileSync(A, `statedir: ${path.join(dir, 'a')}\nserver_id: boot-a\nhttp: { port: ${httpA} }\ntftp: { port: 0 }\n${common}`);
  fs.writeFileSync(B, `statedir: ${path.join(dir, 'b')}\nserver_id: boot-b\nhttp: { port: ${httpB} }\ntftp: { port: ${tftpB} }\nimages: { origins: ["${badUrl}", "http://127.0.0.1:${httpA}"], fetch_attempts: 1 }\n${common}`);

  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  const files: Record<string, Buffer> = {};
  const put = (name: string, bytes: Buffer) => {
    files[name] = bytes;
    fs.writeFileSync(path.join(src, name), bytes);
  };
  put('vmlinuz-6.1', crypto.randomBytes(700_000));
  put('initrd-6.1.img', crypto.randomBytes(3_000_000));
  put('vmlinuz-tftp', crypto.randomBytes(200_000));
  put('initrd-tftp.img', crypto.randomBytes(100_000));
  put('vmlinuz-lone', crypto.randomBytes(50_000));
  put('initrd-lone.img', crypto.randomBytes(50_000));
  const corrupt = (vnfs: string, name: string) => {
    const b = Buffer.from(files[name]!);
    b[1000] = b[1000]! ^ 0x40;
    fs.mkdirSync(path.join(badRoot, 'vnfs', vnfs), { recursive: true });
    fs.writeFileSync(path.join(badRoot, 'vnfs', vnfs, name), b);
  };

  // `vnfs add` at A: the files on A's disk only, their sha256 and size in PostgreSQL.
  const add = (name: string, k: string, i: string) => cli(['vnfs', 'add', name, '--kernel', path.join(src, k), '--initrd', path.join(src, i), '--cmdline', 'quiet', '--json'], A);
  for (const [name, k, i] of [
    ['plain', 'vmlinuz-6.1', 'initrd-6.1.img'],
    ['viatftp', 'vmlinuz-tftp', 'initrd-tftp.img'],
    ['lone', 'vmlinuz-lone', 'initrd-lone.img'],
  ] as const) {
    const r = add(name, k, i);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '', 'no warning: the other servers fetch these files');
  }
  const [row] = await sql`SELECT kernel, kernel_sha256, kernel_size, initrd_sha256, initrd_size FROM vnfs WHERE name = 'plain'`;
  assert.deepEqual({ ...row }, { kernel: 'vmlinuz-6.1', kernel_sha256: sha(files['vmlinuz-6.1']!), kernel_size: 700_000, initrd_sha256: sha(files['initrd-6.1.img']!), initrd_size: 3_000_000 });
  assert.equal(fs.existsSync(path.join(dir, 'b', 'vnfs', 'plain')), false);
  corrupt('plain', 'vmlinuz-6.1');
  corrupt('plain', 'initrd-6.1.img');
  corrupt('lone', 'vmlinuz-lone');
  // "lone": its kernel is on no server intact (A lost it).
  fs.rmSync(path.join(dir, 'a', 'vnfs', 'lone', 'vmlinuz-lone'));

  const mac = '52:54:00:19:12:01';
  const n = cli(['node', 'add', mac, 'n1', '--vnfs', 'plain'], B);
  assert.equal(n.code, 0, n.stderr);

  const logA = path.join(dir, 'a.log');
  const logB = path.join(dir, 'b.log');
  const pa = startServe(A, logA, procs);
  const pb = startServe(B, logB, procs);
  for (const [p, log] of [
    [pa, logA],
    [pb, logB],
  ] as const) {
    await waitFor(`${log} to serve HTTP`, 60_000, () => {
      if (p.exitCode !== null) throw new Error(`serve exited: ${fs.readFileSync(log, 'utf8').slice(-2000)}`);
      return /http listening/.test(fs.readFileSync(log, 'utf8'));
    });
  }

  // The node of B boots: its script names B's /vnfs URLs; B fetches, verifies and serves A's bytes.
  const script = await curl(`http://127.0.0.1:${httpB}/boot/${mac.replaceAll(':', '-')}.ipxe`);
  assert.equal(script.status, 200, script.body.toString());
  const kernelUrl = /^kernel (\S+)/m.exec(script.body.toString())?.[1];
  assert.ok(kernelUrl?.startsWith(`http://127.0.0.1:${httpB}/vnfs/plain/vmlinuz-6.1`), script.body.toString());
  const kernel = await curl(kernelUrl);
  assert.equal(kernel.status, 200, kernel.body.toString());
  assert.ok(kernel.body.equals(files['vmlinuz-6.1']!), "the node gets A's kernel, byte for byte");
  // Concurrent requests for the initrd share one fetch and all get the same bytes.
  const initrds = await Promise.all([1, 2, 3, 4].map(() => curl(`http://127.0.0.1:${httpB}/vnfs/plain/initrd-6.1.img?mac=${mac}`)));
  for (const r of initrds) {
    assert.equal(r.status, 200, r.body.toString());
    assert.ok(r.body.equals(files['initrd-6.1.img']!), 'each concurrent request gets the initrd');
  }
  assert.ok(fs.readFileSync(path.join(dir, 'b', 'vnfs', 'plain', 'initrd-6.1.img')).equals(files['initrd-6.1.img']!), "B's disk holds the verified bytes");

  const events = async (kind: string) =>
    (await sql<{ detail: string; server_id: string }[]>`SELECT detail, server_id FROM events WHERE kind = ${kind} ORDER BY id`).map((e) => ({ ...(JSON.parse(e.detail) as Record<string, unknown>), server_id: e.server_id }));
  const fetched = await waitFor('the fetch events in PostgreSQL', 30_000, async () => {
    const f = (await events('vnfs.fetch')).filter((e) => e.vnfs === 'plain');
    return f.length >= 2 && f;
  });
  assert.deepEqual(
    fetched.map((e) => [e.server_id, e.file, e.origin, e.sha256]).sort(),
    [
      ['boot-b', 'initrd-6.1.img', `http://127.0.0.1:${httpA}`, sha(files['initrd-6.1.img']!)],
      ['boot-b', 'vmlinuz-6.1', `http://127.0.0.1:${httpA}`, sha(files['vmlinuz-6.1']!)],
    ],
    'one fetch per file (the four initrd requests shared one), from A',
  );
  const rejected = await waitFor('the rejections', 30_000, async () => {
    const r = (await events('vnfs.fetch.rejected')).filter((e) => e.vnfs === 'plain');
    return r.length >= 2 && r;
  });
  assert.deepEqual(rejected.map((e) => [e.file, e.origin]).sort(), [
    ['initrd-6.1.img', badUrl],
    ['vmlinuz-6.1', badUrl],
  ]);
  assert.match(String(rejected[0]!.reason), /served different bytes: sha256 [0-9a-f]{64}, the manifest says/);

  // Over TFTP too (GRUB under Secure Boot loads kernels from vnfs/): fetched and verified first.
  const tk = await curl(`tftp://127.0.0.1:${tftpB}/vnfs/viatftp/vmlinuz-tftp`);
  assert.ok(tk.body.equals(files['vmlinuz-tftp']!), `TFTP from B gives A's kernel (curl status ${tk.status}, ${tk.body.length} bytes)`);

  // No origin has "lone"'s kernel intact: refused, the reason names each origin, nothing on B's disk.
  const lone = await curl(`http://127.0.0.1:${httpB}/vnfs/lone/vmlinuz-lone`);
  assert.equal(lone.status, 503);
  assert.match(lone.body.toString(), /lone\/vmlinuz-lone is not on this server and no origin had it verified: .*served different bytes.*HTTP 404/);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'b', 'vnfs', 'lone')).filter((f) => !f.startsWith('.')), []);
  assert.equal(fs.readdirSync(path.join(dir, 'b', 'vnfs', 'lone')).filter((f) => f.startsWith('.fetch-')).length, 0, 'no partial download left behind');

  // A VNFS recorded before migration 12 (no hashes), its files on A only.
  await sql`INSERT INTO vnfs (name, kernel, initrd, cmdline, created_at) VALUES ('legacy', 'vmlinuz-l', 'initrd-l.img', '', 0)`;
  const legacyK = crypto.randomBytes(120_000);
  fs.mkdirSync(path.join(dir, 'a', 'vnfs', 'legacy'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'a', 'vnfs', 'legacy', 'vmlinuz-l'), legacyK);
  const refused = await waitFor("B's replica to know VNFS legacy", 30_000, async () => {
    const r = await curl(`http://127.0.0.1:${httpB}/vnfs/legacy/vmlinuz-l`);
    return r.status === 503 && r;
  });
  assert.match(refused.body.toString(), /records no sha256 for it .* run `pxeherd vnfs sync legacy` on the server holding its files/);
  await waitFor('the vnfs.unverified event of B', 30_000, async () => (await events('vnfs.unverified')).some((e) => e.vnfs === 'legacy' && e.server_id === 'boot-b'));
  // A holds it: hashes it, records the hash, serves it.
  const atA = await curl(`http://127.0.0.1:${httpA}/vnfs/legacy/vmlinuz-l`);
  assert.equal(atA.status, 200);
  assert.ok(atA.body.equals(legacyK), 'A serves the legacy kernel');
  await waitFor('the recorded hash in PostgreSQL', 30_000, async () => (await sql`SELECT kernel_sha256 FROM vnfs WHERE name = 'legacy'`)[0]!.kernel_sha256 === sha(legacyK));
  const atB = await waitFor('B to fetch the legacy kernel once the hash is recorded', 30_000, async () => {
    const r = await curl(`http://127.0.0.1:${httpB}/vnfs/legacy/vmlinuz-l`);
    return r.status === 200 && r;
  });
  assert.ok(atB.body.equals(legacyK), 'B serves the legacy kernel');
});

test('vnfs sync at a server fetches and verifies kernel+initrd VNFS files; at the server holding files without a hash it records it', { skip, timeout: 300_000 }, async (t) => {
  const pg = await startPostgres();
  const dir = tmpDir('phpgvfs-');
  const procs: ChildProcess[] = [];
  const sql = connectPostgres(pg.url(), { max: 1 });
  t.after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await sql.end();
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await migratePostgres(sql);
  const httpA = await freePort();
  const common = `database: "${pg.url()}"\naddress: 127.0.0.1\ndhcp: { mode: off }\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\nsecurity: { node_tokens: false }\n`;
  const A = path.join(dir, 'a.yaml');
  const B = path.join(dir, 'b.yaml');
  fs.writeFileSync(A, `statedir: ${path.join(dir, 'a')}\nserver_id: boot-a\nhttp: { port: ${httpA} }\n${common}`);
  fs.writeFileSync(B, `statedir: ${path.join(dir, 'b')}\nserver_id: boot-b\nhttp: { port: 0 }\nimages: { origins: ["http://127.0.0.1:${httpA}"] }\n${common}`);
  const k = crypto.randomBytes(300_000);
  const i = crypto.randomBytes(400_000);
  fs.writeFileSync(path.join(dir, 'vmlinuz'), k);
  fs.writeFileSync(path.join(dir, 'initrd.img'), i);
  assert.equal(cli(['vnfs', 'add', 'plain', '--kernel', path.join(dir, 'vmlinuz'), '--initrd', path.join(dir, 'initrd.img')], A).code, 0);
  // A VNFS from before migration 12, files at A.
  await sql`INSERT INTO vnfs (name, kernel, initrd, cmdline, created_at) VALUES ('legacy', 'vmlinuz', 'initrd.img', '', 0)`;
  fs.mkdirSync(path.join(dir, 'a', 'vnfs', 'legacy'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'a', 'vnfs', 'legacy', 'vmlinuz'), k);
  fs.writeFileSync(path.join(dir, 'a', 'vnfs', 'legacy', 'initrd.img'), i);

  const log = path.join(dir, 'a.log');
  const pa = startServe(A, log, procs);
  await waitFor('A to serve HTTP', 60_000, () => {
    if (pa.exitCode !== null) throw new Error(`serve A exited: ${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    return /http listening/.test(fs.readFileSync(log, 'utf8'));
  });

  // At B, before the legacy hashes exist: plain fetched, legacy refused (exit 1, reason per file).
  const first = cli(['vnfs', 'sync', '--json'], B);
  assert.equal(first.code, 1, first.stderr);
  type Res = { vnfs: string; rev: number | null; file: string; status: string; error: string | null };
  const r1 = (JSON.parse(first.stdout) as { files: Res[]; failed: number }).files;
  assert.deepEqual(r1.map((r) => [r.vnfs, r.rev, r.file, r.status]).sort(), [
    ['legacy', null, 'initrd.img', 'failed'],
    ['legacy', null, 'vmlinuz', 'failed'],
    ['plain', null, 'initrd.img', 'fetched'],
    ['plain', null, 'vmlinuz', 'fetched'],
  ]);
  assert.match(r1.find((r) => r.vnfs === 'legacy')!.error!, /records no sha256/);
  assert.ok(fs.readFileSync(path.join(dir, 'b', 'vnfs', 'plain', 'initrd.img')).equals(i));

  // At A (holding the legacy files): sync records their hashes in PostgreSQL.
  const atA = cli(['vnfs', 'sync', 'legacy', '--json'], A);
  assert.equal(atA.code, 0, atA.stderr);
  assert.deepEqual((JSON.parse(atA.stdout) as { files: Res[] }).files.map((r) => [r.file, r.status]), [
    ['vmlinuz', 'recorded'],
    ['initrd.img', 'recorded'],
  ]);
  const [row] = await sql`SELECT kernel_sha256, kernel_size, initrd_sha256 FROM vnfs WHERE name = 'legacy'`;
  assert.deepEqual({ ...row }, { kernel_sha256: sha(k), kernel_size: k.length, initrd_sha256: sha(i) });

  // B again: everything verified now (plain already here, legacy fetched).
  const again = cli(['vnfs', 'sync', '--json'], B);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(
    (JSON.parse(again.stdout) as { files: Res[] }).files.map((r) => [r.vnfs, r.file, r.status]).sort(),
    [
      ['legacy', 'initrd.img', 'fetched'],
      ['legacy', 'vmlinuz', 'fetched'],
      ['plain', 'initrd.img', 'present'],
      ['plain', 'vmlinuz', 'present'],
    ],
  );
});

test('SQLite, one server: vnfs add records the hashes and the server serves the files as before', { skip: !has('curl') ? 'needs curl' : !fs.existsSync(CLI) ? 'needs npm run build (dist/cli.js)' : false, timeout: 120_000 }, async (t) => {
  const dir = tmpDir('phvfsq-');
  const procs: ChildProcess[] = [];
  t.after(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const port = await freePort();
  const cfg = path.join(dir, 'c.yaml');
  fs.writeFileSync(cfg, `statedir: ${path.join(dir, 's')}\naddress: 127.0.0.1\ndhcp: { mode: off }\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\nhttp: { port: ${port} }\nsecurity: { node_tokens: false }\n`);
  const k = crypto.randomBytes(250_000);
  fs.writeFileSync(path.join(dir, 'vmlinuz'), k);
  fs.writeFileSync(path.join(dir, 'initrd.img'), 'initrd');
  const add = cli(['vnfs', 'add', 'one', '--kernel', path.join(dir, 'vmlinuz'), '--initrd', path.join(dir, 'initrd.img')], cfg);
  assert.equal(add.code, 0, add.stderr);
  assert.equal(add.stderr, '');
  const db = new Database(path.join(dir, 's', 'pxeherd.db'), { readonly: true });
  assert.deepEqual({ ...db.prepare("SELECT kernel_sha256, kernel_size FROM vnfs WHERE name = 'one'").get() as object }, { kernel_sha256: sha(k), kernel_size: k.length });
  db.close();
  const log = path.join(dir, 's.log');
  const p = startServe(cfg, log, procs);
  await waitFor('serve', 60_000, () => {
    if (p.exitCode !== null) throw new Error(`serve exited: ${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    return /http listening/.test(fs.readFileSync(log, 'utf8'));
  });
  for (let n = 0; n < 3; n++) {
    const r = await curl(`http://127.0.0.1:${port}/vnfs/one/vmlinuz`);
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(k));
  }
  // Another file of the VNFS directory is no kernel or initrd: served as it is, as before.
  fs.writeFileSync(path.join(dir, 's', 'vnfs', 'one', 'notes.txt'), 'hello');
  assert.equal((await curl(`http://127.0.0.1:${port}/vnfs/one/notes.txt`)).body.toString(), 'hello');
});

test("on PostgreSQL a server's first-use hash record never overwrites a hash recorded meanwhile; an admin's write does", { skip, timeout: 120_000 }, async (t) => {
  const pg = await startPostgres();
  const be = PostgresBackend.connect(pg.url(), 'boot-x', { max: 1 });
  t.after(async () => {
    await be.close();
    await pg.stop();
  });
  await migratePostgres(be.sql);
  await be.sql`INSERT INTO vnfs (name, kernel, initrd, cmdline, created_at) VALUES ('v', 'vmlinuz', 'initrd.img', '', 0)`;
  const row = { name: 'v', kernel: 'vmlinuz', initrd: 'initrd.img', cmdline: '', created_at: 0, current_rev: null, arch: 'x86_64', kernel_sha256: null, kernel_size: null, initrd_sha256: null, initrd_size: null };
  const fill = (sha256: string) => ({ table: 'vnfs', pk: ['name'], old: row, new: { ...row, kernel_sha256: sha256, kernel_size: 5 } });
  const kernelSha = async () => (await be.sql`SELECT kernel_sha256 FROM vnfs WHERE name = 'v'`)[0]!.kernel_sha256 as string | null;
  // A server whose replica still says NULL records its hash: written.
  assert.equal((await be.applyRowChanges([fill('a'.repeat(64))], { strict: false })).written, 1);
  assert.equal(await kernelSha(), 'a'.repeat(64));
  // Another server, whose replica has not seen it yet (a `vnfs add` elsewhere, say): dropped.
  const r = await be.applyRowChanges([fill('b'.repeat(64))], { strict: false });
  assert.deepEqual([r.written, r.dropped], [0, 1]);
  assert.equal(await kernelSha(), 'a'.repeat(64), 'the hash recorded first stays');
  // An admin's command (strict) writes what it recorded.
  assert.equal((await be.applyRowChanges([fill('c'.repeat(64))], { strict: true })).written, 1);
  assert.equal(await kernelSha(), 'c'.repeat(64));
});

test('db copy carries the recorded hashes from SQLite to PostgreSQL', { skip, timeout: 120_000 }, async (t) => {
  const pg = await startPostgres();
  const dir = tmpDir('phvfcopy-');
  const sql = connectPostgres(pg.url(), { max: 1 });
  t.after(async () => {
    await sql.end();
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const cfg = path.join(dir, 'c.yaml');
  fs.writeFileSync(cfg, `statedir: ${path.join(dir, 's')}\n`);
  const k = crypto.randomBytes(10_000);
  fs.writeFileSync(path.join(dir, 'vmlinuz'), k);
  fs.writeFileSync(path.join(dir, 'initrd.img'), 'initrd');
  assert.equal(cli(['vnfs', 'add', 'one', '--kernel', path.join(dir, 'vmlinuz'), '--initrd', path.join(dir, 'initrd.img')], cfg).code, 0);
  const copy = cli(['db', 'copy', '--from', `sqlite:${path.join(dir, 's', 'pxeherd.db')}`, '--to', pg.url()], cfg);
  assert.equal(copy.code, 0, copy.stderr + copy.stdout);
  const [row] = await sql`SELECT kernel_sha256, kernel_size, initrd_sha256, initrd_size FROM vnfs WHERE name = 'one'`;
  assert.deepEqual({ ...row }, { kernel_sha256: sha(k), kernel_size: k.length, initrd_sha256: sha(Buffer.from('initrd')), initrd_size: 6 });
});
