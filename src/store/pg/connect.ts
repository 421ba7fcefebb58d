/**
 * Connecting to PostgreSQL.
 *
 * The client is postgres.js (npm `postgres`), not node-postgres (`pg`). Why, for what pxeherd
 * needs from it (several boot servers on one database, issue 19):
 * - Multi-host failover: postgres.js takes libpq's `postgres://h1,h2/db` with
 *   `target_session_attrs=read-write|primary` and tries the hosts in turn; `pg` has no multi-host
 *   support (a failover needs a proxy or a DNS name that moves).
 * - Reconnect: postgres.js' pool opens connections lazily and replaces a broken one on the next
 *   query, with backoff; a query in flight fails with an error the caller sees (we never retry a
 *   write blindly). With `pg`, a pooled client that dies emits 'error' on the pool and a
 *   dedicated client (the one LISTENing) must be rebuilt by hand. One known hole, measured under
 *   a PostgreSQL restart (`pg_ctl stop -m fast` under load): postgres.js 3.4.10 can wedge a
 *   connection for good (porsager/postgres#1208, below). Rather than switch clients for that, the
 *   pool handed out here is renewable: a wedged pool is replaced and its LISTENs re-issued
 *   (RenewablePool). Switching to `pg` would mean writing multi-host failover, LISTEN re-issue and
 *   transaction helpers ourselves, in every file of src/store/pg/; the renewal is one class.
 * - LISTEN/NOTIFY: `sql.listen(channel, fn, onlisten)` keeps one dedicated connection and
 *   re-issues LISTEN after a reconnect, calling `onlisten` each time — exactly the hook a reader
 *   needs to catch up by id after a gap. With `pg` all of that is ours to write.
 * - Transactions: `sql.begin(async (tx) => ...)` commits or rolls back around a callback on one
 *   connection, so every store operation is one transaction inside the backend.
 * - Maintenance: `pg` is the older, larger project (more maintainers, ~76M weekly downloads vs
 *   ~21M); postgres.js is mostly one maintainer but mature (v3 since 2021), has no dependencies
 *   and ships its own TypeScript types. The features above outweigh that; the store keeps the
 *   client behind src/store/pg/ so a switch would stay local.
 *
 * URLs are libpq's: `postgres://user:pass@host:port/db`, several hosts comma-separated, and a
 * unix socket as `?host=/run/postgresql` (postgres.js itself does not read `host=`).
 */
import net from 'node:net';
import postgres from 'postgres';
import { InvalidInput } from '../../nodes/mac.js';
import { isPostgresUrl, redactUrl } from './url.js';

export type Sql = postgres.Sql<{ bigint: number }>;
export type TxSql = postgres.TransactionSql<{ bigint: number }>;

export { isPostgresUrl, redactUrl };

/** One host of a multi-host URL. */
export interface PgHost {
  host: string;
  port: number;
}

/** libpq's target_session_attrs, which sessions a multi-host URL accepts. */
export type SessionAttrs = 'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby';
const SESSION_ATTRS: SessionAttrs[] = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'];

/** A multi-host URL as PoolSockets uses it. */
export interface MultiHost {
  hosts: PgHost[];
  /** Which sessions it accepts (`target_session_attrs`; postgres.js is not told, see pgOptions). */
  attrs: SessionAttrs;
  /** The URL naming host i only, without target_session_attrs (the probe of a host's session). */
  urlOf(i: number): string;
}

/**
 * postgres.js options from a libpq-style URL; throws InvalidInput naming what is wrong.
 * Several hosts (`postgres://h1,h2:5433/db`): `multi` lists them and `url` names only the first,
 * without target_session_attrs, since our socket factory, not postgres.js, chooses the host of
 * each connection (PoolSockets). postgres.js 3.4.10 given several hosts swallows every error of
 * a connection being set up while another host is listed and reconnects at once, for ever
 * (measured with both hosts down: `node list` never ended, busy, where one host down gives
 * "connection refused" at once); it checks target_session_attrs by ending the session, which
 * fails the query when it sees one host (CONNECTION_DESTROYED).
 */
