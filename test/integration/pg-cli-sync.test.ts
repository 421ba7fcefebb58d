/**
 * `vnfs sync [NAME[@REV]]` on PostgreSQL loads only its VNFS records and the revisions nodes pin
 * (src/store/pg/cli-writes.ts, vnfsSync), no longer every node row: on a database with many nodes,
 * the same command lines, in the same order, on SQLite and on a real private PostgreSQL holding a
 * copy of the same data print the same bytes (text and --json) and exit with the same codes,
 * refusals and failed files included, and leave the same VNFS rows (a hash recorded by sync); and
 * the PostgreSQL path reads no node rows and only the revisions it syncs (counted as pg-cli-loads
 * counts them).
 *
 * Each backend has its own state directory (a copy of the other's, image files included): sync
 * verifies the files next to its own database and remembers what it verified there.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { pxeherd, type StateDir } from '../helpers/cli.js';
import { pgCliFixture, pgSideConfig } from '../helpers/pg-fixture.js';
import { postgresUnavailable } from '../lab/postgres.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { parseConfig } from '../../src/config/load.js';
import { openPgCliStore } from '../../src/store/pg/cli-store.js';
import { writeScopeFor } from '../../src/store/pg/cli-writes.js';

const skip = postgresUnavailable() ?? (spawnSync('sh', ['-c', 'command -v mksquashfs']).status !== 0 ? 'needs mksquashfs (squashfs-tools)' : undefined);
let lite: StateDir;
let url: string;
let stop: (() => Promise<void>) | undefined;
/** The PostgreSQL side's configuration: the same, with its own state directory. */
let pgConfig: string;
const N = 3000;
const name = (i: number) => `n${String(i).padStart(5, '0')}`;

