/**
 * A server's local SQLite replica of the PostgreSQL tables its protocol servers read (issue 19).
 *
 * `pxeherd serve` on PostgreSQL keeps every read path synchronous and local: DHCP, TFTP, HTTP boot
 * scripts and provisiond read the SQLite `Store` as on a single server, only that file is a
 * replica under the state directory. PostgreSQL stays the only coordinator and the truth: the
 * coordinated writes go there first (src/server/pg-serve.ts), and this class brings every row
 * any server (or the admin) wrote back into the replica:
 * - load(): one REPEATABLE READ snapshot of the replicated tables, written into the replica in
 *   one local transaction (rows PostgreSQL no longer has are deleted), remembering the snapshot.
 * - poll(): the change log (migration 7: a trigger writes (table, key, xid) for every row
 *   written) rows whose transaction became visible since the remembered snapshot — exact, so a
 *   transaction that committed late is never skipped and writers need no lock between them. Each
 *   changed key is re-read from PostgreSQL and written into the replica: re-reading the current
 *   row makes applying idempotent and order-free. NOTIFY pxeherd_changes only makes the next poll
 *   come sooner; a timer polls anyway.
 * - after an error (PostgreSQL unreachable), and when a poll comes later than the change log's
 *   retention, the next round is a full load again, with backoff.
 */
import type { DB } from '../db.js';
import type { Lease } from '../../nodes/types.js';
import { leaseFromRow, type LeaseRow } from '../leases.js';
import { POOL_WATCHDOG_MS, renewAfterOutage, renewIfWedged, withPoolTimeout, type Sql } from './connect.js';

interface TableSpec {
  table: string;
  /** The column the change log names (the trigger's argument in migration 7). */
  key: string;
  pk: string[];
  /** Other unique keys: a replica row holding one of them for another primary key is stale and goes. */
  unique?: string[];
}

/** Parents before children (foreign keys in the replica). */
export const REPLICATED: TableSpec[] = [
  { table: 'groups', key: 'name', pk: ['name'] },
  { table: 'group_attrs', key: 'grp', pk: ['grp', 'key'] },
  { table: 'vnfs', key: 'name', pk: ['name'] },
  { table: 'vnfs_attrs', key: 'vnfs', pk: ['vnfs', 'key'] },
  { table: 'vnfs_revisions', key: 'vnfs', pk: ['vnfs', 'rev'] },
  { table: 'nodes', key: 'mac', pk: ['mac'], unique: ['name', 'ip'] },
  { table: 'node_attrs', key: 'mac', pk: ['mac', 'key'] },
  { table: 'leases', key: 'mac', pk: ['mac'], unique: ['ip'] },
  // What nodes report, written through by the server that received it (migration 9).
  { table: 'inventory', key: 'mac', pk: ['mac', 'slot'] },
  { table: 'health', key: 'mac', pk: ['mac'] },
  { table: 'node_installs', key: 'mac', pk: ['mac'] },
  // DHCPv6 leases, by the node's MAC (migration 10).
  { table: 'leases6', key: 'mac', pk: ['duid', 'iaid', 'mac'], unique: ['ip'] },
];

export const CHANGES_CHANNEL = 'pxeherd_changes';
/** Change-log rows older than this are pruned; a replica that has not polled for half of it reloads. */
export const CHANGES_RETENTION_MS = 10 * 60_000;

type Row = Record<string, unknown>;

export interface ReplicaOptions {
  /** A lease row changed in the replica (undefined: it is gone): the DHCP handler's memory follows. */
  onLease?: (mac: string, lease: Lease | undefined) => void;
  /** PostgreSQL became unreachable (once per outage) / reachable again. */
  onDown?: (e: Error) => void;
  onUp?: () => void;
  pollMs?: number;
  /**
   * Runs the replica's own writes (rows read from PostgreSQL): the server's write-through capture
   * (src/store/pg/writer.ts) must not send them back.
   */
  applying?: <T>(fn: () => T) => T;
}

export class PgReplica {
  private snapshot?: string;
  private lastPoll = 0;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = false;
  private down = false;
  /** When the rounds started failing (the outage the next renewAfterOutage is about). */
  private downSince = 0;
  private backoffMs = 0;
  private nextTryAt = 0;
  private unlisten?: () => Promise<void>;
  private lastPrune = 0;
  private readonly columns = new Map<string, Set<string>>();
  /** DHCPv6 lease rows of these MACs changed in the replica: the DHCPv6 handler's memory follows (src/server/pg-dhcp6.ts). */
  readonly lease6Listeners: ((macs: Set<string>) => void)[] = [];
  /** Full loads and change-log rounds done (tests, metrics). */
  loads = 0;
  polls = 0;
  /** Keys applied from the change log (tests, metrics). */
  applied = 0;

  constructor(
    private readonly db: DB,
    private readonly sql: Sql,
    private readonly opts: ReplicaOptions = {},
  ) {
    for (const t of REPLICATED) this.columns.set(t.table, new Set(db.prepare<[], { name: string }>(`PRAGMA table_info("${t.table}")`).all().map((c) => c.name)));
  }

