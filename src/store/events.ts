import type { DB } from './db.js';
import type { BootEvent, EventSink } from '../nodes/types.js';
import { redactEvent } from '../security/secrets.js';

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
 * queued and flushed in one transaction per event-loop turn so recording never costs a
 * commit per packet. `flush()` forces it (CLI exit, tests, shutdown).
 */
export class EventRepo implements EventSink {
  private pending: BootEvent[] = [];
  private scheduled = false;
  private readonly insert;
  private listeners = new Set<(ev: BootEvent) => void>();

  constructor(private readonly db: DB) {
    this.insert = db.prepare('INSERT INTO events (time, mac, node, kind, detail) VALUES (?, ?, ?, ?, ?)');
  }

  /** Live feed (logs, metrics, the UI's event stream). */
  subscribe(fn: (ev: BootEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  record(ev: BootEvent): void {
    // Secrets (a password hash quoted by a script or a console line) never reach the log.
    const e: BootEvent = { ...redactEvent(ev), time: ev.time ?? Date.now() };
    this.pending.push(e);
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch {
        /* a broken listener must not lose the event */
      }
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.db.transaction(() => {
      for (const e of batch) this.insert.run(e.time, e.mac ?? null, e.node ?? null, e.kind, JSON.stringify(e.detail ?? {}));
    })();
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
