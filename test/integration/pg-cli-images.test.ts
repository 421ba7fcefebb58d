/**
 * The rest of the CLI on PostgreSQL (whole replica + write-through, src/store/pg/cli-store.ts):
 * a VNFS revision imported with the CLI at server A's state directory is one row set in
 * PostgreSQL, so the CLI at server B's state directory lists it, pins a node to it and renders
 * that node's boot with it (`explain`, `script show`); B lacks the bytes, and `vnfs sync` at B
 * fetches them from A's running `serve` (images.origins) and verifies them against the manifest
 * the database holds. A write a command refuses (an unknown revision) changes nothing. A
 * kernel+initrd VNFS (`vnfs add`) is recorded for every server with its files' sha256, without
 * a warning: servers fetch it as they fetch revisions (test/integration/pg-vnfs-fetch.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { CLI } from '../helpers/cli.js';
import { tmpDir, waitFor } from '../lab/lab.js';
import { postgresUnavailable, startPostgres } from '../lab/postgres.js';
import { freePort } from '../lab/procs.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';

const has = (t: string) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
const skip = postgresUnavailable() ?? (!has('mksquashfs') ? 'needs mksquashfs (squashfs-tools)' : undefined);
const SQ = 'rootfs.squashfs';

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.PXEHERD_DATABASE;
  delete env.PXEHERD_CONFIG;
  return env;
}

function cli(args: string[], config: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--config', config], { encoding: 'utf8', env: cleanEnv(), timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('a VNFS revision imported with the CLI on one server is visible to the CLI of another, which fetches and verifies its bytes from the first', { skip, timeout: 300_000 }, async (t) => {
  const pg = await startPostgres();
  const dir = tmpDir('phpgimg-');
  const procs: ChildProcess[] = [];
  t.after(async () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const url = pg.url();
  const sql = connectPostgres(url, { max: 1 });
  await migratePostgres(sql);
  const [httpA, adminA] = [await freePort(), await freePort()];
  const common = `database: "${url}"\naddress: 127.0.0.1\ndhcp: { mode: off }\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nsecurity: { node_tokens: false }\n`;
  const A = path.join(dir, 'a.yaml');
  const B = path.join(dir, 'b.yaml');
  fs.writeFileSync(A, `statedir: ${path.join(dir, 'a')}\nserver_id: boot-a\nhttp: { port: ${httpA} }\nadmin: { port: ${adminA} }\n${common}`);
  fs.writeFileSync(B, `statedir: ${path.join(dir, 'b')}\nserver_id: boot-b\nhttp: { port: 0 }\nadmin: { port: 0 }\nimages: { origins: ["http://127.0.0.1:${httpA}"] }\n${common}`);

  const tree = path.join(dir, 'tree');
  fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'etc', 'hostname'), 'node\n');
  fs.writeFileSync(path.join(tree, 'etc', 'blob'), crypto.randomBytes(200_000));
  const imp = cli(['vnfs', 'import', 'img', tree, '--json'], A);
  assert.equal(imp.code, 0, imp.stderr);
  const manifest = (JSON.parse(imp.stdout) as { manifest: { artifacts: Record<string, { sha256: string; size: number }> } }).manifest;
  const want = manifest.artifacts[SQ]!;
  // The revision record is in PostgreSQL; the bytes only on A's disk.
  const [row] = await sql`SELECT rev FROM vnfs_revisions WHERE vnfs = 'img'`;
  assert.equal(Number(row!.rev), 1);
  assert.equal(fs.existsSync(path.join(dir, 'b', 'vnfs', 'img', 'r1', SQ)), false);

  // B's CLI sees it and can use it.
  const list = cli(['vnfs', 'list', '--json'], B);
  assert.equal(list.code, 0, list.stderr);
  const img = (JSON.parse(list.stdout) as { vnfs: { name: string; revisions: number }[] }).vnfs.find((v) => v.name === 'img');
  assert.equal(img?.revisions, 1, list.stdout);
  assert.equal(cli(['node', 'add', '52:54:00:19:01:01', 'c1', '--vnfs', 'img@1'], B).code, 0);
  const bad = cli(['node', 'set', 'vnfs', 'img@7', 'c1'], B);
  assert.equal(bad.code, 2, 'an unknown revision is refused as on SQLite');
  assert.match(bad.stderr, /has no revision 7/);
  assert.equal((await sql`SELECT vnfs FROM nodes WHERE name = 'c1'`)[0]!.vnfs, 'img@1', 'the refusal changed nothing');
  const explain = cli(['explain', '52:54:00:19:01:01', '--json'], B);
  assert.equal(explain.code, 0, explain.stderr);
  assert.match(explain.stdout, /img/);
  const script = cli(['script', 'list', 'c1'], B);
  assert.equal(script.code, 0, script.stderr);
  // A kernel+initrd VNFS: recorded for all with its files' hashes (other servers fetch and verify them).
  fs.writeFileSync(path.join(dir, 'vmlinuz'), 'kernel');
  fs.writeFileSync(path.join(dir, 'initrd.img'), 'initrd');
  const add = cli(['vnfs', 'add', 'plain', '--kernel', path.join(dir, 'vmlinuz'), '--initrd', path.join(dir, 'initrd.img'), '--json'], B);
  assert.equal(add.code, 0, add.stderr);
  assert.equal((JSON.parse(add.stdout) as { name: string }).name, 'plain', '--json stays clean');
  assert.equal(add.stderr, '', 'no warning: the files are fetched by the servers lacking them');
  assert.equal((await sql`SELECT kernel_sha256 FROM vnfs WHERE name = 'plain'`)[0]!.kernel_sha256, crypto.createHash('sha256').update('kernel').digest('hex'));
  assert.ok((JSON.parse(cli(['vnfs', 'list', '--json'], A).stdout) as { vnfs: { name: string }[] }).vnfs.some((v) => v.name === 'plain'), "A's CLI lists it");

  // B fetches the bytes from A's server and checks them against the manifest in the database.
  const log = path.join(dir, 'a.log');
  const out = fs.openSync(log, 'a');
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', A], { stdio: ['ignore', out, out], env: cleanEnv() });
  fs.closeSync(out);
  procs.push(proc);
  await waitFor('A to serve HTTP', 60_000, () => {
    if (proc.exitCode !== null) throw new Error(`serve A exited: ${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    return /http listening/.test(fs.readFileSync(log, 'utf8'));
  });
  const sync = cli(['vnfs', 'sync', 'img', '--json'], B);
  assert.equal(sync.code, 0, sync.stderr + sync.stdout);
  const got = path.join(dir, 'b', 'vnfs', 'img', 'r1', SQ);
  assert.equal(crypto.createHash('sha256').update(fs.readFileSync(got)).digest('hex'), want.sha256, 'B holds the verified bytes');
  await sql.end();
});
