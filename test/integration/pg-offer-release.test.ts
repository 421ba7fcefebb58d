/**
 * Option 54 on PostgreSQL (src/dhcp/policy.ts, pg-serve.ts' releaseOfferTakenElsewhere): when a
 * client's REQUEST names another server, the offer row this server wrote is released so the
 * address is free at once — but never the address the client is taking, another server's row,
 * or a bound lease. Against a real PostgreSQL (test/lab/postgres.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresUnavailable, startPostgres } from '../lab/postgres.js';
import { PostgresBackend } from '../../src/store/pg/backend.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { releaseOfferTakenElsewhere } from '../../src/server/pg-serve.js';

const why = postgresUnavailable();

test('a REQUEST naming another server releases only this server\'s own offer of another address', { skip: why, timeout: 60_000 }, async () => {
  const pg = await startPostgres();
  const a = PostgresBackend.connect(await pg.createDatabase('offers'), 'a', { max: 2 });
  const b = PostgresBackend.connect(pg.url('offers'), 'b', { max: 2 });
  try {
    await migratePostgres(a.sql);
    const now = Date.now();
    const hold = now + 60_000;
    const mac = (n: number) => `52:54:00:00:05:0${n}`;
    const state = async (m: string) => (await a.leaseByMac(m))?.state;

    // b offered .10 to client 1, which took an address from a server not on this database.
    assert.ok((await b.offerLease({ mac: mac(1), ip: '10.9.0.10', expiresAt: hold, now })).ok);
    assert.equal((await a.offerLease({ mac: mac(2), ip: '10.9.0.10', expiresAt: hold, now })).ok, false, 'held by the offer');
    assert.equal(await releaseOfferTakenElsewhere(b, mac(1), '10.9.0.99', now), true);
    assert.equal(await state(mac(1)), 'released');
    assert.ok((await a.allocateLease({ mac: mac(2), ip: '10.9.0.10', expiresAt: hold, now })).ok, 'the address is free again at once');

    // The address the client takes from the other server on this database stays offered (about to be bound).
    assert.ok((await b.offerLease({ mac: mac(3), ip: '10.9.0.11', expiresAt: hold, now })).ok);
    assert.equal(await releaseOfferTakenElsewhere(b, mac(3), '10.9.0.11', now), false);
    assert.equal(await state(mac(3)), 'offered');

    // Another server's offer, and a bound lease, are left alone.
    assert.ok((await a.offerLease({ mac: mac(4), ip: '10.9.0.12', expiresAt: hold, now })).ok);
    assert.equal(await releaseOfferTakenElsewhere(b, mac(4), '10.9.0.99', now), false);
    assert.equal(await state(mac(4)), 'offered');
    assert.ok((await b.allocateLease({ mac: mac(5), ip: '10.9.0.13', expiresAt: hold, now })).ok);
    assert.equal(await releaseOfferTakenElsewhere(b, mac(5), '10.9.0.99', now), false);
    assert.equal(await state(mac(5)), 'bound');
  } finally {
    await a.close();
    await b.close();
    await pg.stop();
  }
});
