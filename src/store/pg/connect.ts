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
 *   dedicated client (the one LISTENing) must be rebuilt by hand.
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
import postgres from 'postgres';
import { InvalidInput } from '../../nodes/mac.js';
import { isPostgresUrl, redactUrl } from './url.js';

export type Sql = postgres.Sql<{ bigint: number }>;
export type TxSql = postgres.TransactionSql<{ bigint: number }>;

export { isPostgresUrl, redactUrl };

/** postgres.js options from a libpq-style URL; throws InvalidInput naming what is wrong. */
export function pgOptions(url: string): { url: string; path?: string } {
  if (!isPostgresUrl(url)) throw new InvalidInput(`database URL ${redactUrl(url)}: must start with postgres:// (e.g. postgres://pxeherd@db.example/pxeherd)`, 'database');
  let u: URL;
  try {
    u = new URL(url.replace(/^(postgres(?:ql)?:\/\/[^/?]*?),[^/?]*/i, '$1'));
  } catch (e) {
    throw new InvalidInput(`database URL ${redactUrl(url)}: ${(e as Error).message}`, 'database');
  }
  const socketDir = u.searchParams.get('host');
  if (socketDir === null) return { url };
  if (!socketDir.startsWith('/')) throw new InvalidInput(`database URL ${redactUrl(url)}: host= must be a socket directory such as /run/postgresql`, 'database');
  const port = u.port || '5432';
  // Drop host= from the URL postgres.js sees (it would send it to the server as a setting).
  const rest = url.replace(/([?&])host=[^&]*(&|$)/, (_m, a: string, b: string) => (b ? a : '')).replace(/[?&]$/, '');
  return { url: rest, path: `${socketDir.replace(/\/$/, '')}/.s.PGSQL.${port}` };
}

/** A connection pool. int8 columns (ms timestamps, ids) come back as numbers. */
export function connectPostgres(url: string, o: { max?: number; applicationName?: string } = {}): Sql {
  const { url: u, path } = pgOptions(url);
  return postgres(u, {
    path,
    max: o.max ?? 10,
    onnotice: () => undefined, // "relation already exists, skipping" and friends
    connect_timeout: 10,
    // postgres.js waits before reconnecting, growing with the failures of the whole pool (its
    // default reaches 20 s): after an outage the first queries would wait that long although the
    // database is back. The callers pace their own retries (the replica backs off, a DHCP claim
    // gives up after 1.5 s), so the pool retries at most 1 s apart.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 1),
    connection: { application_name: o.applicationName ?? 'pxeherd' },
    types: {
      bigint: { to: 20, from: [20], serialize: (x: number) => String(x), parse: (x: string) => Number(x) },
    },
  }) as unknown as Sql;
}
