import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { compileQuery, globToLike } from '../../src/nodes/query-sql.js';
import { evalQuery, parseQuery } from '../../src/nodes/query.js';
import type { Node } from '../../src/nodes/types.js';
import { rng } from '../helpers/rng.js';

const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };

const GROUPS = ['compute', 'Compute', 'gpu', 'infra', 'a_b', 'axb', 'cluster'];
const RACKS = ['r1', 'r12', 'R12', '12', '7', '07', '', 'x_y', 'x%y', 'back\\slash', 'ünï', '1.2.3', '.5', '5.', ' 8', '-3', '0x10', '1e2', '.'];

function fixture(n: number, seed = 1): Store {
  const store = new Store(openDatabase(':memory:'));
  const r = rng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const nodes = [];
  for (let i = 0; i < n; i++) {
    const attrs: Record<string, string> = {};
    if (r() < 0.7) attrs.rack = pick(RACKS);
    if (r() < 0.3) attrs.cores = String(Math.floor(r() * 128));
    if (r() < 0.1) attrs['gpu_model'] = pick(['a100', 'H100', 't4']);
    nodes.push({
      mac: `52:54:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
      group: pick(GROUPS),
      vnfs: pick(['', 'deb12', 'rocky9', 'deb12.3', 'deb12@3', 'rocky9@12']),
      enabled: r() < 0.8,
      debug: r() < 0.1,
      boot: pick(['provision', 'local', 'once', 'disabled'] as const),
      ip: r() < 0.5 ? `10.0.${i >> 8}.${i & 255}` : '',
      attrs,
    });
  }
  store.nodes.addMany(nodes, policy);
  const states = ['ready', 'init', '', 'Ready', 'discovery'];
  for (const node of store.nodes.all()) store.db.prepare('UPDATE nodes SET state = ? WHERE mac = ?').run(pick(states), node.mac);
  return store;
}

function viaSql(store: Store, text: string): string[] {
  const q = parseQuery(text);
  const c = compileQuery(q);
  const rows = store.nodes.where(c.sql, c.params);
  return rows.filter((n: Node) => evalQuery(q, n)).map((n) => n.name);
}

function viaScan(store: Store, text: string): string[] {
  const q = parseQuery(text);
  return store.nodes.all().filter((n) => evalQuery(q, n)).map((n) => n.name);
}

const TERMS = [
  'group:compute', 'group:COMP*', 'group:a_b', 'group:a%b', 'group:?pu', 'group:*', 'group:a[_%]b',
  'name:n00*', 'name:n0?1?', 'n001*', 'name:N0000',
  'state:ready', 'state:re*', 'state:stale',
  'vnfs:deb12', 'vnfs:deb12.*', 'vnfs:*', 'vnfs:deb12@3', 'vnfs:rocky?', 'vnfs:deb12@*',
  'enabled:yes', 'enabled:0', 'debug:true',
  'boot:local', 'boot:?nce',
  'ip:10.0.0.*', 'ip:10.0.?.1',
  'mac:52:54:00:00:00:0a', 'mac:52-54-00-00-00-0B', 'mac:52:54:00:00:01:*',
  'attr:rack', 'attr:rack,r1*', 'attr:rack,R12', 'attr:rack,x_y', 'attr:rack,x%y', 'attr:rack,back\\slash', 'attr:rack,ünï', 'attr:rack,ÜNÏ',
  'attr:rack=12', 'attr:rack!=12', 'attr:cores>=64', 'attr:cores<8', 'attr:cores=07', 'attr:gpu_model,?100', 'attr:rack>=7', 'attr:rack<12.5', 'attr:rack>x', 'attr:cores>-1', 'attr:rack<=0',
];

test('compileQuery: narrowing in SQL then evalQuery selects exactly what a scan of every node selects', () => {
  const store = fixture(600);
  const r = rng(7);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const gen = (depth: number): string => {
    const x = r();
    if (depth <= 0 || x < 0.4) return pick(TERMS);
    if (x < 0.6) return `not ${gen(depth - 1)}`;
    if (x < 0.8) return `(${gen(depth - 1)} and ${gen(depth - 1)})`;
    return `(${gen(depth - 1)} or ${gen(depth - 1)})`;
  };
  for (const t of TERMS) assert.deepEqual(viaSql(store, t), viaScan(store, t), t);
  for (let i = 0; i < 400; i++) {
    const text = gen(3);
    assert.deepEqual(viaSql(store, text), viaScan(store, text), text);
  }
  store.close();
});

test('compileQuery: exact terms need no post-filter; numbers, stale and hw only narrow', () => {
  assert.equal(compileQuery(parseQuery('group:compute and attr:rack,r12 and not state:ready')).exact, true);
  assert.equal(compileQuery(parseQuery('attr:cores>=64')).exact, false);
  assert.equal(compileQuery(parseQuery('not attr:cores>=64')).sql, '1 = 1', 'NOT of a necessary condition says nothing');
  assert.equal(compileQuery(parseQuery('hw:cpus>=8')).exact, false);
  assert.equal(compileQuery(parseQuery('state:stale')).exact, false);
  const c = compileQuery(parseQuery('group:g and attr:rack,r1'), { ilike: 'ILIKE', placeholder: (n) => `$${n}` });
  assert.match(c.sql, /grp ILIKE \$1 .* a\.key = \$2 AND a\.value ILIKE \$3/);
  assert.deepEqual(c.params, ['g', 'rack', 'r1']);
});

test('globToLike escapes LIKE wildcards and refuses what LIKE cannot mean the same way', () => {
  assert.equal(globToLike('n00*'), 'n00%');
  assert.equal(globToLike('a_b%c?'), 'a\\_b\\%c_');
  assert.equal(globToLike('back\\slash'), 'back\\\\slash');
  assert.equal(globToLike('n[01]'), undefined);
  assert.equal(globToLike('ünï'), undefined);
});

test('NodeService.select reads names, ranges, globs and queries through the database with the same results as a scan', async () => {
  const { NodeService } = await import('../../src/nodes/service.js');
  const { parseConfig } = await import('../../src/config/load.js');
  const { parseSelector, selectNodes } = await import('../../src/nodes/select.js');
  const store = fixture(300, 3);
  const svc = new NodeService(store, parseConfig({ statedir: '/nonexistent' }));
  const all = store.nodes.all();
  for (const args of [['n00*'], ['n00[10-12]*'], ['n0?1*'], ['*1'], ['n0001', 'n0003'], ['52:54:00:00:00:05'], ['n01[0-9]?'], ['group:gpu or name:n000*'], ['N00*']]) {
    assert.deepEqual(svc.select(args).map((n) => n.name), selectNodes(parseSelector(args), all).map((n) => n.name), args.join(' '));
  }
  assert.throws(() => svc.select(['n9999'], { requireAll: true }), /no node named "n9999"/);
  store.close();
});
