/**
 * Write-through for a local replica on PostgreSQL (issue 19): every row the server's own code
 * writes into the replica goes to PostgreSQL, so no write stays local.
 *
 * Every part of pxeherd (admin API and UI, CLI, provisiond, inventory, health, installs, boot
 * modes) writes through the synchronous `Store`; on PostgreSQL that store is the local replica
 * (src/store/pg/replica.ts). Instead of a second, asynchronous copy of each of those operations,
 * the SAME code runs against the replica and this class captures the rows it changed: temporary
 * SQLite triggers (on this connection only) write every insert, update and delete of a replicated
 * table, with the row before and after, into a temporary table. That table is part of the
 * writing transaction: a transaction the code rolls back (a refused second field of a PATCH)
 * leaves nothing to write. The replica's own applying of PostgreSQL's rows, and the DHCP path
 * (coordinated by pg-serve.ts itself), run `suspended`.
 *
 * The captured rows are written to PostgreSQL once per event-loop turn (a boot storm's 1000
 * check-ins become a few transactions), each unit as ONE transaction inside PostgresBackend
 * (`applyRowChanges`): an update sends only the columns that changed, so two servers changing
 * different columns of one node do not undo each other.
 * - Admin operations (API, UI, CLI) run `tagged`: their rows form their own unit, `strict`, and
 *   the caller waits for it (`settle`). If PostgreSQL refuses (a unique key another server took
 *   in the meantime: 409) or cannot be reached (503; known down: at once, without trying), the
 *   replica's rows are put back from the captured before-rows, re-read from PostgreSQL when it
 *   is reachable, and the caller gets a WriteRefused naming why: the answer never claims a change
 *   PostgreSQL does not have. AsyncLocalStorage carries the operation across its awaits. Validation is the same code as on SQLite, run against a replica
 *   that caught up with the change log first (the admin middleware calls `catchUp`).
 * - What nodes report (untagged): lenient; a row whose node was deleted meanwhile is dropped; an
 *   unreachable database keeps the rows queued (bounded) and retries with backoff.
 * - boot once -> local from a node's boot is the flip: a conditional UPDATE in PostgreSQL, and
 *   only the server whose UPDATE matched is told (`onBootFlip`), so it alone records the event.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { DB } from '../db.js';
import type { PostgresBackend, RowChange } from './backend.js';
import { REPLICATED } from './replica.js';

type Row = Record<string, unknown>;

/** Replicated tables the server's own code writes (leases are coordinated by pg-serve's DHCP path). */
export const WRITTEN_THROUGH = REPLICATED.filter((t) => t.table !== 'leases' && t.table !== 'leases6');

const QUEUE_MAX = 200_000;

/** The admin change was not made in PostgreSQL (and was undone in the replica). */
export class WriteRefused extends Error {
  constructor(
    message: string,
    /** 409: a conflicting change elsewhere; 503: the database could not be reached. */
    readonly status: 409 | 503,
  ) {
    super(message);
  }
}

let tagIds = 0;

/** One admin operation's captured rows (AsyncLocalStorage follows it through its awaits). */
export class WriteTag {
  readonly id = ++tagIds;
  error?: WriteRefused;
  done(_n: number, error?: WriteRefused): void {
    if (error && !this.error) this.error = error;
  }
}

interface Captured {
  table: string;
  old?: Row;
  new?: Row;
  tag?: WriteTag;
}

export interface WriterOptions {
  /** Re-read these keys (table -> key values) from PostgreSQL into the replica: undo a refused change. */
  refresh(keys: Map<string, Set<string>>): Promise<void>;
  /** The replica is stale beyond repair without PostgreSQL: reload it when it is back. */
  invalidate(): void;
  /** This server's node boot flipped boot once -> local in PostgreSQL (it won). */
  onBootFlip?(mac: string, name: string): void;
  warn(msg: string): void;
  isConnectionError(e: unknown): boolean;
  /** false: the database is known to be unreachable: admin units fail at once, reports wait (no connection attempts). */
  isUp?(): boolean;
}

export class WriteThrough {
  private pending: Captured[] = [];
  private suspendedDepth = 0;
  private scheduled = false;
  private flushing?: Promise<void>;
  private again = false;
  private retryTimer?: NodeJS.Timeout;
  private backoffMs = 0;
  private failing = false;
  private closed = false;
  private readonly als = new AsyncLocalStorage<WriteTag>();
  private readonly specs = new Map(WRITTEN_THROUGH.map((t) => [t.table, t]));
  private readonly tags = new Map<number, WriteTag>();
  private readonly q;
  /** Rows written to PostgreSQL, rows dropped (node gone, queue full), boot flips won (tests, metrics). */
  readonly counts = { written: 0, dropped: 0, flipsWon: 0, flipsLost: 0, units: 0 };