export function pgOptions(url: string, env: NodeJS.ProcessEnv = process.env): { url: string; path?: string; multi?: MultiHost } {
  if (!isPostgresUrl(url)) throw new InvalidInput(`database URL ${redactUrl(url)}: must start with postgres:// (e.g. postgres://pxeherd@db.example/pxeherd)`, 'database');
  let u: URL;
  try {
    u = new URL(url.replace(/^(postgres(?:ql)?:\/\/[^/?]*?),[^/?]*/i, '$1'));
  } catch (e) {
    throw new InvalidInput(`database URL ${redactUrl(url)}: ${(e as Error).message}`, 'database');
  }
  const socketDir = u.searchParams.get('host');
  if (socketDir === null) {
    const multi = multiHost(url);
    if (!multi) return { url };
    // As libpq: the URL's, else PGTARGETSESSIONATTRS from the environment.
    const fromUrl = u.searchParams.get('target_session_attrs');
    const attrs = (fromUrl ?? env.PGTARGETSESSIONATTRS ?? 'any') as SessionAttrs;
    if (!SESSION_ATTRS.includes(attrs)) {
      const where = fromUrl === null ? `PGTARGETSESSIONATTRS=${attrs} (environment), used with database URL ${redactUrl(url)}` : `database URL ${redactUrl(url)}`;
      throw new InvalidInput(`${where}: target_session_attrs must be one of ${SESSION_ATTRS.join(', ')}`, 'database');
    }
    return { url: multi.urlOf(0), multi: { ...multi, attrs } };
  }
  if (!socketDir.startsWith('/')) throw new InvalidInput(`database URL ${redactUrl(url)}: host= must be a socket directory such as /run/postgresql`, 'database');
  const port = u.port || '5432';
  // Drop host= from the URL postgres.js sees (it would send it to the server as a setting).
  const rest = url.replace(/([?&])host=[^&]*(&|$)/, (_m, a: string, b: string) => (b ? a : '')).replace(/[?&]$/, '');
  return { url: rest, path: `${socketDir.replace(/\/$/, '')}/.s.PGSQL.${port}` };
}

/**
 * Pure: the hosts of a multi-host URL and the URL of each alone, target_session_attrs dropped
 * (nothing for one host). A host without a port takes the first host's, else 5432 (as
 * postgres.js read these URLs).
 */
function multiHost(url: string): Omit<MultiHost, 'attrs'> | undefined {
  const m = /^(postgres(?:ql)?:\/\/(?:[^@/?]*@)?)([^/?]*)(.*)$/i.exec(url);
  if (!m || !m[2]!.includes(',')) return undefined;
  const raw = m[2]!.split(',');
  const parts = raw.map((h) => /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(decodeURIComponent(h))).map((x) => ({ host: x?.[1]?.replace(/^\[(.*)\]$/, '$1') ?? '', port: x?.[2] ? Number(x[2]) : undefined }));
  const def = parts[0]!.port ?? 5432;
  const hosts = parts.map((p) => ({ host: p.host || 'localhost', port: p.port ?? def }));
  const rest = m[3]!.replace(/([?&])target_session_attrs=[^&]*(&|$)/, (_x, a: string, b: string) => (b ? a : '')).replace(/[?&]$/, '');
  return { hosts, urlOf: (i) => `${m[1]}${/:\d+$/.test(raw[i]!) || i === 0 ? raw[i] : `${raw[i]}:${def}`}${rest}` };
}

/** postgres.js' own pool, as `postgres()` makes it, opening its sockets through `sockets`. */
function openPool(u: string, path: string | undefined, o: { max?: number; applicationName?: string }, sockets: PoolSockets): Sql {
  return postgres(u, {
    path,
    max: o.max ?? 10,
    onnotice: () => undefined, // "relation already exists, skipping" and friends
    connect_timeout: CONNECT_TIMEOUT_S,
    // postgres.js waits before reconnecting, growing with the failures of the whole pool (its
    // default reaches 20 s): after an outage the first queries would wait that long although the
    // database is back. The callers pace their own retries (the replica backs off, a DHCP claim
    // gives up after 1.5 s), so the pool retries at most 1 s apart.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
    connection: { application_name: o.applicationName ?? 'pxeherd' },
    types: {
      bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) },
    },
    // Not in postgres.js' types, documented in its README ("socket: custom socket"); it also
    // reaches the pool's LISTEN connection (postgres.js spreads these options into it).
    ...({ socket: (opts: SocketOptions) => sockets.open(opts) } as object),
  }) as unknown as Sql;
}

/** What postgres.js hands a custom socket factory (its parsed options). */
interface SocketOptions {
  path?: string | false;
  host: string[];
  port: number[];
}

