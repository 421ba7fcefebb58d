import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planScripts, placesFor, compareBytes, type Listing } from '../../src/nodescripts/collect.js';

const x = (name: string) => ({ name, isFile: true, executable: true });
const nx = (name: string) => ({ name, isFile: true, executable: false });
const dir = (name: string) => ({ name, isFile: false, executable: true });

test('scripts from all places are merged and sorted by name in byte order', () => {
  const listings: Listing[] = [
    { where: 'all', dir: '/s/init/all', entries: [x('50-b'), x('10-a')] },
    { where: 'group/compute', dir: '/s/init/group/compute', entries: [x('30-g')] },
    { where: 'vnfs/centos', dir: '/s/init/vnfs/centos', entries: [x('20-v')] },
    { where: 'node/n0001', dir: '/s/init/node/n0001', entries: [x('40-n')] },
  ];
  const plan = planScripts(listings);
  assert.deepEqual(
    plan.order.map((s) => `${s.where}/${s.name}`),
    ['all/10-a', 'vnfs/centos/20-v', 'group/compute/30-g', 'node/n0001/40-n', 'all/50-b'],
  );
  assert.equal(plan.order[0]!.path, '/s/init/all/10-a');
});

test('the same name in a more specific place wins: node > group > all > vnfs', () => {
  const l = (where: Listing['where']): Listing => ({ where, dir: `/s/${where}`, entries: [x('10-same')] });
  assert.equal(planScripts([l('vnfs/v'), l('all'), l('group/g'), l('node/n')]).order[0]!.where, 'node/n');
  assert.equal(planScripts([l('vnfs/v'), l('all'), l('group/g')]).order[0]!.where, 'group/g');
  assert.equal(planScripts([l('vnfs/v'), l('all')]).order[0]!.where, 'all');
  assert.equal(planScripts([l('vnfs/v')]).order[0]!.where, 'vnfs/v');
  const plan = planScripts([l('vnfs/v'), l('all'), l('group/g'), l('node/n')]);
  assert.equal(plan.order.length, 1);
  assert.deepEqual(
    plan.skipped.map((s) => [s.where, s.kind, s.reason]),
    [
      ['group/g', 'overridden', 'overridden by node/n/10-same'],
      ['all', 'overridden', 'overridden by node/n/10-same'],
      ['vnfs/v', 'overridden', 'overridden by node/n/10-same'],
    ],
  );
});

test('byte order, not locale order: upper case before lower case, "10" before "9"', () => {
  const plan = planScripts([{ where: 'all', dir: '/d', entries: [x('b'), x('B'), x('9-x'), x('10-x'), x('a'), x('é'), x('z')] }]);
  assert.deepEqual(plan.order.map((s) => s.name), ['10-x', '9-x', 'B', 'a', 'b', 'z', 'é']);
  assert.ok(compareBytes('Z', 'a') < 0);
});

test('dotfiles, directories and backup files ending in ~ are ignored silently', () => {
  const plan = planScripts([{ where: 'all', dir: '/d', entries: [x('.hidden'), dir('10-dir'), x('20-old~'), x('30-ok'), x('.30-ok.swp')] }]);
  assert.deepEqual(plan.order.map((s) => s.name), ['30-ok']);
  assert.deepEqual(plan.skipped, []);
});

test('non-executable files are skipped and reported; in a specific place they disable the general script', () => {
  const plan = planScripts([
    { where: 'all', dir: '/a', entries: [x('10-a'), nx('20-b'), x('30-c')] },
    { where: 'node/n1', dir: '/n', entries: [nx('30-c')] },
  ]);
  assert.deepEqual(plan.order.map((s) => s.name), ['10-a']);
  const reasons = plan.skipped.map((s) => `${s.where}/${s.name}:${s.kind}`);
  assert.deepEqual(reasons, ['all/20-b:not-executable', 'node/n1/30-c:not-executable', 'all/30-c:overridden']);
  assert.match(plan.skipped[0]!.reason, /chmod \+x/);
});

test('file names with control characters are skipped, never planned', () => {
  const plan = planScripts([{ where: 'all', dir: '/a', entries: [x('10-a\nrm -rf /'), x('20-tab\there'), x('30-ok')] }]);
  assert.deepEqual(plan.order.map((s) => s.name), ['30-ok']);
  assert.deepEqual(plan.skipped.map((s) => s.kind), ['unsafe-name', 'unsafe-name']);
});

test('placesFor lists node, group, all, vnfs and refuses names that could leave the directory', () => {
  const ok = placesFor('init', { name: 'n0001', group: 'compute', vnfs: 'centos' });
  assert.deepEqual(ok.places.map((p) => p.rel), ['init/node/n0001', 'init/group/compute', 'init/all', 'init/vnfs/centos']);
  assert.deepEqual(ok.problems, []);
  const bad = placesFor('init', { name: '../../etc', group: 'a/b', vnfs: '' });
  assert.deepEqual(bad.places.map((p) => p.rel), ['init/all']);
  assert.equal(bad.problems.length, 2);
  const badState = placesFor('../x', { name: 'n1', group: 'g', vnfs: 'v' });
  assert.deepEqual(badState.places, []);
  assert.match(badState.problems[0]!, /state/);
});
