/**
 * Read-only CLI commands on PostgreSQL (src/store/pg/cli-reads.ts): the same data on SQLite and
 * (through `db copy`) on a real private PostgreSQL give byte-identical stdout, stderr and exit
 * codes for `node list|status|show|export` and `group list|show`, text and --json, queries,
 * globs, ranges, MACs and refusals included; and the PostgreSQL path reads only the matching
 * nodes' rows.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { pxeherd, type StateDir } from '../helpers/cli.js';
import { postgresUnavailable } from '../lab/postgres.js';
import { pgCliFixture } from '../helpers/pg-fixture.js';
import { parseInventory } from '../../src/inventory/inventory.js';
import { parseConfig } from '../../src/config/load.js';
import { openPgReadStore, readScopeFor } from '../../src/store/pg/cli-reads.js';

const skip = postgresUnavailable();
const hasMksquashfs = spawnSync('sh', ['-c', 'command -v mksquashfs']).status === 0;
let lite: StateDir;
let url: string;
let stop: (() => Promise<void>) | undefined;
const N = 60;

before(async () => {
  if (skip) return;
  ({ lite, url, stop } = await pgCliFixture({
    name: 'reads',
    serverId: 'reads',
    yaml: 'server_id: reads\n',
    fill: (store) => {
      const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'compute', defaultVnfs: '' };
      store.nodes.addMany(
        Array.from({ length: N }, (_, i) => ({
          mac: `52:54:00:00:01:${i.toString(16).padStart(2, '0')}`,
          group: ['compute', 'gpu', 'Zeta', 'alpha'][i % 4],
          attrs: { rack: `r${i % 7}`, cores: String([16, 64, 128][i % 3]), ...(i % 5 === 0 ? { checkin_interval: '60' } : {}), ...(i % 9 === 0 ? { note: 'a "quoted", value' } : {}) },
        })),
        policy,
      );
      store.nodes.add({ mac: '52:54:00:00:02:01', name: 'Web1', group: 'web', attrs: { rack: 'r1' } }, policy);
      store.nodes.add({ mac: '52:54:00:00:02:02', name: 'web2', group: '', ip: '10.0.0.2' }, policy);
      store.groups.set('compute', 'vlan', '12');
      store.groups.set('empty', 'head_node', 'h1');
      store.groups.set('gpu', 'checkin_interval', '120');
      const disks = [{ name: 'vda', size_bytes: 64e9, model: 'QEMU HARDDISK', serial: 'PXEHERDA', rotational: 1, removable: 0 }];
      const inv = parseInventory(JSON.stringify({ version: 1, cpu: { model: 'QEMU Virtual CPU', count: 2 }, memory_kb: 4000000, disks, nics: [{ name: 'eth0', mac: '52:54:00:00:01:01', driver: 'e1000' }], firmware: 'uefi' }));
      assert.ok(inv.ok);
      store.inventory.save('52:54:00:00:01:01', inv.inventory, 1_780_000_000_000);
    },
    then: (lite) => {
      // An image revision (vnfs import packs with mksquashfs), some nodes pinned to it, some following it.
      if (hasMksquashfs) {
        const tree = path.join(lite.dir, 'tree');
        fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
        fs.writeFileSync(path.join(tree, 'etc', 'hostname'), 'node\n');
        const imp = pxeherd(['vnfs', 'import', 'img', tree], { config: lite.config });
        assert.equal(imp.code, 0, imp.stderr);
        for (const [field, value, nodes] of [['vnfs', 'img@1', 'n000[0-4]'], ['vnfs', 'img', 'n001[0-2]']]) {
          const r = pxeherd(['node', 'set', field!, value!, nodes!], { config: lite.config });
          assert.equal(r.code, 0, r.stderr);
        }
      }
      // Contacts two and a half hours back (the table's "2h ago" cannot change between the two
      // runs) and a week back (stale for nodes checking in every minute); states set.
      const db = new Database(path.join(lite.statedir, 'pxeherd.db'));
      const now = Date.now();
      db.prepare("UPDATE nodes SET last_contact = ?, state = 'ready' WHERE CAST(substr(mac, 16, 2) AS INTEGER) % 2 = 0").run(now - 2.5 * 3_600_000);
      db.prepare("UPDATE nodes SET last_contact = ?, state = 'install' WHERE mac LIKE '52:54:00:00:01:1%'").run(now - 7 * 86_400_000);
      db.prepare("INSERT INTO health (mac, time, uptime, load, memfree_kb) VALUES ('52:54:00:00:01:01', ?, 3600, 0.25, 123456)").run(now - 7 * 86_400_000);
      db.close();
    },
  }));
});
after(async () => {
  await stop?.();
});

const CASES: string[][] = [
  ['node', 'list'],
  ['node', 'list', '--json'],
  ['node', 'status'],
  ['node', 'status', 'state:stale'],
  ['node', 'list', 'group:compute'],
  ['node', 'list', 'group:compute and attr:rack,r1*', '--json'],
  ['node', 'list', 'attr:cores>=64 and not group:gpu'],
  ['node', 'list', 'not attr:checkin_interval', '--json'],
  ['node', 'list', 'name:WEB*'],
  ['node', 'list', '(group:zeta or group:web) and not state:ready'],
  ['node', 'list', 'hw:disks>=1'],
  ['node', 'list', 'n00[10-15]', 'Web1', '52-54-00-00-02-02'],
  ['node', 'list', 'n004*', '--json'],
  ['node', 'list', '*2'],
  ['node', 'list', 'nosuch'],
  ['node', 'show', 'n0001', 'Web1', '--json'],
  ['node', 'show', 'n0001'],
  ['node', 'show', 'group:gpu and attr:rack,r3'],
  ['node', 'show', 'n0002', 'nosuch'],
  ['node', 'list', 'group:(compute'],
  ['node', 'export', '-', '--format', 'csv'],
  ['node', 'export', '-', 'group:alpha', '--format', 'json'],
  ['group', 'list'],
  ['group', 'list', '--json'],
  ['group', 'show', 'compute', '--json'],
  ['group', 'show', 'empty'],
  ['group', 'show', 'nosuch'],
  ['vnfs', 'list'],
  ['vnfs', 'list', '--json'],
  ['vnfs', 'show', 'nosuch'],
];
/** With an image revision (mksquashfs installed; CI installs squashfs-tools). */
const VNFS_CASES: string[][] = [
  ['vnfs', 'show', 'img'],
  ['vnfs', 'show', 'img', '--json'],
  ['vnfs', 'revisions', 'img', '--json'],
  ['node', 'list', 'vnfs:img', '--json'],
];