  /** Whether the last round reached PostgreSQL. */
  get connected(): boolean {
    return !this.down && this.snapshot !== undefined;
  }

  /** Every replicated table from one snapshot; rows PostgreSQL does not have leave the replica. */
  async load(): Promise<Record<string, number>> {
    const { snap, tables } = (await this.sql.begin('isolation level repeatable read read only', async (tx) => {
      const [s] = await tx`SELECT pg_current_snapshot()::text AS snap`;
      const tables: Record<string, Row[]> = {};
      for (const t of REPLICATED) tables[t.table] = (await tx.unsafe(`SELECT * FROM ${t.table}`)) as unknown as Row[];
      return { snap: s!.snap as string, tables };
    })) as { snap: string; tables: Record<string, Row[]> };
    const counts: Record<string, number> = {};
    const leaseKeys = new Set<string>();
    const lease6Keys = new Set<string>();
    this.apply(() => {
      for (const t of REPLICATED) {
        const rows = tables[t.table]!;
        counts[t.table] = rows.length;
        const keep = new Set(rows.map((r) => pkOf(t, r)));
        const local = this.db.prepare(`SELECT ${t.pk.join(', ')} FROM ${t.table}`).all() as Row[];
        const del = this.db.prepare(`DELETE FROM ${t.table} WHERE ${t.pk.map((c) => `${c} = ?`).join(' AND ')}`);
        for (const l of local) {
          if (keep.has(pkOf(t, l))) continue;
          del.run(...t.pk.map((c) => l[c]));
          if (t.table === 'leases') leaseKeys.add(String(l.mac));
          if (t.table === 'leases6') lease6Keys.add(String(l.mac));
        }
        for (const r of rows) {
          this.upsert(t, r);
          if (t.table === 'leases') leaseKeys.add(String(r.mac));
          if (t.table === 'leases6') lease6Keys.add(String(r.mac));
        }
      }
    });
    this.snapshot = snap;
    this.lastPoll = Date.now();
    this.loads++;
    this.emitLeases(leaseKeys);
    if (lease6Keys.size) for (const fn of this.lease6Listeners) fn(lease6Keys);
    return counts;
  }

  /** Apply what became visible since the last snapshot; a full load when there is none. */
  async poll(): Promise<number> {
    if (!this.snapshot || Date.now() - this.lastPoll > CHANGES_RETENTION_MS / 2) {
      await this.load();
      return -1;
    }
    const [r] = await this.sql`
      SELECT pg_current_snapshot()::text AS snap, COALESCE((
        SELECT json_agg(json_build_array(tbl, key))::text FROM changes
        WHERE xid >= pg_snapshot_xmin(${this.snapshot}::pg_snapshot) AND NOT pg_visible_in_snapshot(xid, ${this.snapshot}::pg_snapshot)
      ), '[]') AS changed`;
    const changed = JSON.parse(r!.changed as string) as [string, string][];
    const keys = new Map<string, Set<string>>();
    for (const [tbl, key] of changed) {
      let s = keys.get(tbl);
      if (!s) keys.set(tbl, (s = new Set()));
      s.add(key);
    }
    await this.refresh(keys);
    this.snapshot = r!.snap as string;
    this.lastPoll = Date.now();
    this.polls++;
    if (Date.now() - this.lastPrune > 60_000) {
      this.lastPrune = Date.now();
      await this.sql`DELETE FROM changes WHERE time < ${Date.now() - CHANGES_RETENTION_MS}`;
    }
    return changed.length;
  }

  /** Re-read these keys (table -> keys) from PostgreSQL into the replica now (after a lost race, say). */
  async refresh(keys: Map<string, Set<string>>): Promise<void> {
    const fetched: { t: TableSpec; keys: string[]; rows: Row[] }[] = [];
    for (const t of REPLICATED) {
      const k = keys.get(t.table);
      if (!k || k.size === 0) continue;
      const list = [...k];
      const rows = (await this.sql.unsafe(`SELECT * FROM ${t.table} WHERE ${t.key} = ANY($1)`, [list])) as unknown as Row[];
      fetched.push({ t, keys: list, rows });
    }
    const leaseKeys = new Set<string>();
    const lease6Keys = new Set<string>();
    this.apply(() => {
      for (const { t, keys: list, rows } of fetched) {
        const byKey = new Map<string, Row[]>();
        for (const r of rows) {
          const k = String(r[t.key]);
          (byKey.get(k) ?? byKey.set(k, []).get(k)!).push(r);
        }
        const localOf = this.db.prepare(`SELECT ${t.pk.join(', ')} FROM ${t.table} WHERE ${t.key} = ?`);
        const del = this.db.prepare(`DELETE FROM ${t.table} WHERE ${t.pk.map((c) => `${c} = ?`).join(' AND ')}`);
        for (const k of list) {
          const want = byKey.get(k) ?? [];
          const keep = new Set(want.map((r) => pkOf(t, r)));
          for (const l of localOf.all(k) as Row[]) if (!keep.has(pkOf(t, l))) del.run(...t.pk.map((c) => l[c]));
          for (const r of want) this.upsert(t, r);
          this.applied++;
          if (t.table === 'leases') leaseKeys.add(k);
          if (t.table === 'leases6') lease6Keys.add(k);
        }
      }
    });
    this.emitLeases(leaseKeys);
    if (lease6Keys.size) for (const fn of this.lease6Listeners) fn(lease6Keys);
  }

