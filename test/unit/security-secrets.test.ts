// Secrets in views and events: a root password hash is shown as "(set, hidden)" and crypt
// hashes are cut out of any event text; everything else passes through unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redactAttrs, redactEvent, redactEventJson, redactText, rootPasswordState, shownValue } from '../../src/security/secrets.js';

const HASH = '$6$rounds=5000$saltsalt$' + 'x'.repeat(86);

test('views: the hash attribute is shown as set, other attributes as they are, set/unset from effective attributes', () => {
  assert.deepEqual(redactAttrs({ root_password_hash: HASH, rack: 'r1' }), { root_password_hash: '(set, hidden)', rack: 'r1' });
  const plain = { rack: 'r1' };
  assert.equal(redactAttrs(plain), plain, 'nothing to hide: the same object');
  assert.equal(shownValue('attr.root_password_hash', HASH), '(set, hidden)');
  assert.equal(shownValue('rack', 'r1'), 'r1');
  assert.equal(rootPasswordState({ root_password_hash: HASH }), 'set');
  assert.equal(rootPasswordState({}), 'unset');
});

test('events: crypt hashes in any text, and secret attributes by key, are redacted; other events untouched', () => {
  assert.equal(redactText(`line with ${HASH} inside`), 'line with <hash hidden> inside');
  assert.equal(redactText('$y$j9T$abcdefgh$ijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNO'), '<hash hidden>');
  assert.equal(redactText('costs $5 and $10'), 'costs $5 and $10');
  const ev = { kind: 'nodescript.stderr', detail: { script: '90-x', stderr: `echo ${HASH}`, nested: { lines: [`a ${HASH}`] } } };
  const r = redactEvent(ev);
  assert.ok(!JSON.stringify(r).includes(HASH));
  assert.equal((r.detail as { script: string }).script, '90-x');
  assert.deepEqual((r.detail as { nested: { lines: string[] } }).nested.lines, ['a <hash hidden>']);
  const set = redactEvent({ kind: 'node.set', detail: { key: 'attr.root_password_hash', value: 'secret-not-a-hash' } });
  assert.equal((set.detail as { value: string }).value, '(set, hidden)');
  const plain = { kind: 'dhcp.ack', detail: { ip: '10.0.0.5' } };
  assert.equal(redactEvent(plain), plain, 'no $ and no secret key: the same object');
});

test('redactEventJson: the JSON the event log stores is that of the redacted detail', () => {
  const ev = { kind: 'nodescript.stderr', detail: { stderr: `echo ${HASH}` } };
  const r = redactEventJson(ev);
  assert.ok(!r.detailJson.includes(HASH));
  assert.deepEqual(JSON.parse(r.detailJson), r.event.detail);
  const set = redactEventJson({ kind: 'node.set', detail: { key: 'attr.root_password_hash', value: 'secret-not-a-hash' } });
  assert.equal(JSON.parse(set.detailJson).value, '(set, hidden)');
  const plain = { kind: 'dhcp.ack', detail: { ip: '10.0.0.5' } };
  assert.deepEqual(redactEventJson(plain), { event: plain, detailJson: '{"ip":"10.0.0.5"}' });
  assert.equal(redactEventJson({ kind: 'x' }).detailJson, '{}');
});