/** A connection of a retired pool tried to open a socket (postgres.js reconnecting after its pool ended). */
export class PoolRetired extends Error {
  readonly code = 'CONNECTION_ENDED';
}

const CONNECT_TIMEOUT_S = 10;
/** A connected socket that wrote nothing for this long is wedged (PoolSockets.track). */
const WEDGED_SILENCE_MS = 1000;
/** The least time between two renewals for lost connections (RenewablePool.recoverFromLoss). */
const LOSS_RENEW_GAP_MS = 30_000;
/** A host that refused or timed out is tried after the others for this long. */
const HOST_DOWN_MS = 30_000;

/** Which host the connections go to (a log line): a host failed, or a host connected after none or a failure. */
export type HostEvent = { kind: 'down'; host: string; reason: string } | { kind: 'up'; host: string };

/** A session's state as target_session_attrs reads it (libpq: transaction_read_only, in recovery). */
interface SessionState {
  readOnly: boolean;
  standby: boolean;
  at: number;
}
/** How long a host's probed session state is trusted (a failover promotes a standby). */
const STATE_MS = 10_000;

/** Pure: does a session in this state suit target_session_attrs (prefer-standby: any; standbys are tried first). */
export function suits(attrs: SessionAttrs, st: { readOnly: boolean; standby: boolean }): boolean {
  if (attrs === 'read-write') return !st.readOnly;
  if (attrs === 'read-only') return st.readOnly;
  if (attrs === 'primary') return !st.standby;
  if (attrs === 'standby') return st.standby;
  return true;
}

/** The state of a multi-host URL's hosts, kept across the pools of one RenewablePool. */
class HostTable {
  readonly hosts: PgHost[];
  readonly downSince = new Map<number, number>();
  /** Connected at least once since it was last down (or ever): the 'up' line is said once. */
  readonly up = new Set<number>();
  readonly state = new Map<number, SessionState>();
  /** The next host in turn: new connections spread over the hosts, as postgres.js' own rotation did. */
  next = 0;
  readonly listeners: ((e: HostEvent) => void)[] = [];
  constructor(readonly multi: MultiHost) {
    this.hosts = multi.hosts;
  }

  label(i: number): string {
    const h = this.hosts[i]!;
    return `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`;
  }

  /** The hosts to try for one connection: in turn, those down lately last (prefer-standby: known standbys first). */
  order(now: number): number[] {
    const n = this.hosts.length;
    const start = this.next++ % n;
    const all = Array.from({ length: n }, (_, k) => (start + k) % n);
    const fresh = (i: number) => (this.downSince.get(i) ?? -Infinity) + HOST_DOWN_MS < now;
    const byHealth = [...all.filter(fresh), ...all.filter((i) => !fresh(i))];
    if (this.multi.attrs !== 'prefer-standby') return byHealth;
    const standby = (i: number) => this.state.get(i)?.standby === true;
    return [...byHealth.filter(standby), ...byHealth.filter((i) => !standby(i))];
  }

  /** Whether host i's sessions suit target_session_attrs: probed with a session of its own, the answer kept STATE_MS. */
  async suits(i: number): Promise<boolean> {
    if (this.multi.attrs === 'any') return true;
    let st = this.state.get(i);
    if (!st || st.at + STATE_MS < Date.now()) {
      st = { ...(await probeSession(this.multi.urlOf(i))), at: Date.now() };
      this.state.set(i, st);
    }
    // prefer-standby takes any host; the order put the standbys first.
    return suits(this.multi.attrs, st);
  }

  failed(i: number, reason: string): void {
    const wasKnownDown = this.downSince.has(i) && !this.up.has(i);
    this.downSince.set(i, Date.now());
    this.up.delete(i);
    this.state.delete(i);
    if (!wasKnownDown) this.say({ kind: 'down', host: this.label(i), reason });
  }

  connected(i: number): void {
    this.downSince.delete(i);
    if (this.up.has(i)) return;
    this.up.add(i);
    this.say({ kind: 'up', host: this.label(i) });
  }

  private say(e: HostEvent): void {
    for (const fn of this.listeners) fn(e);
  }
}

