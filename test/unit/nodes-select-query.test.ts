import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expandRange, globToRegExp, parseSelector, selectNodes, NotFound } from '../../src/nodes/select.js';
import { parseQuery, evalQuery, looksLikeQuery } from '../../src/nodes/query.js';
import { nodeRecord, type Node } from '../../src/nodes/types.js';

function node(name: string, over: Partial<Node> = {}): Node {
  return nodeRecord({ mac: over.mac ?? '52:54:00:00:00:' + name.slice(-2).padStart(2, '0'), name, vnfs: 'centos', ...over });
}

test('Perceus ranges expand zero-padded by the width of their bounds', () => {
  assert.deepEqual(expandRange('n00[00-03,20]'), ['n0000', 'n0001', 'n0002', 'n0003', 'n0020']);
  assert.deepEqual(expandRange('n[8-10]'), ['n8', 'n9', 'n10']);
  assert.deepEqual(expandRange('r[1-2]n[01-02]'), ['r1n01', 'r1n02', 'r2n01', 'r2n02']);
  assert.deepEqual(expandRange('plain'), ['plain']);
  assert.deepEqual(expandRange('n[ab]'), ['n[ab]'], 'a character class is left for the glob');
  assert.throws(() => expandRange('n[5-1]'), /runs backwards/);
});

test('globs match whole names with * ? and classes, and nothing else is special', () => {
  assert.ok(globToRegExp('n00*').test('n0012'));
  assert.ok(!globToRegExp('n00*').test('xn0012'));
  assert.ok(globToRegExp('n0?1').test('n0a1'));
  assert.ok(!globToRegExp('n0?1').test('n0ab1'));
  assert.ok(globToRegExp('n[ab]1').test('nb1'));
  assert.ok(!globToRegExp('a.b').test('axb'), '. is literal');
});

test('name selectors: ranges, globs and MACs; requireAll refuses an exact name that does not exist', () => {
  const nodes = [node('n0000'), node('n0001'), node('n0002'), node('n0020', { mac: 'aa:bb:cc:dd:ee:ff' })];
  const names = (args: string[]) => selectNodes(parseSelector(args), nodes).map((n) => n.name);
  assert.deepEqual(names(['n00[00-01]']), ['n0000', 'n0001']);
  assert.deepEqual(names(['n000*']), ['n0000', 'n0001', 'n0002']);
  assert.deepEqual(names(['AA-BB-CC-DD-EE-FF']), ['n0020']);
  assert.deepEqual(names(['n0002', 'n0000']), ['n0000', 'n0002']);
  assert.throws(() => selectNodes(parseSelector(['n0009']), nodes, { requireAll: true }), NotFound);
  assert.deepEqual(selectNodes(parseSelector(['x*']), nodes, { requireAll: true }), [], 'a glob may match nothing');
});

test('query expressions combine terms with and/or/not and parentheses', () => {
  const nodes = [
    node('n0000', { group: 'compute', attrs: { rack: 'r12', cores: '64' }, state: 'ready' }),
    node('n0001', { group: 'compute', attrs: { rack: 'r12', cores: '16' }, state: 'init' }),
    node('n0002', { group: 'gpu', attrs: { rack: 'r13' }, state: 'init' }),
    node('head', { group: 'infra', enabled: false }),
  ];
  const q = (text: string) => nodes.filter((n) => evalQuery(parseQuery(text), n)).map((n) => n.name);
  assert.deepEqual(q('group:compute and attr:rack,r12 and not state:ready'), ['n0001']);
  assert.deepEqual(q('group:gpu or name:head'), ['n0002', 'head']);
  assert.deepEqual(q('not (group:compute or group:gpu)'), ['head']);
  assert.deepEqual(q('attr:rack'), ['n0000', 'n0001', 'n0002']);
  assert.deepEqual(q('attr:cores>=32'), ['n0000']);
  assert.deepEqual(q('attr:rack,r1*'), ['n0000', 'n0001', 'n0002']);
  assert.deepEqual(q('enabled:no'), ['head']);
  assert.deepEqual(q('group:compute state:init'), ['n0001'], 'juxtaposition means and');
  assert.deepEqual(q('a or b and c'.replace(/a|b|c/g, (m) => ({ a: 'name:head', b: 'group:gpu', c: 'state:ready' })[m]!)), ['head'], 'and binds tighter than or');
});

test('bad query expressions are usage errors that point at the offending token', () => {
  assert.throws(() => parseQuery('group:compute and'), /column 18: expected a term, found the end/);
  assert.throws(() => parseQuery('group:compute )'), /column 15: unexpected "\)"/);
  assert.throws(() => parseQuery('(group:compute'), /expected '\)'/);
  assert.throws(() => parseQuery('colour:red'), /unknown key "colour"/);
  assert.throws(() => parseQuery('group:'), /"group:" needs a value/);
  assert.throws(() => parseQuery('attr:a b c ('), /column 13: expected a term, found the end/);
  try {
    parseQuery('group:a and or');
  } catch (e) {
    assert.match((e as Error).message, /\n  group:a and or\n {14}\^/);
  }
});

test('MACs and plain names are not mistaken for queries', () => {
  assert.equal(looksLikeQuery(['aa:bb:cc:dd:ee:ff']), false);
  assert.equal(looksLikeQuery(['n0000', 'n00*']), false);
  assert.equal(looksLikeQuery(['group:compute']), true);
  assert.equal(looksLikeQuery(['not group:gpu']), true);
});