test('read-only node and group commands on PostgreSQL print what they print on SQLite, byte for byte, exit codes and refusals included', { skip, timeout: 300_000 }, () => {
  let refused = 0;
  for (const args of [...CASES, ...(hasMksquashfs ? VNFS_CASES : [])]) {
    const want = pxeherd(args, { config: lite.config });
    const got = pxeherd([...args, '--database', url], { config: lite.config });
    assert.deepEqual(got, want, `pxeherd ${args.join(' ')}: PostgreSQL as SQLite`);
    if (want.code !== 0) refused++;
    else assert.ok(want.stdout.length > 0, `${args.join(' ')} printed something`);
  }
  assert.equal(refused, 4, 'the unknown node, group and VNFS and the bad query are refused on both');
  if (hasMksquashfs) assert.match(pxeherd(['vnfs', 'revisions', 'img', '--database', url], { config: lite.config }).stdout, /n0000/, 'a pinned node shows');
  // Not vacuous: the data has what the cases select.
  assert.match(pxeherd(['node', 'list', 'state:stale', '--database', url], { config: lite.config }).stdout, /\(stale\)/);
  assert.match(pxeherd(['node', 'show', 'n0001', '--database', url], { config: lite.config }).stdout, /hardware: {5}version 1/);
});

test('the PostgreSQL read path reads only the nodes (and attributes) the command shows', { skip }, async () => {
  const config = parseConfig({ statedir: lite.statedir, database: url });
  const count = async (path: string[], args: string[], json = false) => {
    const r = await openPgReadStore(config, readScopeFor(path, args, json)!);
    try {
      return r.counts;
    } finally {
      await r.close();
    }
  };
  // group:compute is 15 of the 62 nodes; a table reads only the checkin_interval attribute (3 of them).
  assert.deepEqual(await count(['node', 'list'], ['group:compute']).then((c) => [c.nodes, c.node_attrs ?? 0]), [15, 3]);
  assert.deepEqual(await count(['node', 'list'], ['group:compute'], true).then((c) => [c.nodes, c.node_attrs]), [15, 15 * 2 + 3 + 2]);
  assert.deepEqual(await count(['node', 'show'], ['n0001']).then((c) => [c.nodes, c.inventory, c.health]), [1, 1, 1]);
  assert.equal((await count(['node', 'list'], ['n004*'])).nodes, 10);
  assert.equal((await count(['group', 'list'], [])).nodes ?? 0, 0, 'group list counts in PostgreSQL');
  assert.equal((await count(['vnfs', 'list'], [])).nodes ?? 0, 0, 'vnfs list counts in PostgreSQL');
  if (hasMksquashfs) assert.deepEqual(await count(['vnfs', 'show'], ['img']).then((c) => [c.nodes, c.vnfs_revisions]), [8, 1], 'vnfs show reads the 8 nodes using img');
  assert.equal(readScopeFor(['node', 'set'], ['boot', 'local', 'n0001'], false), undefined, 'writes keep the replica path');
});
