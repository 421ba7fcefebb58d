/**
 * The pool watchdog (src/store/pg/connect.ts `withPoolTimeout` + `renewIfWedged`, the rule the
 * replica's round applies in `serve`), deterministically: a connection that never answers and
 * never throws — what postgres.js 3.4.10 can leave behind after a PostgreSQL restart, and what a
 * CI run once caught (the pool stayed dead for 120 s, no error the crash guard could see). A TCP
 * proxy in front of a real private PostgreSQL swallows everything at first (a wedged path), then
 * forwards. Connections opened while it swallowed stay swallowed, as wedged ones do: only a new
 * pool gets through (pools of one connection, so a second connection cannot route around the
 * wedged one). Checked on what the client sees, no timing asserted beyond "answered".
 *
 * The second test is the outage case (issue 19, the 1000-node pgrestart storm): a connection the
 * outage left open but silent must not stall a query after the database is back (the replica's
 * onUp retires every connection from before the outage, renewAfterOutage). Without that, the
 * pool pipelines a later burst onto the wedged connection: those queries never answer, and a
 * replica round landing there would report a second, spurious outage.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { connectPostgres, onPoolRenewed, PoolTimeout, poolRenewals, renewIfWedged, withPoolTimeout } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { PgReplica } from '../../src/store/pg/replica.js';
import { openDatabase } from '../../src/store/db.js';
import { Store } from '../../src/store/store.js';
import { waitFor } from '../lab/lab.js';
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

/**
 * A TCP proxy in front of the private PostgreSQL that knows which backend each connection
 * reached (its pid, from the BackendKeyData message), so an outage can leave exactly one
 * connection wedged: `down(pid)` cuts every connection and refuses new ones, except that the
 * client side of backend `pid` stays open and silent (its query gets no answer and no error, as
 * a connection the outage wedged); `up()` forwards new connections again.
 */
class WedgingProxy {
  private state: 'up' | 'down' = 'up';
  private readonly pairs = new Set<{ client: net.Socket; upstream: net.Socket; pid?: number; wedged: boolean }>();
  private readonly server: net.Server;
  constructor(private readonly target: string) {
    this.server = net.createServer((client) => {
      client.on('error', () => undefined);
      if (this.state === 'down') return void client.destroy(); // the database is away: refused
      const upstream = net.connect(this.target);
      const pair = { client, upstream, pid: undefined as number | undefined, wedged: false };
      this.pairs.add(pair);
      upstream.on('error', () => client.destroy());
      upstream.on('close', () => (pair.wedged ? undefined : client.destroy()));
      client.on('close', () => (upstream.destroy(), this.pairs.delete(pair)));
      client.on('data', (d) => pair.wedged || upstream.write(d));
      let head = Buffer.alloc(0);
      upstream.on('data', (d: Buffer) => {
        if (pair.wedged) return;
        if (pair.pid === undefined) {
          head = Buffer.concat([head, d]);
          // Messages after the startup reply: type byte, int32 length; 'K' carries the backend pid.
          for (let i = 0; i + 5 <= head.length; i += 1 + head.readUInt32BE(i + 1)) {
            if (head[i] === 0x4b && i + 9 <= head.length) pair.pid = head.readInt32BE(i + 5);
          }
        }
        client.write(d);
      });
    });
  }
  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as net.AddressInfo).port;
  }
  down(wedgePid: number): void {
    this.state = 'down';
    for (const p of this.pairs) {
      if (p.pid === wedgePid) {
        p.wedged = true; // the backend goes, the client's connection stays: open, silent
        p.upstream.destroy();
      } else p.client.destroy();
    }
  }
  up(): void {
    this.state = 'up';
  }
  wedgedOpen(): number {
    return [...this.pairs].filter((p) => p.wedged && !p.client.destroyed).length;
  }
  close(): void {
    for (const p of this.pairs) p.client.destroy();
    this.server.close();
  }
}

