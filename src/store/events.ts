import type { DB } from './db.js';
import type { BootEvent, EventSink } from '../nodes/types.js';
import { redactEventJson } from '../security/secrets.js';

export interface EventFilter {
  mac?: string;
  node?: string;
  /** kind prefix: "dhcp" matches dhcp.offer, dhcp.ack ... */
  kind?: string;
  since?: number;
  until?: number;
  limit?: number;
  /** newest first (default) or oldest first */
  order?: 'asc' | 'desc';
}

/**
 * The event log. Protocol servers record many small events during a boot storm; writes are
 * queued and written in one transaction, at the end of the event-loop turn when the log was
 * quiet, else at most every COALESCE_MS, so recording never costs a commit per packet and in
 * a storm the pages the rows share (the ends of the indexes on time and node, and the mac
 * index's leaves a node's events share) are written once for many rows. `flush()` forces it
 * (queries, CLI exit, tests, shutdown).
 */
export class EventRepo implements EventSink {
  private pending: BootEvent[] = [];
  /** JSON of each pending event's detail, as redaction serialised it (same index as `pending`). */
  private pendingDetail: string[] = [];
  private scheduled = false;
  /** performance.now() of the last write (-Infinity: none yet). */
  private lastWrite = -Infinity;
  private readonly insert;
  private listeners = new Set<(ev: BootEvent) => void>();

  constructor(
    private readonly db: DB,
    /** Written on every event (migration 6): which server saw it. */
    readonly serverId = '',
  ) {
    this.insert = db.prepare('INSERT INTO events (time, mac, node, kind, detail, server_id) VALUES (?, ?, ?, ?, ?, ?)');
    this.writeBatch = db.transaction((batch: BootEvent[], details: string[]) => {
      // One row per statement: a multi-row INSERT ... VALUES measured worse (SQLite stages
      // its rows in a temporary table: ~60 % more bytes written per DHCP exchange).
      for (let i = 0; i < batch.length; i++) {
        const e = batch[i]!;
        this.insert.run(e.time, e.mac ?? null, e.node ?? null, e.kind, details[i], this.serverId);
      }
    });
  }
  private readonly writeBatch;

  /** Live feed (logs, metrics, the UI's event stream). */
  subscribe(fn: (ev: BootEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Stores the event and returns it as stored: redacted, with its time (what logs and feeds should show). */
  record(ev: BootEvent): BootEvent {
    // Secrets (a password hash quoted by a script or a console line) never reach the log: this
    // is the one place events are redacted; the server's sink logs and forwards what it returns.
    const { event: r, detailJson } = redactEventJson(ev);
    const e: BootEvent = r.time === undefined ? { ...r, time: Date.now() } : r;
    this.pending.push(e);
    this.pendingDetail.push(detailJson);
    if (this.listeners.size > 0) {
      for (const fn of this.listeners) {
        try {
          fn(e);
        } catch {
          /* a broken listener must not lose the event */
        }
      }
    }
    if (!this.scheduled) {
      this.scheduled = true;
      const wait = this.lastWrite + COALESCE_MS - performance.now();
      if (wait > 0) setTimeout(() => this.flush(), wait);
      else setImmediate(() => this.flush());
    }
    return e;
  }

  /**
   * For a caller inside its own write transaction (a DHCP slice): writes the pending events
   * in it when their window is over, saving a commit; otherwise they wait for the window.
   */
  flushIfDue(): void {
    if (this.pending.length && (this.pending.length >= 4096 || performance.now() - this.lastWrite >= COALESCE_MS)) this.flush();
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    const details = this.pendingDetail;
    this.pending = [];
    this.pendingDetail = [];
    this.lastWrite = performance.now();
    this.writeBatch(batch, details);
  }

  query(f: EventFilter = {}): BootEvent[] {
    this.flush();
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.mac) {
      where.push('mac = ?');
      args.push(f.mac);
    }
    if (f.node) {
      where.push('node = ?');
      args.push(f.node);
    }
    if (f.kind) {
      where.push('(kind = ? OR kind LIKE ?)');
      args.push(f.kind, f.kind.replace(/[%_]/g, '') + '.%');
    }
    if (f.since !== undefined) {
      where.push('time >= ?');
      args.push(f.since);
    }
    if (f.until !== undefined) {
      where.push('time <= ?');
      args.push(f.until);
    }
    const order = f.order === 'asc' ? 'ASC' : 'DESC';
    const sql = `SELECT * FROM events ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY time ${order}, id ${order} LIMIT ?`;
    args.push(Math.max(1, Math.min(f.limit ?? 1000, 100000)));
    return this.db
      .prepare<(string | number)[], { id: number; time: number; mac: string | null; node: string | null; kind: string; detail: string }>(sql)
      .all(...args)
      .map((r) => ({ id: r.id, time: r.time, mac: r.mac ?? undefined, node: r.node ?? undefined, kind: r.kind, detail: JSON.parse(r.detail) }));
  }
}

/** Shortest time between two writes of the event log while events keep coming. */
const COALESCE_MS = 20;
