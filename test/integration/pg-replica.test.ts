/**
 * The local SQLite replica of a server on PostgreSQL (src/store/pg/replica.ts) against a real
 * PostgreSQL: load, change-log rounds (including a transaction that commits after a later one,
 * which paging by id would skip), deletions, unique keys that moved between rows, the lease
 * callback, and following by NOTIFY.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { connectPostgres, type Sql } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { PgReplica } from '../../src/store/pg/replica.js';
import type { Lease } from '../../src/nodes/types.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';

const skip = postgresUnavailable();
let pg: PostgresLab | undefined;
before(async () => {
  if (!skip) pg = await startPostgres();
});
after(async () => pg?.stop());

const addNode = (sql: Sql | Parameters<Parameters<Sql['begin']>[0]>[0], mac: string, name: string, ip = '') =>
  sql`INSERT INTO nodes (mac, name, ip, created_at, updated_at) VALUES (${mac}, ${name}, ${ip}, 1, 1)`;

test('the replica loads, follows the change log without skipping a late commit, moves unique keys, deletes', { skip }, async () => {
  const url = await pg!.createDatabase('replica1');
  const sql = connectPostgres(url, { max: 4 });
  const store = new Store(openDatabase(':memory:'), { serverId: 'boot-a' });
  const leases: [string, Lease | undefined][] = [];
  const replica = new PgReplica(store.db, sql, { onLease: (mac, l) => leases.push([mac, l]) });
  try {
    await migratePostgres(sql);
    await sql`INSERT INTO groups (name, created_at) VALUES ('rack1', 1)`;
    await sql`INSERT INTO group_attrs (grp, key, value) VALUES ('rack1', 'console', 'ttyS0')`;
    await addNode(sql, '52:54:00:00:00:01', 'n0001');
    // A row only the replica has (a stale registration): the load removes it.
    store.nodes.register('52:54:00:00:00:99', { pattern: 'x##', firstNumber: 0, defaultGroup: '', defaultVnfs: '' });
    const counts = await replica.load();
    assert.equal(counts.nodes, 1);
    assert.deepEqual(store.nodes.all().map((n) => n.name), ['n0001']);
    assert.deepEqual(store.groups.attrsOf('rack1'), { console: 'ttyS0' });

    // A transaction that starts writing first and commits last: its change-log id is lower than
    // the one committed in between, so a reader paging by id would already be past it.
    let commitLate!: () => void;
    const late = sql.begin(async (tx) => {
      await addNode(tx, '52:54:00:00:00:02', 'n0002');
      await new Promise<void>((r) => (commitLate = r));
    });
    while (!commitLate) await new Promise((r) => setTimeout(r, 5));
    await addNode(sql, '52:54:00:00:00:03', 'n0003');
    assert.ok((await replica.poll()) >= 1);
    assert.deepEqual(store.nodes.all().map((n) => n.name), ['n0001', 'n0003'], 'the uncommitted one is not there yet');
    commitLate();
    await late;
    await replica.poll();
    assert.deepEqual(store.nodes.all().map((n) => n.name), ['n0001', 'n0002', 'n0003'], 'the late commit arrives');

    // A name moved from one MAC to another, a deletion, attributes, and a lease.
    await sql.begin(async (tx) => {
      await tx`DELETE FROM nodes WHERE mac = '52:54:00:00:00:01'`;
      await tx`UPDATE nodes SET name = 'n0001' WHERE mac = '52:54:00:00:00:03'`;
      await tx`INSERT INTO node_attrs (mac, key, value) VALUES ('52:54:00:00:00:03', 'role', 'db')`;
      await tx`INSERT INTO leases (mac, ip, expires_at, state, updated_at, server_id) VALUES ('52:54:00:00:00:03', '10.0.0.5', ${Date.now() + 60_000}, 'bound', 1, 'boot-b')`;
    });
    await replica.poll();
    assert.deepEqual(store.nodes.all().map((n) => `${n.mac} ${n.name}`), ['52:54:00:00:00:03 n0001', '52:54:00:00:00:02 n0002']);
    assert.deepEqual(store.nodes.byMac('52:54:00:00:00:03')!.attrs, { role: 'db' });
    assert.equal(store.leases.byIp('10.0.0.5')?.mac, '52:54:00:00:00:03');
    assert.deepEqual(leases.map(([m, l]) => [m, l?.ip, l?.state]), [['52:54:00:00:00:03', '10.0.0.5', 'bound']], 'the lease callback saw it');

    // Following: NOTIFY (or the timer) brings the next changes without an explicit poll.
    await replica.start();
    await sql`DELETE FROM leases`;
    await sql`UPDATE nodes SET grp = 'rack1'`;
    for (let i = 0; i < 200 && (store.leases.byMac('52:54:00:00:00:03') || !store.nodes.all().every((n) => n.group === 'rack1')); i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(store.leases.byMac('52:54:00:00:00:03'), undefined, 'the lease went');
    assert.equal(leases.at(-1)![1], undefined, 'and the callback said so');
    assert.ok(store.nodes.all().every((n) => n.group === 'rack1'));
  } finally {
    await replica.stop();
    await sql.end();
    store.close();
  }
});
