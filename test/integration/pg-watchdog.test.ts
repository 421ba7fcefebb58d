/**
 * The pool watchdog (src/store/pg/connect.ts `withPoolTimeout` + `renewIfWedged`, the rule the
 * replica's round applies in `serve`), deterministically: a connection that never answers and
 * never throws — what postgres.js 3.4.10 can leave behind after a PostgreSQL restart, and what a
 * CI run once caught (the pool stayed dead for 120 s, no error the crash guard could see). A TCP
 * proxy in front of a real private PostgreSQL swallows everything at first (a wedged path), then
 * forwards. Connections opened while it swallowed stay swallowed, as wedged ones do: only a new
 * pool gets through (pools of one connection, so a second connection cannot route around the
 * wedged one). Checked on what the client sees, no timing asserted beyond "answered".
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { connectPostgres, PoolTimeout, poolRenewals, renewIfWedged, withPoolTimeout } from '../../src/store/pg/connect.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';

const why = postgresUnavailable();
let pg: PostgresLab;
before(async () => {
  if (!why) pg = await startPostgres({ database: 'watchdog' });
});
after(async () => {
  if (!why) await pg.stop();
});

test('a pool whose connections never answer is replaced by the watchdog rule and answers again; without it, it stays stuck', { skip: why, timeout: 60_000 }, async () => {
  let forward = false;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (!forward) return; // swallowed: accepted, read, never answered, never closed
    const upstream = net.connect(path.join(pg.socketDir, '.s.PGSQL.5432'));
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const port = (proxy.address() as net.AddressInfo).port;
  const url = `postgres://${pg.user}@127.0.0.1:${port}/watchdog`;
  const watched = connectPostgres(url, { max: 1, applicationName: 'watched' });
  const unwatched = connectPostgres(url, { max: 1, applicationName: 'unwatched' });
  try {
    // Both pools open their connection into the swallowing proxy: no answer, no error.
    const first = watched`SELECT 1 AS one`;
    const stuck = unwatched`SELECT 1 AS one`;
    stuck.catch(() => undefined);
    const e = await withPoolTimeout(first, 500).then(
      () => assert.fail('a swallowed connection answered'),
      (err: unknown) => err as Error,
    );
    assert.ok(e instanceof PoolTimeout, `a PoolTimeout, not ${e}`);

    // The path works again (PostgreSQL back); the connections already open stay swallowed.
    forward = true;
    renewIfWedged(watched, e, 'the test');
    let rows: { one: number }[] | undefined;
    for (let i = 0; i < 40 && !rows; i++) {
      rows = await withPoolTimeout(watched<{ one: number }[]>`SELECT 1 AS one`, 1000).catch((err: unknown) => {
        renewIfWedged(watched, err as Error, 'the test');
        return undefined;
      });
    }
    assert.deepEqual(rows?.map((r) => r.one), [1], 'the renewed pool answers');
    assert.ok(poolRenewals(watched) >= 1, 'through a new pool');

    // The same wedge without the watchdog: the unwatched pool's query is still unanswered.
    const outcome = await Promise.race([stuck.then(() => 'answered', () => 'failed'), new Promise((r) => setTimeout(() => r('still stuck'), 1500))]);
    assert.equal(outcome, 'still stuck', 'a pool nobody renews stays wedged (the test can fail)');
    assert.equal(poolRenewals(unwatched), 0);
  } finally {
    for (const s of sockets) s.destroy();
    await watched.end({ timeout: 1 }).catch(() => undefined);
    await unwatched.end({ timeout: 0 }).catch(() => undefined);
    proxy.close();
  }
});