  /** Follow the change log: LISTEN as a hint, a poll every `pollMs` anyway, reconnects with backoff. */
  async start(): Promise<void> {
    try {
      const l = await this.sql.listen(CHANGES_CHANNEL, () => this.kick(), () => this.kick());
      this.unlisten = () => l.unlisten();
    } catch (e) {
      this.markDown(e as Error); // the timer keeps trying; LISTEN comes back with the connection
    }
    const every = this.opts.pollMs ?? 250;
    this.timer = setInterval(() => this.kick(), every);
    this.timer.unref();
  }

  /** Run one round now (or right after the one in progress). Resolves when it is done. */
  kick(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    if (this.down && Date.now() < this.nextTryAt) return Promise.resolve();
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await withPoolTimeout(this.poll(), ROUND_TIMEOUT_MS);
          // Back as soon as one round got through: under load NOTIFYs keep asking for another
          // round, and registrations must not wait for a quiet moment to resume.
          this.markUp();
        } while (this.again && !this.stopped);
      } catch (e) {
        this.snapshot = undefined; // reconnected: reload, whatever was missed
        renewIfWedged(this.sql, e as Error, 'the replica');
        this.markDown(e as Error);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** One local transaction of rows read from PostgreSQL (not captured for write-through). */
  private apply(fn: () => void): void {
    const tx = this.db.transaction(fn);
    if (this.opts.applying) this.opts.applying(() => tx());
    else tx();
  }

  /** Forget the snapshot: the next round is a full load (after a write-through that could not be confirmed). */
  invalidate(): void {
    this.snapshot = undefined;
  }

  private markUp(): void {
    if (!this.down) return;
    this.down = false;
    this.backoffMs = 0;
    // No connection from before the outage may stall a later query (renewAfterOutage says why).
    renewAfterOutage(this.sql, 5, this.downSince);
    this.opts.onUp?.();
  }

  private markDown(e: Error): void {
    // At most 1 s apart: a failed try costs one refused connection, and every second the replica
    // stays down after the database is back keeps registrations and new leases paused.
    this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 250), 1_000);
    this.nextTryAt = Date.now() + this.backoffMs;
    if (!this.down) {
      this.down = true;
      this.downSince = Date.now();
      this.opts.onDown?.(e);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => undefined);
    await this.unlisten?.().catch(() => undefined);
  }

  private emitLeases(macs: Set<string>): void {
    if (!this.opts.onLease || macs.size === 0) return;
    const get = this.db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE mac = ?');
    for (const mac of macs) {
      const r = get.get(mac);
      this.opts.onLease(mac, r && leaseFromRow(r));
    }
  }

  private readonly upserts = new Map<string, (r: Row) => void>();

  /** Insert or update one row; a replica row holding one of its unique values under another key goes first. */
  private upsert(t: TableSpec, r: Row): void {
    let fn = this.upserts.get(t.table);
    if (!fn) {
      const local = this.columns.get(t.table)!;
      const cols = Object.keys(r).filter((c) => local.has(c));
      const set = cols.filter((c) => !t.pk.includes(c));
      const ins = this.db.prepare(
        `INSERT INTO ${t.table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')}) ON CONFLICT (${t.pk.join(', ')}) ` +
          (set.length ? `DO UPDATE SET ${set.map((c) => `${c} = excluded.${c}`).join(', ')}` : 'DO NOTHING'),
      );
      // `<> ''` spelled out: nodes_ip is a partial index (WHERE ip <> ''), which SQLite uses only
      // when the query says so; without it every replicated node row scanned the whole nodes table.
      const clash = (t.unique ?? []).map((u) => ({ u, st: this.db.prepare(`DELETE FROM ${t.table} WHERE ${u} = ? AND ${u} <> '' AND NOT (${t.pk.map((c) => `${c} = ?`).join(' AND ')})`) }));
      fn = (row: Row) => {
        for (const { u, st } of clash) if (row[u] !== '' && row[u] != null) st.run(row[u], ...t.pk.map((c) => row[c]));
        ins.run(...cols.map((c) => row[c] ?? null));
      };
      this.upserts.set(t.table, fn);
    }
    fn(r);
  }
}

/** A round that takes longer counts as a failure (a connection to a vanished host can hang for minutes). */
/**
 * The replica's round is the server's watchdog on its pool (it runs every 250 ms): a round that
 * got no answer within POOL_WATCHDOG_MS, or a connection that could not finish connecting,
 * replaces the pool (renewIfWedged, src/store/pg/connect.ts).
 */
const ROUND_TIMEOUT_MS = POOL_WATCHDOG_MS;

function pkOf(t: TableSpec, r: Row): string {
  return JSON.stringify(t.pk.map((c) => r[c]));
}
