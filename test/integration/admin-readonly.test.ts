/**
 * What is still read-only on a server on PostgreSQL: nothing while the database is reachable
 * (admin writes go through it: test/integration/pg-write.test.ts). While it is unreachable, reads
 * are answered from the server's replica, and a request that would change a row is refused with
 * 503 and the reason, the replica left as it was: a change PostgreSQL does not have would be lost
 * at the next reload, and the other servers would never see it. A request that changes no row
 * (here a logout; also a power action) still works.
 * The write-through (src/store/pg/writer.ts) is the real one over the fixture's store; with the
 * database known to be down it never contacts it (the outage against a real PostgreSQL is in
 * test/integration/pg-writer.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startAdmin } from './admin-fixture.js';
import { WriteThrough } from '../../src/store/pg/writer.js';
import type { PostgresBackend } from '../../src/store/pg/backend.js';

test('with the database unreachable, changes are refused with 503 and undone in the replica; reads and row-less requests still answer', async () => {
  const f = await startAdmin([18440, 18449]);
  const noDatabase = {} as PostgresBackend; // isUp() is false: the writer never calls it
  const writer = new WriteThrough(f.store.db, noDatabase, { refresh: async () => undefined, invalidate: () => undefined, warn: () => undefined, isConnectionError: () => true, isUp: () => false });
  const g = await startAdmin([18450, 18459], { store: f.store, service: f.service, tokens: f.tokens, writeThrough: { catchUp: async () => undefined, writer } });
  try {
    const auth = { Authorization: `Bearer ${f.tokens.admin}`, 'Content-Type': 'application/json' };
    f.service.add({ mac: '52:54:00:00:00:02', name: 'keep', attrs: { console: 'ttyS0' } });
    const before = JSON.stringify(f.store.nodes.all());
    const add = await fetch(`${g.base}/api/v1/nodes`, { method: 'POST', headers: auth, body: JSON.stringify({ mac: '52:54:00:00:00:01' }) });
    assert.equal(add.status, 503);
    assert.match(((await add.json()) as { error: string }).error, /database is unreachable.*nothing was changed/);
    const patch = await fetch(`${g.base}/api/v1/nodes/keep`, { method: 'PATCH', headers: auth, body: JSON.stringify({ group: 'rack1', attrs: { console: null, x: 'y' } }) });
    assert.equal(patch.status, 503);
    const del = await fetch(`${g.base}/api/v1/nodes/keep`, { method: 'DELETE', headers: auth });
    assert.equal(del.status, 503);
    assert.equal(JSON.stringify(f.store.nodes.all()), before, 'the replica is as before every refused change');
    const list = await fetch(`${g.base}/api/v1/nodes`, { headers: auth });
    assert.equal(list.status, 200);
    const logout = await fetch(`${g.base}/ui/logout`, { method: 'POST', redirect: 'manual' });
    assert.notEqual(logout.status, 503, 'a request that changes no row is not refused for the database');
    const bad = await fetch(`${g.base}/api/v1/nodes`, { method: 'POST', headers: auth, body: JSON.stringify({ mac: 'zz' }) });
    assert.equal(bad.status, 400, 'bad input is still named as such (validation runs before any write)');
  } finally {
    await g.close().catch(() => undefined);
    await f.close();
  }
});
