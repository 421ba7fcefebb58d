import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../../src/store/store.js';
import { SCHEMA_VERSION } from '../../src/store/db.js';
import { parseConfig, loadConfig, ConfigError } from '../../src/config/load.js';
import { pgOptions, redactUrl, suits } from '../../src/store/pg/connect.js';
import { decideClaim } from '../../src/store/backend.js';
import type { Lease } from '../../src/nodes/types.js';

test('config: database defaults to SQLite, server_id to the host name; bad values name the key', () => {
  const c = parseConfig({});
  assert.equal(c.database, '');
  assert.equal(c.server_id, os.hostname());
  assert.equal(parseConfig({ database: 'postgres://u@db/pxeherd', server_id: 'boot-a' }).database, 'postgres://u@db/pxeherd');
  assert.throws(() => parseConfig({ database: 'mysql://x' }), (e: Error) => e instanceof ConfigError && /database: must be a postgres:\/\/ URL/.test(e.message));
  assert.throws(() => parseConfig({ server_id: 'a b' }), /server_id: must be 1-63 letters/);
  assert.equal(parseConfig({ database: 'sqlite:db/pxeherd.db' }, '/etc/pxeherd').database, 'sqlite:/etc/pxeherd/db/pxeherd.db', 'relative to the configuration file');
  assert.equal(loadConfig(undefined, { PXEHERD_DATABASE: 'postgresql://u:pw@h1,h2/db?target_session_attrs=read-write' }).database, 'postgresql://u:pw@h1,h2/db?target_session_attrs=read-write');
  assert.throws(() => loadConfig(undefined, { PXEHERD_DATABASE: 'db.example' }), /PXEHERD_DATABASE: must be a postgres/);
});

test('PostgreSQL URLs: libpq socket directory, multi-host kept for postgres.js, passwords redacted', () => {
  assert.deepEqual(pgOptions('postgres://pxeherd@localhost/db?host=%2Frun%2Fpostgresql'), { url: 'postgres://pxeherd@localhost/db', path: '/run/postgresql/.s.PGSQL.5432' });
  assert.deepEqual(pgOptions('postgres://u@localhost:5433/db?sslmode=disable&host=/tmp/pg'), { url: 'postgres://u@localhost:5433/db?sslmode=disable', path: '/tmp/pg/.s.PGSQL.5433' });
  // Several hosts: postgres.js sees the first only, without target_session_attrs; the socket factory the rest.
  const m = pgOptions('postgres://u:pw@h1:5433,h2,[::1]:6000/db?target_session_attrs=primary&sslmode=disable');
  assert.equal(m.url, 'postgres://u:pw@h1:5433/db?sslmode=disable');
  assert.deepEqual(m.multi!.hosts, [{ host: 'h1', port: 5433 }, { host: 'h2', port: 5433 }, { host: '::1', port: 6000 }]);
  assert.equal(m.multi!.attrs, 'primary');
  assert.deepEqual([0, 1, 2].map((i) => m.multi!.urlOf(i)), ['postgres://u:pw@h1:5433/db?sslmode=disable', 'postgres://u:pw@h2:5433/db?sslmode=disable', 'postgres://u:pw@[::1]:6000/db?sslmode=disable']);
  assert.equal(pgOptions('postgres://h1,h2/db').multi!.attrs, 'any');
  assert.deepEqual(pgOptions('postgres://h1,h2/db').multi!.hosts, [{ host: 'h1', port: 5432 }, { host: 'h2', port: 5432 }]);
  assert.equal(pgOptions('postgres://u@h1/db?target_session_attrs=primary').multi, undefined, 'one host: postgres.js as before');
  assert.throws(() => pgOptions('postgres://h1,h2/db?target_session_attrs=writable'), /target_session_attrs must be one of any, read-write/);
  // PGTARGETSESSIONATTRS, as libpq: the default when the URL names none.
  assert.equal(pgOptions('postgres://h1,h2/db', { PGTARGETSESSIONATTRS: 'read-write' }).multi!.attrs, 'read-write');
  assert.equal(pgOptions('postgres://h1,h2/db?target_session_attrs=standby', { PGTARGETSESSIONATTRS: 'read-write' }).multi!.attrs, 'standby');
  assert.throws(() => pgOptions('postgres://h1,h2/db', { PGTARGETSESSIONATTRS: 'writable' }), /^InvalidInput: PGTARGETSESSIONATTRS=writable \(environment\), used with database URL postgres:\/\/h1,h2\/db: target_session_attrs must be one of/);
  assert.deepEqual(
    (['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'] as const).map((a) => [suits(a, { readOnly: true, standby: true }), suits(a, { readOnly: false, standby: false })]),
    [[true, true], [false, true], [true, false], [false, true], [true, false], [true, true]],
  );
  assert.throws(() => pgOptions('postgres://u@x/db?host=relative'), /host= must be a socket directory/);
  assert.throws(() => pgOptions('http://x/db'), /must start with postgres:\/\//);
  assert.equal(redactUrl('postgres://pxeherd:s3cret@db/pxeherd'), 'postgres://pxeherd:***@db/pxeherd');
  assert.equal(redactUrl('postgres://pxeherd@db/pxeherd'), 'postgres://pxeherd@db/pxeherd');
});

test('lease claims: one rule for both backends', () => {
  const now = 1000;
  const l = (mac: string, state: Lease['state'], expiresAt: number): Lease => ({ mac, ip: '10.0.0.5', expiresAt, hostname: '', state, subnet: '', updatedAt: 0 });
  const req = { mac: 'a', ip: '10.0.0.5', expiresAt: 2000 };
  assert.deepEqual(decideClaim(undefined, undefined, req, 'offer', now), { do: 'write' });
  assert.deepEqual(decideClaim(undefined, l('b', 'bound', 2000), req, 'allocate', now), { do: 'taken', holder: 'b' });
  assert.deepEqual(decideClaim(undefined, l('b', 'offered', 2000), req, 'offer', now), { do: 'taken', holder: 'b' });
  assert.deepEqual(decideClaim(undefined, l('b', 'bound', 999), req, 'allocate', now), { do: 'write', evict: 'b' }, 'expired');
  assert.deepEqual(decideClaim(undefined, l('b', 'released', 5000), req, 'allocate', now), { do: 'write', evict: 'b' }, 'released');
  const own = { ...l('a', 'offered', 2000), ip: '10.0.0.9' };
  assert.deepEqual(decideClaim(own, undefined, req, 'offer', now), { do: 'keep-own', lease: own }, 'the same offer again');
  assert.deepEqual(decideClaim(own, undefined, req, 'allocate', now), { do: 'write' }, 'a REQUEST for another address moves the client');
});

test('the synchronous SQLite store writes server_id on leases and events (migration 6)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-serverid-'));
  const store = Store.open(dir, { serverId: 'boot-a' });
  try {
    assert.equal(store.db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    store.leases.putMany([{ mac: '52:54:00:00:00:01', ip: '10.0.0.9', expiresAt: 2e12, hostname: '', state: 'bound', subnet: '', updatedAt: 1 }]);
    store.events.record({ kind: 'dhcp.ack', mac: '52:54:00:00:00:01' });
    store.events.flush();
    assert.deepEqual(store.db.prepare('SELECT server_id FROM leases UNION ALL SELECT server_id FROM events').pluck().all(), ['boot-a', 'boot-a']);
    const other = Store.open(dir);
    assert.equal(other.serverId, os.hostname(), 'default: the host name');
    other.close();
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
