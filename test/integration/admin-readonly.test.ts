/**
 * The admin API and UI of a server on PostgreSQL are read-only for now (src/server/pg-serve.ts):
 * every request that would change something is refused with 409 and the reason, reads work.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startAdmin } from './admin-fixture.js';

test('a read-only admin refuses changes with 409 and the reason, and still answers reads', async () => {
  const why = 'this server runs on PostgreSQL, where the admin API and UI are read-only so far';
  const f = await startAdmin([18440, 18449], { readOnly: why });
  try {
    const auth = { Authorization: `Bearer ${f.tokens.admin}`, 'Content-Type': 'application/json' };
    const add = await fetch(`${f.base}/api/v1/nodes`, { method: 'POST', headers: auth, body: JSON.stringify({ mac: '52:54:00:00:00:01' }) });
    assert.equal(add.status, 409);
    assert.match(await add.text(), /read-only so far/);
    assert.equal(f.store.nodes.all().length, 0, 'nothing was written');
    const list = await fetch(`${f.base}/api/v1/nodes`, { headers: auth });
    assert.equal(list.status, 200);
  } finally {
    await f.close();
  }
});