test('after an outage no pooled connection from before it stalls a later query, and the replica does not go down again', { skip: why, timeout: 90_000 }, async () => {
  const url = await pg.createDatabase('wedged_outage');
  const direct = connectPostgres(url, { max: 2 });
  await migratePostgres(direct);
  const proxy = new WedgingProxy(path.join(pg.socketDir, '.s.PGSQL.5432'));
  const port = await proxy.listen();
  const sql = connectPostgres(`postgres://${pg.user}@127.0.0.1:${port}/wedged_outage`, { max: 3, applicationName: 'wedged' });
  const store = new Store(openDatabase(':memory:'), { serverId: 'wedge-a' });
  let downs = 0;
  let ups = 0;
  // Rounds only when the test kicks them: which connection each query lands on stays predictable.
  const replica = new PgReplica(store.db, sql, { pollMs: 3_600_000, onDown: () => downs++, onUp: () => ups++ });
  try {
    await replica.load();
    await replica.start();
    await Promise.all([1, 2, 3].map(() => sql`SELECT pg_sleep(0.05)`)); // the pool's three connections are open

    // A query in flight when the database goes away: its connection is left wedged.
    const inflight = sql`SELECT pg_sleep(600)`.then(
      () => 'answered',
      (e: Error) => `failed (${e.message})`,
    );
    const pid = await waitFor('the long query to run', 10_000, async () => {
      const [r] = await direct<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'`;
      return r?.pid;
    });
    proxy.down(pid);
    for (let i = 0; i < 20 && downs === 0; i++) await replica.kick().then(() => new Promise((r) => setTimeout(r, 100)));
    assert.equal(downs, 1, 'the replica saw the outage');
    assert.equal(proxy.wedgedOpen(), 1, 'one connection is left open and silent');

    proxy.up();
    for (let i = 0; i < 50 && ups === 0; i++) await replica.kick().then(() => new Promise((r) => setTimeout(r, 100)));
    assert.equal(ups, 1, 'the replica is back');

    // Later, more queries at once than the pool has connections, while the replica keeps polling:
    // none may land on the wedged connection. A stuck one never answers; 10 s only ends the wait.
    const answers = await Promise.all([
      ...Array.from({ length: 6 }, () =>
        withPoolTimeout(sql`SELECT 1 AS one`, 10_000).then(
          () => 'answered',
          (e: Error) => (e instanceof PoolTimeout ? 'no answer' : `failed (${e.message})`),
        ),
      ),
      ...Array.from({ length: 3 }, () => replica.kick().then(() => 'round')),
    ]);
    assert.deepEqual(answers.slice(0, 6), Array(6).fill('answered'), 'every query after the outage is answered');
    assert.equal(downs, 1, 'no second, spurious outage');
    assert.ok(replica.connected);
    // The query the outage wedged ends (as a lost connection) instead of hanging for ever.
    const outcome = await Promise.race([inflight, new Promise((r) => setTimeout(() => r('still hanging'), 20_000))]);
    assert.match(String(outcome), /^failed/, `the wedged query: ${outcome}`);
    await waitFor('the wedged connection to be closed by its retired pool', 10_000, () => proxy.wedgedOpen() === 0);
  } finally {
    await replica.stop();
    proxy.close();
    await sql.end({ timeout: 1 }).catch(() => undefined);
    await direct.end({ timeout: 1 }).catch(() => undefined);
    store.close();
  }
});

test('without any watchdog or replica, a pool whose connections the server closed retires the silent one left over once the database answers', { skip: why, timeout: 90_000 }, async () => {
  const url = await pg.createDatabase('wedged_alone');
  const direct = connectPostgres(url, { max: 1 });
  const proxy = new WedgingProxy(path.join(pg.socketDir, '.s.PGSQL.5432'));
  const port = await proxy.listen();
  const sql = connectPostgres(`postgres://${pg.user}@127.0.0.1:${port}/wedged_alone`, { max: 3, applicationName: 'alone' });
  const renewedFor: string[] = [];
  onPoolRenewed(sql, (r) => renewedFor.push(r));
  try {
    await Promise.all([1, 2, 3].map(() => sql`SELECT pg_sleep(0.05)`));
    const inflight = sql`SELECT pg_sleep(600)`.then(
      () => 'answered',
      (e: Error) => `failed (${e.message})`,
    );
    const pid = await waitFor('the long query to run', 10_000, async () => {
      // This database's: the earlier test's pg_sleep(600) may still run on its server.
      const [r] = await direct<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)' AND datname = current_database()`;
      return r?.pid;
    });
    // The other two connections are closed by the "server"; the long query's stays open, silent.
    proxy.down(pid);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(proxy.wedgedOpen(), 1, 'one connection is left open and silent');
    assert.equal(poolRenewals(sql), 0, 'nothing is renewed while the database is away');
    proxy.up();
    // Nobody but the pool itself: the query it left hanging fails as a lost connection once the
    // database answers again, and the silent connection is closed.
    const outcome = await Promise.race([inflight, new Promise((r) => setTimeout(() => r('still hanging'), 30_000))]);
    assert.match(String(outcome), /^failed/, `the silent connection's query: ${outcome}`);
    assert.equal(poolRenewals(sql), 1, renewedFor.join('; '));
    assert.match(renewedFor[0]!, /closed a connection of the pool .* the database answers again/);
    await waitFor('the silent connection to be closed by its retired pool', 10_000, () => proxy.wedgedOpen() === 0);
    const answers = await Promise.all(Array.from({ length: 6 }, () => withPoolTimeout(sql`SELECT 1 AS one`, 10_000).then(() => 'answered', (e: Error) => e.message)));
    assert.deepEqual(answers, Array(6).fill('answered'));
  } finally {
    proxy.close();
    await sql.end({ timeout: 1 }).catch(() => undefined);
    await direct.end({ timeout: 1 }).catch(() => undefined);
  }
});
