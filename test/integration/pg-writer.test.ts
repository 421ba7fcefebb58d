/**
 * The write-through of a server's replica (src/store/pg/writer.ts) against a real PostgreSQL,
 * two "servers" in one process (each an in-memory replica, its pool and its writer): the same
 * store code writes the replica and PostgreSQL gets the rows; a conflicting admin change is
 * refused (409) and undone in the replica; a node report from a stale replica does not undo an
 * admin change of another column; boot once flips once; with the database unreachable, node
 * reports are held and admin changes refused (503) and undone.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { PostgresBackend } from '../../src/store/pg/backend.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { PgReplica } from '../../src/store/pg/replica.js';
import { WriteRefused, WriteTag, WriteThrough } from '../../src/store/pg/writer.js';
import { isConnectionError } from '../../src/server/pg-serve.js';
import type { NamingPolicy } from '../../src/store/nodes.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';

const skip = postgresUnavailable();
let pg: PostgresLab | undefined;
before(async () => {
  if (!skip) pg = await startPostgres();
});
after(async () => pg?.stop());

const policy: NamingPolicy = { pattern: 'n####', firstNumber: 1, defaultGroup: '', defaultVnfs: '' };

interface Server {
  store: Store;
  pg: PostgresBackend;
  replica: PgReplica;
  writer: WriteThrough;
  flips: string[];
  /** Run `fn` as one admin operation and wait until PostgreSQL has it. */
  admin<T>(fn: () => T): Promise<T>;
  close(): Promise<void>;
}

async function server(url: string, id: string): Promise<Server> {
  const store = new Store(openDatabase(':memory:'), { serverId: id });
  const backend = PostgresBackend.connect(url, id, { max: 4 });
  const flips: string[] = [];
  // eslint-disable-next-line prefer-const
  let replica: PgReplica;
  const writer = new WriteThrough(store.db, backend, {
    refresh: (k) => replica.refresh(k),
    invalidate: () => replica.invalidate(),
    onBootFlip: (mac) => flips.push(mac),
    warn: () => undefined,
    isConnectionError,
  });
  replica = new PgReplica(store.db, backend.sql, { applying: (fn) => writer.suspended(fn) });
  await replica.load();
  return {
    store,
    pg: backend,
    replica,
    writer,
    flips,
    async admin(fn) {
      const tag = new WriteTag();
      const out = writer.tagged(tag, fn);
      await writer.settle(tag);
      return out;
    },
    async close() {
      await writer.close();
      await backend.close().catch(() => undefined);
      store.close();
    },
  };
}

test('write-through: admin changes reach PostgreSQL and the other replica; a conflict is refused and undone; reports keep other columns; boot once flips once', { skip }, async () => {
  const url = await pg!.createDatabase('writer1');
  const setup = PostgresBackend.connect(url, 'setup', { max: 1 });
  await migratePostgres(setup.sql);
  const [a, b] = [await server(url, 'boot-a'), await server(url, 'boot-b')];
  try {
    const M1 = '52:54:00:88:00:01';
    const M2 = '52:54:00:88:00:02';
    await a.admin(() => a.store.nodes.add({ mac: M1, name: 'db1', attrs: { console: 'ttyS0' } } as never, policy));
    assert.deepEqual((await setup.nodeByMac(M1))?.attrs, { console: 'ttyS0' }, 'in PostgreSQL when the operation settles');
    await b.replica.poll();
    assert.equal(b.store.nodes.byMac(M1)?.name, 'db1', 'the other replica follows');

    // A transaction the code rolls back (a refused second change) sends nothing.
    await assert.rejects(
      a.admin(() =>
        a.store.db.transaction(() => {
          a.store.nodes.set([M1], 'group', 'rolledback');
          throw new Error('the second change is refused');
        })(),
      ),
      /second change is refused/,
    );
    await a.writer.drain();
    assert.equal((await setup.nodeByMac(M1))?.group, '', 'nothing of a rolled-back transaction reaches PostgreSQL');

    // B has not caught up with A's next change: its own validation passes, PostgreSQL refuses.
    await a.admin(() => a.store.nodes.add({ mac: M2, name: 'db2' } as never, policy));
    const refused = b.admin(() => b.store.nodes.add({ mac: '52:54:00:88:00:03', name: 'db2' } as never, policy));
    await assert.rejects(refused, (e: unknown) => e instanceof WriteRefused && e.status === 409 && /another server/.test(e.message));
    assert.equal(b.store.nodes.byMac('52:54:00:88:00:03'), undefined, 'undone in the replica');
    assert.equal((await setup.sql`SELECT 1 FROM nodes WHERE mac = '52:54:00:88:00:03'`).length, 0);

    // A node report through B's stale replica (B has not seen the group change) keeps A's change.
    await a.admin(() => a.store.nodes.set([M1], 'group', 'rack7'));
    b.store.nodes.touch(M1, 'ready', '10.0.0.9');
    b.store.inventory.recordHealth(M1, { uptime: 5, load: 0.5, memfree_kb: 100 } as never);
    await b.writer.drain();
    const n = await setup.nodeByMac(M1);
    assert.deepEqual([n?.group, n?.state], ['rack7', 'ready']);
    assert.equal((await setup.sql`SELECT uptime FROM health WHERE mac = ${M1}`)[0]?.uptime, 5, 'health is in PostgreSQL');
    await a.replica.poll();
    assert.equal(a.store.inventory.health(M1)?.uptime, 5, 'and in the other replica');

    // boot once: both servers serve the once script (both replicas say once) and flip; one wins.
    await a.admin(() => a.store.nodes.set([M1], 'boot', 'once'));
    await b.replica.poll();
    assert.equal(b.store.nodes.byMac(M1)?.boot, 'once');
    a.store.nodes.set([M1], 'boot', 'local');
    b.store.nodes.set([M1], 'boot', 'local');
    await Promise.all([a.writer.drain(), b.writer.drain()]);
    assert.equal(a.flips.length + b.flips.length, 1, 'one server won the flip');
    assert.equal(a.writer.counts.flipsLost + b.writer.counts.flipsLost, 1, 'the other lost it');
    assert.equal((await setup.nodeByMac(M1))?.boot, 'local');

    // Unreachable (the pool ended): node reports are held, an admin change is refused and undone.
    await b.pg.sql.end();
    b.store.nodes.touch(M2, 'init', undefined);
    await b.writer.flush();
    assert.ok(b.writer.queued >= 1, 'the report is held');
    await assert.rejects(
      b.admin(() => b.store.nodes.set([M2], 'vnfs', 'other')),
      (e: unknown) => e instanceof WriteRefused && e.status === 503,
    );
    assert.equal((await setup.nodeByMac(M2))?.vnfs, '');
  } finally {
    await a.close();
    await b.close();
    await setup.close();
  }
});