/** One session of its own on `url` (one host): is it read-only, is the server a standby. */
async function probeSession(url: string): Promise<{ readOnly: boolean; standby: boolean }> {
  const sql = postgres(url, { max: 1, connect_timeout: CONNECT_TIMEOUT_S, fetch_types: false, onnotice: () => undefined, connection: { application_name: 'pxeherd probe' } });
  try {
    const [r] = await sql`SELECT current_setting('transaction_read_only') AS ro, pg_is_in_recovery() AS standby`;
    return { readOnly: r!.ro === 'on', standby: r!.standby === true };
  } finally {
    await sql.end({ timeout: 1 }).catch(() => undefined);
  }
}

/**
 * Every socket one postgres.js pool opened, so that retiring the pool closes them all. Ending a
 * postgres.js 3.4.10 pool does not: a connection waiting out its reconnect backoff when the pool
 * ends connects anyway afterwards and stays open for ever, idle (measured: the serve process of
 * pg-feed never exited after SIGTERM once its pool had been replaced right after an outage). And
 * a connection the outage left open but silent keeps a query waiting until TCP gives up, minutes.
 * Once retired, no new socket is opened (the connection's query fails as a lost connection).
 *
 * Several hosts (libpq's `postgres://h1,h2/db`; postgres.js sees only the first, see pgOptions):
 * each new connection takes the next host in turn, as postgres.js' own rotation did, hosts that
 * failed lately last; a host that refuses or does not answer in connect_timeout, or whose
 * session does not suit target_session_attrs (HostTable.suits: a probe session), is skipped for
 * the next one, within the same connection attempt. The last host's socket is handed over as it
 * connects: its error, if all fail, is the query's (postgres.js then backs off as for one host).
 *
 * Two things the sockets see are said to the pool, whichever query they failed:
 * - `wedged`: a socket that connected and has not written one byte a second later is a
 *   connection postgres.js wedged (see deadSocketWrites below: its startup message is never
 *   flushed, so it would time out connecting, again and again); it is closed. A watchdog query
 *   may never land on that connection while a share of every other caller's queries fails on it.
 * - `lost`: the server closed a connection (PostgreSQL restarting, a backend terminated, a reset):
 *   postgres.js can come out of that with a connection that takes no query any more and says
 *   nothing, or a transaction that never ends holding one (seen: a pool of 8 answering with 5 or
 *   7 for minutes after a restart, no error anywhere).
 */
export class PoolSockets {
  private readonly live = new Set<net.Socket>();
  private retired = false;

  constructor(
    private readonly table?: HostTable,
    private readonly tell: { wedged(reason: string): void; lost(reason: string): void } = { wedged: () => undefined, lost: () => undefined },
  ) {}

  open(o: SocketOptions): net.Socket | Promise<net.Socket> {
    if (this.retired) throw new PoolRetired('this connection pool was replaced (the database was unreachable); the query goes to the new one next time');
    if (o.path) return this.track(net.connect(o.path));
    if (!this.table) return this.socketTo(o.host[0]!, o.port[0] ?? 5432);
    return this.openMulti(this.table);
  }

  private socketTo(host: string, port: number): net.Socket {
    const s = net.connect(port, host);
    Object.assign(s, { host, port }); // postgres.js reads them (TLS servername, error messages)
    return this.track(s);
  }

  private track(s: net.Socket): net.Socket {
    this.live.add(s);
    let connected = false;
    let closedByServer = false;
    let wedged = false;
    s.once('connect', () => {
      connected = true;
      // postgres.js writes its startup message in the same turn as the connect: a second of
      // silence is no slow network, it is the wedge. Closed now rather than at connect_timeout.
      const check = setTimeout(() => {
        if (s.destroyed || s.bytesWritten > 0 || this.retired) return;
        wedged = true;
        this.tell.wedged(`a connection of the pool sent nothing in ${WEDGED_SILENCE_MS / 1000} s after connecting (its startup message never left: wedged by postgres.js, porsager/postgres#1208)`);
        s.destroy();
      }, WEDGED_SILENCE_MS);
      check.unref();
      s.once('close', () => clearTimeout(check));
    });
    // The server's end of the stream before we ended ours: it closed the connection, not us.
    s.once('end', () => (closedByServer = !s.writableEnded));
    s.once('close', (hadError) => {
      this.live.delete(s);
      if (this.retired || !connected || wedged) return;
      if (closedByServer || hadError) {
        this.tell.lost(hadError ? 'a connection of the pool failed' : 'the server closed a connection of the pool');
      }
    });
    return s;
  }

