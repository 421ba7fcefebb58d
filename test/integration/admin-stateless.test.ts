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