  constructor(
    private readonly db: DB,
    private readonly pg: PostgresBackend,
    private readonly o: WriterOptions,
  ) {
    db.function('pxeherd_capturing', { deterministic: false }, () => (this.suspendedDepth === 0 && !this.closed ? 1 : 0));
    // The row's admin operation (0: a node report); a flush is due after this turn.
    db.function('pxeherd_capture_tag', { deterministic: false }, () => {
      this.schedule();
      return this.als.getStore()?.id ?? 0;
    });
    db.exec('CREATE TEMP TABLE IF NOT EXISTS pxw_captured (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, old TEXT, new TEXT, tag INTEGER NOT NULL)');
    this.q = {
      take: db.prepare<[], { seq: number; tbl: string; old: string | null; new: string | null; tag: number }>('SELECT * FROM temp.pxw_captured ORDER BY seq'),
      clear: db.prepare<[number]>('DELETE FROM temp.pxw_captured WHERE seq <= ?'),
      ofTag: db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM temp.pxw_captured WHERE tag = ?'),
    };
    for (const t of WRITTEN_THROUGH) {
      const cols = db.prepare<[], { name: string }>(`PRAGMA main.table_info("${t.table}")`).all().map((c) => c.name);
      const obj = (p: string) => `json_object(${cols.map((c) => `'${c}', ${p}."${c}"`).join(', ')})`;
      db.exec(`
        DROP TRIGGER IF EXISTS temp.pxw_${t.table}_i; DROP TRIGGER IF EXISTS temp.pxw_${t.table}_u; DROP TRIGGER IF EXISTS temp.pxw_${t.table}_d;
        CREATE TEMP TRIGGER pxw_${t.table}_i AFTER INSERT ON main.${t.table} WHEN pxeherd_capturing() BEGIN INSERT INTO temp.pxw_captured (tbl, old, new, tag) VALUES ('${t.table}', NULL, ${obj('NEW')}, pxeherd_capture_tag()); END;
        CREATE TEMP TRIGGER pxw_${t.table}_u AFTER UPDATE ON main.${t.table} WHEN pxeherd_capturing() BEGIN INSERT INTO temp.pxw_captured (tbl, old, new, tag) VALUES ('${t.table}', ${obj('OLD')}, ${obj('NEW')}, pxeherd_capture_tag()); END;
        CREATE TEMP TRIGGER pxw_${t.table}_d AFTER DELETE ON main.${t.table} WHEN pxeherd_capturing() BEGIN INSERT INTO temp.pxw_captured (tbl, old, new, tag) VALUES ('${t.table}', ${obj('OLD')}, NULL, pxeherd_capture_tag()); END;`);
    }
  }

  /** Run `fn` without capturing its writes (rows read from PostgreSQL, the DHCP path). */
  suspended<T>(fn: () => T): T {
    this.suspendedDepth++;
    try {
      return fn();
    } finally {
      this.suspendedDepth--;
    }
  }

  /**
   * Run an admin operation: the rows it writes (also after its awaits) form its own units,
   * strict. `settle(tag)` waits for them.
   */
  tagged<T>(tag: WriteTag, fn: () => T): T {
    this.tags.set(tag.id, tag);
    return this.als.run(tag, fn);
  }

  /** Resolves once every row `tag` wrote (and committed in the replica) is in PostgreSQL; throws WriteRefused when one was not. */
  async settle(tag: WriteTag): Promise<void> {
    try {
      // A flush takes every committed row when it starts: at most one more round than the one
      // already under way covers this operation's rows.
      for (let i = 0; i < 3 && (i === 0 || this.q.ofTag.get(tag.id)!.n > 0 || this.pending.some((c) => c.tag === tag)); i++) await this.flush();
      if (!tag.error && (this.q.ofTag.get(tag.id)!.n > 0 || this.pending.some((c) => c.tag === tag))) {
        tag.error = new WriteRefused('the database is unreachable: nothing was changed; try again when it is back', 503);
      }
    } finally {
      this.tags.delete(tag.id);
    }
    if (tag.error) throw tag.error;
  }

  /** Every captured row so far, written (or dropped); for shutdown and tests. */
  async drain(): Promise<void> {
    for (let i = 0; i < 100 && (this.pending.length || this.flushing || this.q.take.get()); i++) {
      await this.flush();
      if (this.failing) return;
    }
  }