  private async openMulti(t: HostTable): Promise<net.Socket> {
    const order = t.order(Date.now());
    const failures: string[] = [];
    const retired = () => new PoolRetired('this connection pool was replaced (the database was unreachable); the query goes to the new one next time');
    for (const [k, i] of order.entries()) {
      if (this.retired) throw retired();
      const last = k === order.length - 1;
      let unsuitable = false;
      if (t.multi.attrs !== 'any') {
        // Not a session this URL wants (target_session_attrs): the next host. The last one's
        // socket is handed over all the same, to fail the query (below).
        try {
          unsuitable = !(await t.suits(i));
        } catch (e) {
          if (!last) {
            t.failed(i, (e as Error).message);
            failures.push(`${t.label(i)}: ${(e as { code?: string }).code ?? (e as Error).message}`);
            continue;
          }
        }
        if (unsuitable && !last) {
          failures.push(`${t.label(i)}: not ${t.multi.attrs}`);
          continue;
        }
      }
      if (this.retired) throw retired();
      const { host, port } = t.hosts[i]!;
      const s = this.socketTo(host, port);
      if (last) return this.handOver(t, i, s, failures, unsuitable);
      try {
        await connected(s, CONNECT_TIMEOUT_S * 1000);
        t.connected(i);
        return s;
      } catch (e) {
        t.failed(i, (e as Error).message);
        failures.push(`${t.label(i)}: ${(e as { code?: string }).code ?? (e as Error).message}`);
      }
    }
    throw new Error('unreachable: a URL with several hosts has at least two');
  }

  /**
   * The last host of a round, handed to postgres.js as it connects: its error, if it fails,
   * fails the query (naming every host tried). `unsuitable` (target_session_attrs: no host has
   * the session wanted): the socket is closed with that error as it connects (libpq: no
   * suitable server), before postgres.js' session on it starts.
   */
  private handOver(t: HostTable, i: number, s: net.Socket, failures: string[], unsuitable: boolean): net.Socket {
    let up = false;
    s.prependOnceListener('error', (e: Error) => {
      if (up && !unsuitable) return; // a connection lost later is the pool's business, not a host that failed
      if (!up) t.failed(i, e.message);
      if (failures.length) e.message = `${e.message} (and ${failures.join(', ')})`;
    });
    s.prependOnceListener('connect', () => {
      up = true;
      if (unsuitable) s.destroy(Object.assign(new Error(`no host of the database URL has a ${t.multi.attrs} session: ${t.label(i)}: not ${t.multi.attrs}`), { code: 'CONNECTION_REFUSED' }));
      else t.connected(i);
    });
    return s;
  }

  /** Close every socket of the pool now and open none again. */
  retire(): void {
    this.retired = true;
    for (const s of this.live) s.destroy();
    this.live.clear();
  }
}

