/**
 * `node list QUERY` compiled to SQL (src/nodes/query-sql.ts) selects, on SQLite and on a real
 * PostgreSQL (test/lab/postgres.ts; skipped with the reason when absent), exactly the nodes the
 * in-memory evaluator (evalQuery) selects from every node, on a random store with awkward values:
 * case, non-ASCII letters that fold to ASCII elsewhere (Kelvin sign, dotted I), quotes, LIKE's own
 * wildcards, backslashes, line breaks, characters outside the BMP, empty values, missing
 * attributes and NOT over them. Also: the indexes of migration 8 are the ones the plans use.
 * No timings here (bench/query.ts has those).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../../src/store/store.js';
import { nodeFromRow, type NodeRow } from '../../src/store/nodes.js';
import { SqliteBackend } from '../../src/store/sqlite-backend.js';
import { PostgresBackend } from '../../src/store/pg/backend.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { copySqliteToPostgres } from '../../src/store/copy.js';
import { NodeService } from '../../src/nodes/service.js';
import { parseConfig } from '../../src/config/load.js';
import { compileQuery, POSTGRES_DIALECT } from '../../src/nodes/query-sql.js';
import { evalQuery, looksLikeQuery, parseQuery } from '../../src/nodes/query.js';
import type { Node } from '../../src/nodes/types.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { rng } from '../helpers/rng.js';

const GROUPS = ['compute', 'Compute', 'COMPUTE-2', 'gpu', 'a_b', 'axb', 'a.b', 'cluster', 'k8s'];
const VNFS = ['', 'deb12', 'DEB12', 'deb12@3', 'deb12.3', 'deb1x2', 'rocky9@12', 'rocky9'];
const STATES = ['ready', 'Ready', 'init', '', 'discovery', 're_dy', 'readyx'];
const VALUES = [
  'r1', 'r12', 'R12', '12', '07', '', ' ', 'x_y', 'x%y', 'xzy', 'back\\slash', "it's", 'say "hi"', 'ünï', 'ÜNÏ',
  '\u212a', 'k', 'K', 'İx', 'ix', '😀', 'a😀b', 'a\nb', 'a b', 'é', 'E', '1.2.3', '.5', '-3', '0x10', '1e2', 'null', '{}', '[1]',
];

let dir: string;
let store: Store;
let all: Node[];
const pgSkip = postgresUnavailable();
let pg: PostgresLab | undefined;
let pgBackend: PostgresBackend | undefined;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-query-'));
  store = Store.open(dir);
  const r = rng(19);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const insNode = store.db.prepare(
    `INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insAttr = store.db.prepare('INSERT INTO node_attrs (mac, key, value) VALUES (?, ?, ?)');
  store.db.transaction(() => {
    for (let i = 0; i < 600; i++) {
      const mac = `52:54:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      const name = (r() < 0.1 ? 'N' : 'n') + String(i).padStart(4, '0');
      insNode.run(mac, name, pick(GROUPS), pick(VNFS), r() < 0.8 ? 1 : 0, r() < 0.1 ? 1 : 0, pick(STATES), r() < 0.5 ? `10.0.${i >> 8}.${i & 255}` : '',
        r() < 0.7 ? 1_800_000_000_000 + i : null, pick(['provision', 'local', 'once', 'disabled']), 1_700_000_000_000, 1_700_000_000_000 + i);
      if (r() < 0.7) insAttr.run(mac, 'rack', pick(VALUES));
      if (r() < 0.4) insAttr.run(mac, 'cores', pick(VALUES.concat(['8', '64', '128', '96.5'])));
      if (r() < 0.2) insAttr.run(mac, 'gpu_model', pick(['a100', 'H100', 't4', '']));
      if (r() < 0.1) insAttr.run(mac, 'checkin_interval', pick(['60', '600']));
    }
  })();
  // The reference: every row and attribute read apart, without NodeRepo's one-statement JSON.
  const attrs = new Map<string, Record<string, string>>();
  for (const a of store.db.prepare('SELECT mac, key, value FROM node_attrs').all() as { mac: string; key: string; value: string }[]) {
    attrs.set(a.mac, { ...attrs.get(a.mac), [a.key]: a.value });
  }
  all = (store.db.prepare('SELECT * FROM nodes ORDER BY name').all() as NodeRow[]).map((r) => nodeFromRow(r, attrs.get(r.mac) ?? {}));
  assert.deepEqual(store.nodes.all(), all, 'NodeRepo.all');
  if (!pgSkip) {
    pg = await startPostgres();
    const url = await pg.createDatabase('query');
    const sql = connectPostgres(url, { max: 1 });
    try {
      await copySqliteToPostgres(path.join(dir, 'pxeherd.db'), sql);
    } finally {
      await sql.end();
    }
    pgBackend = PostgresBackend.connect(url, 'query', { max: 2 });
  }
});

after(async () => {
  await pgBackend?.close();
  await pg?.stop();
  store?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const TERMS = [
  'group:compute', 'group:COMP*', 'group:a_b', 'group:a%b', 'group:?pu', 'group:*', 'group:a[_.]b', 'group:k*', 'group:K8S',
  'name:n00*', 'name:N00*', 'name:n0?1?', 'n001*', 'name:N0000',
  'state:ready', 'state:re*', 'state:re_dy', 'state:?eady', 'state:stale',
  'vnfs:deb12', 'vnfs:deb12.*', 'vnfs:*', 'vnfs:deb12@3', 'vnfs:rocky?', 'vnfs:deb1_2', 'vnfs:deb12@*',
  'enabled:yes', 'debug:true', 'boot:local', 'ip:10.0.0.*', 'mac:52:54:00:00:00:0a', 'mac:52:54:00:00:01:*',
  'attr:rack', 'attr:nokey', 'attr:rack,', 'attr:rack,r1*', 'attr:rack,R12', 'attr:rack,x_y', 'attr:rack,x%y', 'attr:rack,back\\slash',
  "attr:rack,it's", 'attr:rack,say*', 'attr:rack,"a b"', 'attr:rack,"?"', 'attr:rack,?', 'attr:rack,??', 'attr:rack,a?b', 'attr:rack,a*b',
  'attr:rack,k', 'attr:rack,K', 'attr:rack,i*', 'attr:rack,ix', 'attr:rack,ünï', 'attr:rack,ÜNÏ', 'attr:rack,E', 'attr:rack,*',
  'attr:rack=12', 'attr:rack!=12', 'attr:cores>=64', 'attr:cores<8', 'attr:cores=07', 'attr:cores>-1', 'attr:gpu_model,?100', 'attr:gpu_model,',
];

const names = (nodes: Node[]) => nodes.map((n) => n.name);
/** The nodes in one list and not the other, as the evaluator sees them (for failure messages). */
function differ(a: Node[], b: Node[]) {
  const inA = new Set(a.map((n) => n.mac));
  const inB = new Set(b.map((n) => n.mac));
  return all.filter((n) => inA.has(n.mac) !== inB.has(n.mac)).map((n) => ({ name: n.name, group: n.group, vnfs: n.vnfs, state: n.state, attrs: n.attrs, only: inA.has(n.mac) ? 'first' : 'second' }));
}
const scan = (text: string) => {
  const q = parseQuery(text);
  return all.filter((n) => evalQuery(q, n));
};

