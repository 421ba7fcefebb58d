/**
 * What is still read-only on PostgreSQL: nothing while the database is reachable (admin writes
 * go through it, test/integration/pg-write.test.ts). While it is unreachable, a server answers
 * reads from its replica but refuses every change with 503 and the reason: a change PostgreSQL
 * does not have would be undone by the next reload, and the other servers would never see it.
 * Here the write-through's catch-up reports the outage (as PgServe.catchUp does).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startAdmin } from './admin-fixture.js';
import { WriteThrough } from '../../src/store/pg/writer.js';

test('with the database unreachable, changes are refused with 503 and the reason; reads still answer', async () => {
  const why = 'the database postgres://db/pxeherd is unreachable: changes need it (reads are served from this server\'s replica); try again when it is back';
  const writer = { tagged: <T>(_t: unknown, fn: () => T) => fn(), settle: async () => undefined } as unknown as Pick<WriteThrough, 'tagged' | 'settle'>;
  const f = await startAdmin([18440, 18449], { writeThrough: { catchUp: async () => why, writer } });
  try {
    const auth = { Authorization: `Bearer ${f.tokens.admin}`, 'Content-Type': 'application/json' };
    const add = await fetch(`${f.base}/api/v1/nodes`, { method: 'POST', headers: auth, body: JSON.stringify({ mac: '52:54:00:00:00:01' }) });
    assert.equal(add.status, 503);
    assert.match(((await add.json()) as { error: string }).error, /unreachable: changes need it/);
    assert.equal(f.store.nodes.all().length, 0, 'nothing was written');
    const list = await fetch(`${f.base}/api/v1/nodes`, { headers: auth });
    assert.equal(list.status, 200);
  } finally {
    await f.close();
  }
});