/** `s` connected, or its error (CONNECT_TIMEOUT after `ms`, and `s` destroyed). */
function connected(s: net.Socket, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect timeout ${(s as { host?: string }).host}:${(s as { port?: number }).port}`), { code: 'CONNECT_TIMEOUT' }));
    }, ms);
    const onError = (e: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(e);
    };
    s.once('error', onError);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeListener('error', onError);
      resolve();
    });
  });
}

/**
 * A connection pool. int8 columns (ms timestamps, ids) come back as numbers.
 *
 * What the callers get is a stand-in for postgres.js' `sql` that can swap the pool underneath
 * (`renewPool`): postgres.js 3.4.10 wedges a connection for good when PostgreSQL goes away under
 * it (see deadSocketWrites below), and the only way out is a new pool. Queries, `begin`,
 * `unsafe`... go to the current pool; LISTENs are remembered and issued again on the new one
 * (their `onlisten` runs, which is where every listener catches up by id).
 */
export function connectPostgres(url: string, o: { max?: number; applicationName?: string } = {}): Sql {
  const { url: u, path, multi } = pgOptions(url);
  return new RenewablePool((sockets) => openPool(u, path, o, sockets), multi && new HostTable(multi)).sql;
}

/**
 * Called when a host of a multi-host URL fails or connects (first time, or again after failing):
 * which host the connections go through, for the log. Nothing for one host.
 */
export function onPoolHost(sql: Sql, fn: (e: HostEvent) => void): void {
  pools.get(sql)?.hosts?.listeners.push(fn);
}

/**
 * Replace `sql`'s pool by a new one (a query of it did not settle in time, or a connection
 * stopped connecting): queries in flight on the old pool fail with CONNECTION_DESTROYED, which
 * their callers already treat as a lost connection. Coalesced: renewals asked for within 100 ms
 * make one. Nothing for a pool that was not made by connectPostgres or has ended.
 */
export function renewPool(sql: Sql, reason: string): void {
  pools.get(sql)?.renewSoon(reason);
}

/**
 * The database is back after an outage (the replica's round got through again): every connection
 * from before it is retired, through a new pool. A connection the outage left open but silent
 * (a query on it is never answered, never fails), or wedged by postgres.js' write after close
 * without any throw the guard below sees, sits in the pool unnoticed until a burst of load needs
 * every connection: in the 1000-node pgrestart storm that was ~110 s after PostgreSQL was back,
 * a 10 s CONNECT_TIMEOUT and a second, spurious outage. The old pool's queries in flight get
 * `graceSeconds` to finish, then fail as a lost connection and its sockets are closed. LISTENs
 * move to the new pool (their `onlisten` runs: every listener catches up by id). Nothing when
 * the pool already did so itself after `outageSince` (it saw its connections lost:
 * RenewablePool.recoverFromLoss).
 */
export function renewAfterOutage(sql: Sql, graceSeconds = 5, outageSince?: number): void {
  const pool = pools.get(sql);
  // Already done: the pool renewed itself once the database answered (a lost connection).
  if (!pool || (outageSince !== undefined && pool.recoveredAt >= outageSince)) return;
  pool.renew('the database is back after an outage: connections from before it are retired', graceSeconds);
}

/** Called with the reason each time `sql`'s pool is replaced (a log line), and how many times it was. */
export function onPoolRenewed(sql: Sql, fn: (reason: string) => void): void {
  pools.get(sql)?.onRenew.push(fn);
}

export function poolRenewals(sql: Sql): number {
  return pools.get(sql)?.renewals ?? 0;
}

/** How long a watchdog's query may go unanswered before its pool counts as wedged. */
export const POOL_WATCHDOG_MS = 15_000;

/** A watchdog query that got no answer in time (withPoolTimeout). */
export class PoolTimeout extends Error {}

/** `p`, or a PoolTimeout after `ms` (the query itself is left to settle or fail on its own). */
export function withPoolTimeout<T>(p: Promise<T>, ms = POOL_WATCHDOG_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => undefined);
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new PoolTimeout(`no answer from the database in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

/**
 * The watchdog's rule (the replica's round runs it every 250 ms in `serve`): a query with no
 * answer within POOL_WATCHDOG_MS, or a connection that could not finish connecting
 * (CONNECT_TIMEOUT: a postgres.js connection wedged by a write after close keeps failing so, and
 * it can be wedged without any throw the guard below would see), replaces the pool. Harmless
 * while the database is really away: the new pool fails the same way until it is back.
 */
export function renewIfWedged(sql: Sql, e: Error, who: string): void {
  const code = (e as { code?: string }).code;
  if (e instanceof PoolTimeout) renewPool(sql, `${who} got no answer in ${POOL_WATCHDOG_MS} ms`);
  else if (code === 'CONNECT_TIMEOUT') renewPool(sql, `a connection did not finish connecting (${e.message})`);
}

type ListenArgs = Parameters<Sql['listen']>;
interface Listening {
  args: ListenArgs;
  /** The LISTEN on the current pool, once it answered. */
  handle?: { unlisten(): Promise<void> };
  gone: boolean;
}

const pools = new WeakMap<Sql, RenewablePool>();
/** Every pool not ended yet: what the dead-socket guard renews. */
const openPools = new Set<RenewablePool>();

class RenewablePool {
  readonly sql: Sql;
  renewals = 0;
  readonly onRenew: ((reason: string) => void)[] = [];
  private current: Sql;
  private currentSockets: PoolSockets;
  /** Pools replaced but not ended yet (their queries in flight finishing). */
  private readonly retiring = new Set<Promise<void>>();
  private readonly listening = new Set<Listening>();
  private pending?: NodeJS.Timeout;
  private ended = false;
  /** A lost connection is being recovered from (recoverFromLoss). */
  private recovering = false;
  /** When the pool last renewed itself once the database answered after a lost connection. */
  recoveredAt = 0;

  constructor(
    private readonly open: (sockets: PoolSockets) => Sql,
    readonly hosts?: HostTable,
  ) {
    this.currentSockets = this.newSockets();
    this.current = open(this.currentSockets);
    const self = this;
    // The target only makes the proxy callable; everything is read from the current pool.
    this.sql = new Proxy(function sqlStandIn() {} as unknown as Sql, {
      apply: (_t, _this, args: unknown[]) => (self.current as unknown as (...a: unknown[]) => unknown)(...args),
      get: (_t, prop) => {
        if (prop === 'listen') return (...args: ListenArgs) => self.listen(args);
        if (prop === 'end') return (opts?: { timeout?: number }) => self.end(opts);
        return (self.current as unknown as Record<string | symbol, unknown>)[prop];
      },
      has: (_t, prop) => prop in (self.current as object),
    });
    pools.set(this.sql, this);
    openPools.add(this);
    deadSocketWrites.watch();
  }

  private async listen(args: ListenArgs): Promise<{ state: unknown; unlisten(): Promise<void> }> {
    const l: Listening = { args, gone: false };
    const pool = this.current;
    const h = await pool.listen(...args);
    if (pool === this.current) l.handle = h;
    else void this.relisten(l, 0); // renewed while LISTEN was being set up
    this.listening.add(l);
    return {
      state: h.state,
      unlisten: async () => {
        l.gone = true;
        this.listening.delete(l);
        await l.handle?.unlisten();
      },
    };
  }

  /** LISTEN again on the current pool; retried while the database is away. */
  private async relisten(l: Listening, attempt: number): Promise<void> {
    const pool = this.current;
    try {
      const h = await pool.listen(...l.args);
      if (l.gone || this.ended || pool !== this.current) return void h.unlisten().catch(() => undefined);
      l.handle = h;
    } catch {
      if (l.gone || this.ended || pool !== this.current) return;
      const t = setTimeout(() => void this.relisten(l, attempt + 1), Math.min(250 * 2 ** attempt, 2000));
      t.unref();
    }
  }

  /** Sockets for a new pool; what they see counts while they are the current pool's. */
  private newSockets(): PoolSockets {
    const sockets: PoolSockets = new PoolSockets(this.hosts, {
      wedged: (why) => sockets === this.currentSockets && this.renewSoon(why),
      lost: (why) => sockets === this.currentSockets && this.recoverFromLoss(why),
    });
    return sockets;
  }

  /**
   * A connection of the current pool was lost: once the database answers a query again, every
   * connection from before is retired through a new pool (renewAfterOutage, here for every pool
   * and whichever caller saw the loss). Tried with backoff, 250 ms to 2 s, while the database
   * is away; a try with no answer in POOL_WATCHDOG_MS applies the watchdog's rule. At most one
   * such renewal per LOSS_RENEW_GAP_MS: a server that closes idle connections by policy
   * (idle_session_timeout, a pooler) must not churn the pool.
   */
  private recoverFromLoss(why: string): void {
    if (this.ended || this.recovering) return;
    this.recovering = true;
    const lostAt = Date.now();
    void (async () => {
      let wait = 250;
      for (;;) {
        if (this.ended) return;
        try {
          await withPoolTimeout(this.current`SELECT 1`);
          break;
        } catch (e) {
          renewIfWedged(this.sql, e as Error, 'the pool, after a lost connection,');
        }
        await new Promise((r) => setTimeout(r, wait).unref());
        wait = Math.min(wait * 2, 2000);
      }
      const gap = this.recoveredAt + LOSS_RENEW_GAP_MS - Date.now();
      if (gap > 0) await new Promise((r) => setTimeout(r, gap).unref());
      this.recovering = false;
      if (this.ended) return;
      this.recoveredAt = Date.now();
      this.renew(`${why} ${Math.round((Date.now() - lostAt) / 1000)} s ago and the database answers again: connections from before are retired`, 5);
    })();
  }

  renewSoon(reason: string): void {
    if (this.ended || this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.renew(reason);
    }, 100);
    this.pending.unref();
  }

  /** graceSeconds: how long the old pool's queries in flight may finish (0: cut at once, a wedged pool). */
  renew(reason: string, graceSeconds = 0): void {
    if (this.ended) return;
    if (this.pending) clearTimeout(this.pending);
    this.pending = undefined;
    const old = this.current;
    const oldSockets = this.currentSockets;
    this.currentSockets = this.newSockets();
    this.current = this.open(this.currentSockets);
    this.renewals++;
    const ending = old
      .end({ timeout: graceSeconds })
      .catch(() => undefined)
      .then(() => oldSockets.retire());
    this.retiring.add(ending);
    void ending.then(() => this.retiring.delete(ending));
    for (const l of this.listening) {
      l.handle = undefined;
      void this.relisten(l, 0);
    }
    for (const fn of this.onRenew) fn(reason);
  }

  private async end(opts?: { timeout?: number }): Promise<void> {
    this.ended = true;
    if (this.pending) clearTimeout(this.pending);
    this.listening.clear();
    openPools.delete(this);
    deadSocketWrites.unwatch();
    try {
      await this.current.end(opts);
    } finally {
      this.currentSockets.retire();
      await Promise.all(this.retiring);
    }
  }
}

