// The node page says which root-filesystem revision a stateless node runs, and never shows
// its root password hash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startAdmin } from './admin-fixture.js';

test('node page: the revision the node runs (its last switch_root), the password hash hidden', async () => {
  const f = await startAdmin([18290, 18299]);
  try {
    const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };
    const hash = '$6$saltsalt$' + 'b'.repeat(86);
    f.store.nodes.add({ mac: '52:54:00:aa:00:01', name: 'n0000', vnfs: 'deb12', attrs: { root_password_hash: hash } }, policy);
    f.store.events.record({ mac: '52:54:00:aa:00:01', node: 'n0000', kind: 'image.switch_root', detail: { rev: 3, root: '/newroot', init: '/sbin/init' } });
    f.store.events.flush?.();
    const res = await fetch(`${f.base}/ui/nodes/n0000`, { headers: { Authorization: `Bearer ${f.tokens.admin}` } });
    const html = await res.text();
    assert.equal(res.status, 200);
    assert.match(html, /<th>Runs<\/th><td id="running" class="mono">deb12 r3<\/td>/);
    assert.ok(!html.includes(hash), 'the hash is not on the page');
    assert.match(html, /\(set, hidden\)/);
  } finally {
    await f.close();
  }
});

test('the root password hash is never shown: REST node/group JSON says set/unset, events and the groups page redact it', async () => {
  const f = await startAdmin([18290, 18299]);
  const auth = { headers: { Authorization: `Bearer ${f.tokens.admin}` } };
  try {
    const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };
    const hash = '$y$j9T$abcdefghijklmnop$' + 'Q'.repeat(43);
    const ghash = '$6$groupsalt$' + 'g'.repeat(86);
    f.store.nodes.add({ mac: '52:54:00:aa:00:01', name: 'n0000', attrs: { root_password_hash: hash, rack: 'r1' } }, policy);
    f.store.nodes.add({ mac: '52:54:00:aa:00:02', name: 'n0001', group: 'gpu' }, policy);
    f.store.nodes.add({ mac: '52:54:00:aa:00:03', name: 'n0002' }, policy);
    f.store.groups.set('gpu', 'root_password_hash', ghash);
    // A nodescript that quoted the hash on stderr, and an event naming the attribute.
    f.store.events.record({ mac: '52:54:00:aa:00:01', node: 'n0000', kind: 'nodescript.stderr', detail: { script: '58-os-identity', stderr: `bad: ${hash} here` } });
    f.store.events.record({ mac: '52:54:00:aa:00:01', node: 'n0000', kind: 'node.set', detail: { key: 'root_password_hash', value: 'not-a-hash-but-secret' } });
    f.store.events.flush?.();

    const one = await (await fetch(`${f.base}/api/v1/nodes/n0000`, auth)).json();
    assert.equal(one.attrs.root_password_hash, '(set, hidden)');
    assert.equal(one.attrs.rack, 'r1');
    assert.equal(one.root_password, 'set');
    assert.equal((await (await fetch(`${f.base}/api/v1/nodes/n0001`, auth)).json()).root_password, 'set', 'from its group');
    assert.equal((await (await fetch(`${f.base}/api/v1/nodes/n0002`, auth)).json()).root_password, 'unset');
    const list = await (await fetch(`${f.base}/api/v1/nodes`, auth)).text();
    const group = await (await fetch(`${f.base}/api/v1/groups/gpu`, auth)).text();
    const events = await (await fetch(`${f.base}/api/v1/events?node=n0000`, auth)).text();
    const groupsPage = await (await fetch(`${f.base}/ui/groups`, auth)).text();
    const nodePage = await (await fetch(`${f.base}/ui/nodes/n0001`, auth)).text();
    for (const [what, text] of [['node list', list], ['group JSON', group], ['events', events], ['groups page', groupsPage], ['node page (group hash)', nodePage]] as const) {
      assert.ok(!text.includes(hash) && !text.includes(ghash) && !text.includes('not-a-hash-but-secret'), `${what} does not carry the secret`);
    }
    assert.match(events, /<hash hidden>/);
    assert.match(group, /"root_password_hash":"\(set, hidden\)"/);
    assert.match(groupsPage, /root_password_hash<\/b>=\(set, hidden\)/);
    // The store keeps the value: the node still gets it through identity.tar.
    assert.equal(f.store.nodes.byName('n0000')!.attrs.root_password_hash, hash);
  } finally {
    await f.close();
  }
});