before(async () => {
  if (skip) return;
  const yaml = 'server_id: sync\nnodes: { name_pattern: "n#####", first_number: 1, default_group: compute }\n';
  ({ lite, url, stop } = await pgCliFixture({
    name: 'sync',
    serverId: 'sync',
    yaml,
    fill: (store) => {
      const policy = { pattern: 'n#####', firstNumber: 1, defaultGroup: 'compute', defaultVnfs: '' };
      store.nodes.addMany(
        Array.from({ length: N }, (_, i) => ({ mac: `52:54:00:01:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, attrs: { rack: `r${i % 4}` } })),
        policy,
      );
    },
    then: (lite) => {
      for (const t of ['tree1', 'tree2', 'tree3']) {
        fs.mkdirSync(path.join(lite.dir, t, 'etc'), { recursive: true });
        fs.writeFileSync(path.join(lite.dir, t, 'etc', 'hostname'), `${t}\n`);
      }
      fs.writeFileSync(path.join(lite.dir, 'vmlinuz'), crypto.randomBytes(20_000));
      fs.writeFileSync(path.join(lite.dir, 'initrd.img'), crypto.randomBytes(30_000));
      // img: three revisions (current 3); img2: one, its files then lost; plain: kernel+initrd.
      for (const args of [
        ['vnfs', 'import', 'img', path.join(lite.dir, 'tree1')],
        ['vnfs', 'import', 'img', path.join(lite.dir, 'tree2')],
        ['vnfs', 'import', 'img', path.join(lite.dir, 'tree3')],
        ['vnfs', 'import', 'img2', path.join(lite.dir, 'tree1')],
        ['vnfs', 'add', 'plain', '--kernel', path.join(lite.dir, 'vmlinuz'), '--initrd', path.join(lite.dir, 'initrd.img')],
      ]) {
        const r = pxeherd(args, { config: lite.config });
        assert.equal(r.code, 0, r.stderr);
      }
      fs.rmSync(path.join(lite.statedir, 'vnfs', 'img2', 'r1', 'rootfs.squashfs'));
      const db = new Database(path.join(lite.statedir, 'pxeherd.db'));
      try {
        // Pins: the first pinning node (by name) pins r2, later ones r1 (sync adds r2 first); a pin
        // to a revision that does not exist; nodes following img; a VNFS from before the hashes
        // were recorded, its files here (sync hashes and records them: a write).
        const set = db.prepare('UPDATE nodes SET vnfs = ? WHERE name = ?');
        set.run('img@2', name(7));
        for (let i = 100; i < 2100; i++) set.run('img@1', name(i));
        set.run('img@9', name(3));
        set.run('img2@1', name(2500));
        for (let i = 2600; i < 2700; i++) set.run('img', name(i));
        db.prepare("INSERT INTO vnfs (name, kernel, initrd, cmdline, created_at) VALUES ('legacy', 'vmlinuz', 'initrd.img', '', 0)").run();
      } finally {
        db.close();
      }
      fs.mkdirSync(path.join(lite.statedir, 'vnfs', 'legacy'), { recursive: true });
      for (const f of ['vmlinuz', 'initrd.img']) fs.copyFileSync(path.join(lite.dir, f), path.join(lite.statedir, 'vnfs', 'legacy', f));
    },
  }));
  // Verification markers name a file's inode and mtime, which a copy does not keep: none on either
  // side, so each side's first sync checks every file.
  for (const f of fs.readdirSync(lite.statedir, { recursive: true, encoding: 'utf8' })) {
    if (path.basename(f).startsWith('.verified-')) fs.rmSync(path.join(lite.statedir, f));
  }
  pgConfig = pgSideConfig(lite);
});
after(async () => {
  await stop?.();
});

function cli(args: string[], config: string, database?: string) {
  return pxeherd([...args, '--config', config, ...(database ? ['--database', database] : [])]);
}

/** What differs between two runs of the same command (durations) and nothing else. */
function clocked(r: { code: number; stdout: string; stderr: string }) {
  const t = (s: string) => s.replace(/"ms": \d+/g, '"ms": <ms>').replace(/ in \d+ ms/g, ' in <ms> ms');
  return { code: r.code, stdout: t(r.stdout), stderr: t(r.stderr) };
}

/** In this order on each backend. */
const CASES: string[][] = [
  // Everything: legacy's hashes recorded, img2's lost file failed (exit 1), the pins in first-user order.
  ['vnfs', 'sync'],
  ['vnfs', 'sync', '--json'],
  ['vnfs', 'sync', 'img'],
  ['vnfs', 'sync', 'img@1', '--json'],
  ['vnfs', 'sync', 'plain'],
  ['vnfs', 'sync', 'legacy', '--json'],
  ['vnfs', 'sync', 'img2@1'],
  // Refusals: no such revision, no such VNFS, not NAME@REV.
  ['vnfs', 'sync', 'img@7'],
  ['vnfs', 'sync', 'nosuch'],
  ['vnfs', 'sync', 'img@x'],
  ['vnfs', 'sync', '@2', '--json'],
];

test('vnfs sync on PostgreSQL prints what it prints on SQLite, byte for byte, with and without a target, refusals and failures included', { skip, timeout: 300_000 }, async () => {
  const codes: number[] = [];
  for (const args of CASES) {
    const want = clocked(cli(args, lite.config));
    const got = clocked(cli(args, pgConfig, url));
    assert.deepEqual(got, want, `pxeherd ${args.join(' ')}: PostgreSQL as SQLite`);
    codes.push(want.code);
  }
  // Not vacuous: the commands did what they say.
  assert.deepEqual(codes, [1, 1, 0, 0, 0, 0, 1, 2, 2, 2, 2]);
  const all = cli(['vnfs', 'sync', '--json'], pgConfig, url);
  const files = (JSON.parse(all.stdout) as { files: { vnfs: string; rev: number | null; file: string; status: string }[] }).files;
  const revs = files.filter((f) => f.file === 'manifest.json').map((f) => `${f.vnfs}@${f.rev}`);
  assert.deepEqual(revs, ['img@3', 'img@2', 'img@1', 'img2@1'], 'the current revisions, then the pins in the order of their first node');
  assert.deepEqual(files.filter((f) => f.status === 'failed').map((f) => `${f.vnfs}@${f.rev}/${f.file}`), ['img2@1/rootfs.squashfs']);
  // The hashes sync recorded for legacy are in both databases.
  const db = new Database(path.join(lite.statedir, 'pxeherd.db'), { readonly: true });
  const sql = connectPostgres(url, { max: 1 });
  try {
    const q = 'SELECT kernel_sha256, kernel_size, initrd_sha256, initrd_size FROM vnfs ORDER BY name';
    const pgRows = ((await sql.unsafe(q)) as unknown as Record<string, unknown>[]).map((r) => ({ ...r }));
    assert.deepEqual(pgRows, db.prepare(q).all());
    assert.ok(pgRows.some((r) => typeof r.kernel_sha256 === 'string' && r.kernel_size === 20_000), 'legacy recorded');
  } finally {
    db.close();
    await sql.end();
  }
});

test('the PostgreSQL path of vnfs sync reads no node rows, only the VNFS records and revisions it syncs', { skip }, async () => {
  const config = parseConfig({ statedir: lite.statedir, database: url, nodes: { name_pattern: 'n#####', first_number: 1, default_group: 'compute' } });
  const load = async (args: string[]) => {
    const scope = writeScopeFor(['vnfs', 'sync'], args, {}, config, () => '');
    assert.ok(scope, `vnfs sync ${args.join(' ')} has a scope`);
    const s = await openPgCliStore(config, scope);
    try {
      return { counts: s.scoped!.counts, pins: s.scoped!.vnfsPins };
    } finally {
      await s.close();
    }
  };
  const all = await load([]);
  assert.equal(all.counts.nodes ?? 0, 0, 'no node rows');
  assert.equal(all.counts.node_attrs ?? 0, 0);
  assert.equal(all.counts.groups ?? 0, 0, 'no groups');
  assert.equal(all.counts.vnfs, 4, 'every VNFS');
  // img r3 (current), r2 and r1 (pinned), img2 r1: not img@9 (no such revision).
  assert.equal(all.counts.vnfs_revisions, 4, 'the current and the pinned revisions');
  assert.deepEqual(all.pins, ['img@9', 'img@2', 'img@1', 'img2@1'], 'the distinct pins in the order of their first node');
  const one = await load(['img@2']);
  assert.equal(one.counts.nodes ?? 0, 0);
  assert.equal(one.counts.vnfs, 1, 'only img');
  assert.equal(one.counts.vnfs_revisions, 3, "img's revisions");
  assert.equal(one.pins, undefined, 'a target reads no pins');
  const none = await load(['nosuch']);
  assert.equal(none.counts.vnfs, 0);
});