/**
 * postgres.js 3.4.10 (porsager/postgres#1154, #1208; fixes proposed in #1168/#1176/#1209, not
 * released): a write queued on a connection right after it closed (PostgreSQL restarting: a
 * transaction's ROLLBACK after its query failed) runs from a setImmediate against the closed
 * socket and throws `TypeError: Cannot read properties of null (reading 'write')` outside any
 * promise. Two harms: the process dies without a handler, and that connection is wedged for good
 * (its `nextWriteTimer` stays set, so no later write on it is ever flushed: every reconnect hangs
 * until connect_timeout, CONNECT_TIMEOUT, again and again; measured: 8 of 10 pooled connections
 * dead after one `pg_ctl stop -m fast` under load).
 *
 * Nothing scoped can catch a throw from a library's setImmediate, so while a pool of ours is open
 * one process 'uncaughtException' listener recognises exactly those errors (thrown from inside
 * postgres.js: that TypeError in nextWrite, or a lost-connection error such as EPIPE or
 * CONNECTION_CLOSED that reached no caller, which an unhandled rejection also arrives as) and
 * renews every open pool (the error does not
 * say which pool the connection belonged to; a renewal costs a reconnect). Anything else is
 * rethrown: the process ends as it would without the listener. The listener is removed when the
 * last pool ends.
 */