  get queued(): number {
    return this.pending.length + (this.closed ? 0 : this.q.ofTag.get(0)!.n);
  }

  async close(): Promise<void> {
    await this.drain().catch(() => undefined);
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  /** Put the replica's rows back as they were before `changes` (newest first), not captured. */
  private undo(changes: RowChange[]): void {
    try {
      this.undoRows(changes);
    } catch (e) {
      this.o.warn(`write-through: could not undo a refused change in the replica (${(e as Error).message}); it is reloaded from the database`);
      this.o.invalidate();
    }
  }

  private undoRows(changes: RowChange[]): void {
    const q = (n: string) => `"${n}"`;
    this.suspended(() =>
      this.db.transaction(() => {
        for (const c of [...changes].reverse()) {
          const pkOf = (r: Row) => c.pk.map((k) => r[k] as never);
          const where = c.pk.map((k) => `${q(k)} = ?`).join(' AND ');
          if (!c.old) {
            this.db.prepare(`DELETE FROM ${q(c.table)} WHERE ${where}`).run(...pkOf(c.new!));
            continue;
          }
          const cols = Object.keys(c.old);
          const rest = cols.filter((k) => !c.pk.includes(k));
          this.db
            .prepare(
              `INSERT INTO ${q(c.table)} (${cols.map(q).join(', ')}) VALUES (${cols.map(() => '?').join(', ')}) ON CONFLICT (${c.pk.map(q).join(', ')}) ` +
                (rest.length ? `DO UPDATE SET ${rest.map((k) => `${q(k)} = excluded.${q(k)}`).join(', ')}` : 'DO NOTHING'),
            )
            .run(...cols.map((k) => c.old![k] as never));
        }
      })(),
    );
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /** Move the committed captured rows into the queue (not inside an open transaction). */
  private take(): void {
    if (this.db.inTransaction || this.closed) return;
    const rows = this.q.take.all();
    if (rows.length === 0) return;
    this.q.clear.run(rows[rows.length - 1]!.seq);
    // Rows of an operation nobody waits for any more (it answered, then wrote on): still one unit, strict.
    const orphans = new Map<number, WriteTag>();
    for (const r of rows) {
      const spec = this.specs.get(r.tbl);
      if (!spec) continue;
      const tag = r.tag ? (this.tags.get(r.tag) ?? orphans.get(r.tag) ?? orphans.set(r.tag, new WriteTag()).get(r.tag)) : undefined;
      const old = r.old === null ? undefined : (JSON.parse(r.old) as Row);
      const neu = r.new === null ? undefined : (JSON.parse(r.new) as Row);
      // A changed primary key (node replace: a new MAC) is the old row going and a new one coming.
      if (old && neu && spec.pk.some((c) => old[c] !== neu[c])) {
        this.pending.push({ table: r.tbl, old, tag }, { table: r.tbl, new: neu, tag });
      } else this.pending.push({ table: r.tbl, old, new: neu, tag });
    }
    if (this.pending.length > QUEUE_MAX) {
      // Only node reports pile up (an unreachable database): the oldest go, counted.
      const before = this.pending.length;
      let excess = before - QUEUE_MAX;
      this.pending = this.pending.filter((x) => x.tag || excess-- <= 0);
      this.counts.dropped += before - this.pending.length;
    }
  }

  /** Write what is queued, unit by unit, in capture order. */
  flush(): Promise<void> {
    if (this.flushing) {
      this.again = true;
      return this.flushing;
    }
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    this.flushing = (async () => {
      await null; // `flushing` is set before this body can finish (and clear it)
      try {
        do {
          this.again = false;
          for (;;) {
            this.take();
            if (!this.pending.length) break;
            const batch = this.pending.splice(0);
            if (!(await this.shipBatch(batch))) return;
          }
        } while (this.again);
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  /** One batch: node reports as one unit, each admin operation as its own; false: retry later. */
  private async shipBatch(batch: Captured[]): Promise<boolean> {
    const units = new Map<WriteTag | undefined, Captured[]>();
    for (const c of batch) (units.get(c.tag) ?? units.set(c.tag, []).get(c.tag)!).push(c);
    const order = [...units.keys()];
    for (let i = 0; i < order.length; i++) {
      const tag = order[i];
      const rows = units.get(tag)!;
      const changes = collapse(rows, this.specs);
      try {
        if (this.o.isUp && !this.o.isUp()) throw new DatabaseDown('the database is unreachable');
        const r = await this.pg.applyRowChanges(changes, { strict: !!tag });
        this.counts.units++;
        this.counts.written += r.written;
        this.counts.dropped += r.dropped;
        this.counts.flipsLost += r.flipsLost;
        for (const f of r.flipsWon) {
          this.counts.flipsWon++;
          this.o.onBootFlip?.(f.mac, f.name);
        }
        tag?.done(rows.length);
        if (this.failing) this.o.warn('write-through: writing to the database resumed');
        this.failing = false;
        this.backoffMs = 0;
      } catch (e) {
        const offline = this.o.isConnectionError(e);
        if (tag) {
          // An admin change PostgreSQL does not have must not stay in the replica: undone from
          // the rows as they were, then (reachable) re-read with what the other server wrote.
          this.undo(changes);
          if (!offline) await this.o.refresh(keysOf(changes, this.specs)).catch(() => this.o.invalidate());
          tag.done(
            rows.length,
            offline
              ? new WriteRefused(`the database is unreachable (${(e as Error).message}): nothing was changed; try again when it is back`, 503)
              : new WriteRefused(`conflicts with a change made on another server at the same time (${pgDetail(e)}): nothing was changed; try again`, 409),
          );
          continue;
        }
        if (!offline) {
          this.o.warn(`write-through: the database refused node reports (${(e as Error).message}); they are dropped and re-read from the database`);
          this.counts.dropped += rows.length;
          await this.o.refresh(keysOf(changes, this.specs)).catch(() => this.o.invalidate());
          continue;
        }
        // Unreachable: node reports wait (in order) and go when it is back; admin units still
        // in this batch fail now (their callers are waiting).
        const rest: Captured[] = [];
        for (const t of order.slice(i + 1)) {
          const us = units.get(t)!;
          if (t) {
            this.undo(collapse(us, this.specs));
            t.done(us.length, new WriteRefused(`the database is unreachable (${(e as Error).message}): nothing was changed; try again when it is back`, 503));
          } else rest.push(...us);
        }
        this.pending.unshift(...rows, ...rest);
        if (!this.failing) this.o.warn(`write-through: cannot write ${rows.length} node reports to the database (${(e as Error).message}); they are held and written when it is back`);
        this.failing = true;
        this.backoffMs = Math.min(Math.max(this.backoffMs * 2, 250), 5_000);
        this.retryTimer = setTimeout(() => void this.flush(), this.backoffMs);
        this.retryTimer.unref();
        return false;
      }
    }
    return true;
  }
}

class DatabaseDown extends Error {}

/** First row before, last row after, per primary key; deletes first (children first), then the rest (parents first). */
export function collapse(rows: Captured[], specs: Map<string, { table: string; pk: string[] }>): RowChange[] {
  const byKey = new Map<string, RowChange>();
  for (const c of rows) {
    const spec = specs.get(c.table)!;
    const row = (c.new ?? c.old)!;
    const k = c.table + '\0' + JSON.stringify(spec.pk.map((p) => row[p]));
    const had = byKey.get(k);
    if (had) had.new = c.new;
    else byKey.set(k, { table: c.table, pk: spec.pk, old: c.old, new: c.new });
  }
  const rank = new Map(WRITTEN_THROUGH.map((t, i) => [t.table, i]));
  const all = [...byKey.values()].filter((c) => c.old || c.new);
  const deletes = all.filter((c) => !c.new).sort((a, b) => rank.get(b.table)! - rank.get(a.table)!);
  const writes = all.filter((c) => c.new).sort((a, b) => rank.get(a.table)! - rank.get(b.table)!);
  return [...deletes, ...writes];
}

function keysOf(changes: RowChange[], specs: Map<string, { table: string; key: string }>): Map<string, Set<string>> {
  const keys = new Map<string, Set<string>>();
  for (const c of changes) {
    const col = specs.get(c.table)!.key;
    for (const r of [c.old, c.new]) {
      if (!r) continue;
      (keys.get(c.table) ?? keys.set(c.table, new Set()).get(c.table)!).add(String(r[col]));
    }
  }
  // A node's rows come back with it (its attributes, reports).
  const nodes = keys.get('nodes');
  if (nodes) for (const t of ['node_attrs', 'inventory', 'health', 'node_installs']) for (const m of nodes) (keys.get(t) ?? keys.set(t, new Set()).get(t)!).add(m);
  return keys;
}

function pgDetail(e: unknown): string {
  const x = e as { detail?: string; message?: string };
  return x.detail ? `${x.message}: ${x.detail}` : String(x.message ?? e);
}