function queries(seed: number, count: number): string[] {
  const r = rng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const gen = (depth: number): string => {
    const x = r();
    if (depth <= 0 || x < 0.35) return pick(TERMS);
    if (x < 0.55) return `not ${gen(depth - 1)}`;
    if (x < 0.8) return `(${gen(depth - 1)} and ${gen(depth - 1)})`;
    return `(${gen(depth - 1)} or ${gen(depth - 1)})`;
  };
  const out = [...TERMS, ...TERMS.map((t) => `not ${t}`)];
  for (let i = 0; i < count; i++) out.push(gen(3));
  return out;
}

test('SQLite: compiled queries select what evalQuery selects from every node, attributes and all', async () => {
  const backend = new SqliteBackend(store);
  const svc = new NodeService(store, parseConfig({ statedir: dir }));
  let nonEmpty = 0;
  for (const text of queries(7, 150)) {
    const want = scan(text);
    if (want.length > 0 && want.length < all.length) nonEmpty++;
    // The whole nodes (NodeRepo.where's JSON rows must equal NodeRepo.all's), in name order;
    // for the random combinations the names (deepEqual of hundreds of nodes costs seconds).
    const got = await backend.listNodes(text);
    assert.deepEqual(names(got), names(want), `${text}: differ on ${JSON.stringify(differ(got, want))}`);
    if (TERMS.includes(text)) assert.deepEqual(got, want, text);
    // A bare word is a case-sensitive name glob for NodeService (Perceus' NODES), not a query.
    if (!looksLikeQuery([text])) continue;
    assert.deepEqual(names(svc.list([text])), names(want), `NodeService: ${text}`);
    // A table's read: the same nodes, carrying only checkin_interval and the keys the query reads.
    const lean = svc.list([text], { attrKeys: ['checkin_interval'] });
    assert.deepEqual(names(lean), names(want), `attrKeys: ${text}`);
    const byMac = new Map(want.map((w) => [w.mac, w]));
    for (const n of lean) {
      const full = byMac.get(n.mac)!;
      for (const [k, v] of Object.entries(n.attrs)) assert.equal(v, full.attrs[k], `${text}: ${n.name}.${k}`);
      if ('checkin_interval' in full.attrs) assert.equal(n.attrs.checkin_interval, full.attrs.checkin_interval);
    }
  }
  assert.ok(nonEmpty > 150, `the random queries select something and not everything (${nonEmpty})`);
  assert.deepEqual(svc.list([], { attrKeys: [] }).map((n) => [n.name, n.attrs]), all.map((n) => [n.name, {}]));
});