export function isPostgresJsDeadSocketWrite(e: unknown): boolean {
  const stack = (e as Error | undefined)?.stack ?? '';
  // postgres.js' closed() removes every listener of the socket, so a reset the socket reports
  // afterwards ('error' with no listener: `read ECONNRESET at Pipe.onStreamRead`, nothing but
  // Node's own frames) is thrown as uncaught; it killed a server when PostgreSQL restarted.
  if (isOrphanSocketReset(e, stack)) return true;
  // cjs/: the CommonJS build, which the CLI snapshot (src/cli/snapshot.ts) loads.
  if (!/postgres[\\/](cjs[\\/])?src[\\/]\w+\.js/.test(stack)) return false;
  const code = (e as { code?: string }).code ?? '';
  // The #1208 write, or a lost connection's error that reached no caller (a rejection postgres.js
  // made for a query nobody waits on any more, a socket error after its listeners were removed).
  return (/\bnextWrite\b/.test(stack) && e instanceof TypeError) || LOST_CONNECTION.has(code);
}

function isOrphanSocketReset(e: unknown, stack: string): boolean {
  const x = e as { code?: string; syscall?: string };
  if (!(x.code === 'ECONNRESET' || x.code === 'EPIPE') || !(x.syscall === 'read' || x.syscall === 'write')) return false;
  const frames = stack.split('\n').filter((l) => /^\s+at /.test(l));
  return frames.every((l) => /\(node:|\bnode:internal\b/.test(l));
}

const LOST_CONNECTION = new Set(['EPIPE', 'ECONNRESET', 'ECONNREFUSED', 'ENOENT', 'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECTION_ENDED', 'CONNECT_TIMEOUT']);

const deadSocketWrites = {
  watchers: 0,
  caught: 0,
  handler(e: Error): void {
    if (e instanceof PoolRetired) return; // a retired pool's own query: nobody waits for it any more
    if (!isPostgresJsDeadSocketWrite(e)) throw e;
    deadSocketWrites.caught++;
    for (const p of openPools) p.renewSoon(`a postgres.js connection was wedged by a write after it closed (${e.message})`);
  },
  watch(): void {
    if (this.watchers++ === 0) process.on('uncaughtException', this.handler);
  },
  unwatch(): void {
    if (--this.watchers === 0) process.off('uncaughtException', this.handler);
  },
};

/** How many postgres.js dead-socket writes were caught (tests). */
export function deadSocketWritesCaught(): number {
  return deadSocketWrites.caught;
}
