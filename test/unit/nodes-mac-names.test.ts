import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMac } from '../../src/nodes/mac.js';
import { nameError, stateError, validateAttrKey } from '../../src/nodes/names.js';
import { firstFreeNumber, formatName, numberOf, parseNamePattern } from '../../src/nodes/naming.js';

test('MACs in every accepted spelling normalize to lower-case colon form', () => {
  for (const s of ['aa:bb:cc:dd:ee:ff', 'AA:BB:CC:DD:EE:FF', 'aa-bb-cc-dd-ee-ff', 'AABB.CCDD.EEFF', 'aabbccddeeff', '01:aa:bb:cc:dd:ee:ff', '01-AA-BB-CC-DD-EE-FF', ' aa:bb:cc:dd:ee:ff ']) {
    assert.deepEqual(parseMac(s), { ok: true, mac: 'aa:bb:cc:dd:ee:ff' }, s);
  }
});

test('invalid MACs are refused with a message naming the input and the accepted forms', () => {
  for (const s of ['', 'aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee:ff:00', 'gg:bb:cc:dd:ee:ff', 'aa:bb-cc:dd:ee:ff', 'aabb.ccdd', '02:aa:bb:cc:dd:ee:ff', 'aa::bb:cc:dd:ee']) {
    const r = parseMac(s);
    assert.equal(r.ok, false, s);
    if (!r.ok) assert.match(r.error, /invalid MAC address .*aa:bb:cc:dd:ee:ff/);
  }
});

test('node names that could reach outside their directory are refused', () => {
  for (const bad of ['../x', '../../usr/sbin', 'a/b', '.hidden', '-x', '', 'a..b', 'x'.repeat(64), 'a b', 'a\0b', 'n\u00e9']) {
    assert.ok(nameError('node', bad), `should refuse ${JSON.stringify(bad)}`);
  }
  for (const good of ['n0000', 'compute-01', 'a.b_c', 'A', 'x'.repeat(63)]) assert.equal(nameError('node', good), undefined, good);
  assert.match(nameError('group', '../g')!, /group name "..\/g" is not allowed: use/);
});

test('state words follow ^[a-z][a-z0-9_-]{0,31}$', () => {
  for (const ok of ['init', 'ready', 'post-install', 'a1_b']) assert.equal(stateError(ok), undefined);
  for (const bad of ['Init', '../init', '', '1init', 'a'.repeat(33), 'in it', 'init\n']) assert.ok(stateError(bad), bad);
});

test('attribute keys must be usable as ATTR_<KEY> environment names', () => {
  assert.equal(validateAttrKey('rack'), 'rack');
  assert.throws(() => validateAttrKey('rack-1'), /attribute key "rack-1" is not allowed/);
  assert.throws(() => validateAttrKey('1x'), /not allowed/);
});

test('name patterns: n#### zero-pads, grows past the width, and fills the first gap', () => {
  const p = parseNamePattern('n####');
  assert.equal(formatName(p, 7), 'n0007');
  assert.equal(formatName(p, 12345), 'n12345');
  assert.equal(numberOf(p, 'n0042'), 42);
  assert.equal(numberOf(p, 'n042'), undefined, 'a differently padded name does not occupy the number');
  assert.equal(numberOf(p, 'x0042'), undefined);
  assert.equal(firstFreeNumber(p, 0, ['n0000', 'n0001', 'n0003']), 2);
  assert.equal(firstFreeNumber(p, 5, ['n0000', 'n0005']), 6);
  assert.equal(firstFreeNumber(p, 0, []), 0);
  const q = parseNamePattern('rack1-c##.lab');
  assert.equal(formatName(q, 3), 'rack1-c03.lab');
  assert.throws(() => parseNamePattern('node'), /one run of #/);
  assert.throws(() => parseNamePattern('n#x#'), /one run of #/);
  assert.throws(() => parseNamePattern('../n##'), /invalid names/);
});