test('PostgreSQL: compiled queries select what evalQuery selects from every node', { skip: pgSkip }, async () => {
  for (const text of queries(11, 150)) {
    const got = await pgBackend!.listNodes(text);
    const want = scan(text);
    assert.deepEqual(names(got), names(want), `${text}: differ on ${JSON.stringify(differ(got, want))}`);
    assert.deepEqual(got.map((n) => n.attrs), want.map((n) => n.attrs), `attributes: ${text}`);
  }
});

/** The index names a plan mentions. */
function used(plan: string, indexes: string[]): string[] {
  return indexes.filter((i) => plan.includes(i));
}

test('SQLite: the plans read migration 8\'s indexes (no scan of every node for an indexed term)', () => {
  const plan = (text: string) => {
    const c = compileQuery(parseQuery(text));
    return (store.db.prepare(`EXPLAIN QUERY PLAN SELECT mac FROM nodes WHERE ${c.sql}`).all(...c.params) as { detail: string }[]).map((r) => r.detail).join('\n');
  };
  const cases: [string, RegExp][] = [
    ['group:compute', /SEARCH nodes USING (COVERING )?INDEX nodes_grp_nocase/],
    ['name:n00*', /SEARCH nodes USING (COVERING )?INDEX nodes_name_nocase/],
    ['vnfs:deb12', /SEARCH nodes USING (COVERING )?INDEX nodes_vnfs_nocase/],
    ['state:ready', /SEARCH nodes USING (COVERING )?INDEX nodes_state_nocase/],
    ['attr:rack,r1', /SEARCH a USING COVERING INDEX node_attrs_key_value \(key=\? AND value>\? AND value<\?\)/],
    // Next to an indexed term an attribute is a probe of node_attrs' primary key per row.
    ['group:compute and attr:rack,r1', /SEARCH nodes USING INDEX nodes_grp_nocase[\s\S]*USING PRIMARY KEY \(mac=\? AND key=\?\)/],
    ['group:compute and not attr:rack', /SEARCH nodes USING INDEX nodes_grp_nocase[\s\S]*USING PRIMARY KEY \(mac=\? AND key=\?\)/],
  ];
  for (const [text, re] of cases) {
    const p = plan(text);
    assert.match(p, re, `${text}:\n${p}`);
    assert.doesNotMatch(p, /SCAN nodes/, `${text}:\n${p}`);
  }
});

test('PostgreSQL: the compiled conditions can use migration 8\'s indexes', { skip: pgSkip }, async () => {
  const sql = pgBackend!.sql;
  await sql.begin(async (tx) => {
    // 600 rows fit a page or two: only with sequential scans priced out does the plan show which
    // index the condition can use at all (what a 100 000-node table picks on its own).
    await tx`SET LOCAL enable_seqscan = off`;
    const indexes = ['nodes_grp_lower', 'nodes_name_lower', 'nodes_vnfs_lower', 'nodes_state_lower', 'node_attrs_key_value'];
    for (const [text, want] of [
      ['group:compute', ['nodes_grp_lower']],
      ['name:n00*', ['nodes_name_lower']],
      ['vnfs:deb12', ['nodes_vnfs_lower']],
      ['state:ready', ['nodes_state_lower']],
      ['attr:rack,r1', ['node_attrs_key_value']],
    ] as const) {
      const c = compileQuery(parseQuery(text), POSTGRES_DIALECT);
      const rows = await tx.unsafe(`EXPLAIN SELECT mac FROM nodes WHERE ${c.sql}`, c.params);
      const p = rows.map((r) => r['QUERY PLAN']).join('\n');
      assert.deepEqual(used(p, indexes), want, `${text}:\n${p}`);
    }
  });
});
