/**
 * The live event feed across servers on one PostgreSQL: every event any server appends, in id
 * order, once. NOTIFY pxeherd_events is only a hint that there is something new; the events are
 * always read by id (eventsAfter), so a notification lost while the listening connection was
 * down costs nothing: postgres.js re-issues LISTEN after a reconnect and calls `onlisten`, which
 * catches up from the last id delivered. postgres.js gives up re-listening when the reconnect
 * itself fails (the database was unreachable at that moment), so each poll also sends a
 * heartbeat NOTIFY on this feed's own channel through the same listening connection: when the
 * previous heartbeat never came back, the feed subscribes again (and catches up). Appends take no
 * lock and may commit out of id order: PostgresBackend.readEvents returns, in id order, only what
 * no open transaction can still precede, so paging by the last id delivered never skips a late
 * commit nor repeats an event; what it holds back (a transaction still open) is read again shortly.
 */
import type { StoredEvent } from '../backend.js';
import type { PostgresBackend } from './backend.js';
import { EVENTS_CHANNEL } from './backend.js';
import type { DB } from '../db.js';
import type { EventFilter } from '../events.js';

export interface EventFeedOptions {
  /** Deliver events with id > fromId; default: only events appended from now on. */
  fromId?: number;
  onEvent?: (e: StoredEvent) => void;
  /** Each page read, before its events go to onEvent (a reader that writes them in one transaction). */
  onEvents?: (page: StoredEvent[]) => void;
  /** A read failed (the database is unreachable): reported once per outage. */
  onError?: (e: Error) => void;
  /** Poll (catch-up and heartbeat) interval in ms; 0 = notifications and reconnects only. */
  pollMs?: number;
}

export class PgEventFeed {
  private last = 0;
  private running?: Promise<void>;
  private again = false;
  private stopped = false;
  private failing = false;
  private timer?: NodeJS.Timeout;
  private unlisten: (() => Promise<void>)[] = [];
  /** This feed's heartbeat channel; undefined until a heartbeat is sent, then whether it came back. */
  private readonly heartbeat = `pxeherd_feed_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  private heartbeatBack?: boolean;
  /** How many times LISTEN was (re)established: 1 at start, +1 per reconnect. */
  listens = 0;
  /** How many times a lost LISTEN was noticed by the heartbeat and re-issued. */
  resubscribes = 0;

  constructor(
    private readonly backend: PostgresBackend,
    private readonly opts: EventFeedOptions,
  ) {}

  async start(): Promise<void> {
    if (this.opts.fromId !== undefined) this.last = this.opts.fromId;
    else {
      const [r] = await this.backend.sql`SELECT COALESCE(max(id), 0)::bigint AS id FROM events`;
      this.last = Number(r!.id);
    }
    await this.subscribe();
    await this.catchUp();
    const every = this.opts.pollMs ?? 5000;
    if (every > 0) {
      this.timer = setInterval(() => void this.tick(), every);
      this.timer.unref();
    }
  }

  private async subscribe(): Promise<void> {
    const h = await this.backend.sql.listen(
      EVENTS_CHANNEL,
      () => void this.catchUp(),
      () => {
        this.listens++;
        void this.catchUp();
      },
    );
    const beat = await this.backend.sql.listen(this.heartbeat, () => (this.heartbeatBack = true));
    this.unlisten = [h.unlisten, beat.unlisten];
    this.heartbeatBack = undefined;
  }

  private async resubscribe(): Promise<void> {
    for (const u of this.unlisten) await u().catch(() => undefined);
    this.unlisten = [];
    if (!this.stopped) await this.subscribe();
  }

  /** The poll: a lost LISTEN is re-established, then whatever was missed is read. */
  async tick(): Promise<void> {
    try {
      if (this.heartbeatBack === false) {
        this.resubscribes++;
        await this.resubscribe();
      }
      await this.catchUp();
      if (this.stopped) return;
      this.heartbeatBack = false;
      await this.backend.sql`SELECT pg_notify(${this.heartbeat}, '')`;
    } catch {
      this.heartbeatBack = undefined; // the database is away: the catch-up reports it
    }
  }

  /** Read everything after the last delivered id; concurrent calls coalesce into one more pass. */
  catchUp(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          for (;;) {
            if (this.stopped) return;
            const { events: page, heldBack } = await this.backend.readEvents(this.last, 500);
            if (page.length) this.opts.onEvents?.(page);
            for (const e of page) {
              this.last = e.id;
              this.opts.onEvent?.(e);
            }
            // A gap an open transaction may still fill: its commit NOTIFYs, a rollback does not,
            // so look again shortly whatever the poll interval.
            if (heldBack) {
              this.retrySoon();
              this.again = false; // the retry reads again; looping here would spin until the gap ends
              break;
            }
            if (page.length < 500) break;
          }
        } while (this.again);
        this.failing = false;
      } catch (e) {
        if (!this.failing) this.opts.onError?.(e as Error);
        this.failing = true;
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private retryTimer?: NodeJS.Timeout;
  private retrySoon(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.catchUp();
    }, 100);
    this.retryTimer.unref();
  }

  /** The id of the last event delivered. */
  get lastId(): number {
    return this.last;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.running;
    for (const u of this.unlisten) await u().catch(() => undefined);
  }
}

/** The filter the mirror understands (src/store/events.ts' EventFilter). */
type Filter = Pick<EventFilter, 'mac' | 'node' | 'kind' | 'since' | 'until' | 'limit' | 'order'>;

interface MirrorRow {
  id: number;
  time: number;
  mac: string | null;
  node: string | null;
  kind: string;
  detail: string;
  server_id: string;
}

/**
 * Every server's events, as PostgreSQL holds them, mirrored into this server's local replica
 * (table pg_events, keyed by the database's event id) by a PgEventFeed. What the admin API, the
 * web UI and their live streams read on PostgreSQL (src/admin/sse.ts' LiveEvents):
 * - query(): a node's timeline and GET /events, from every server, each event with its server
 *   id — synchronous and local, so a page renders without a round trip and still renders while
 *   the database is away (the events held by then).
 * - after() + subscribe(): the live stream in database id order; a stream resuming after event
 *   N (SSE Last-Event-ID) reads the mirror after N and subscribes in the same event-loop turn,
 *   and the mirror writes a page before announcing it, so nothing is missed or sent twice.
 * This server's own events reach the mirror through PostgreSQL too (shipped every 200 ms,
 * pg-serve.ts' EventShipper), so every server shows the same events with the same ids; the
 * local events table keeps only this server's events (metrics, install decisions).
 * The mirror resumes from its highest id after a restart, and after a PostgreSQL outage the feed
 * catches up by id (no loss, no duplicates: ids are the primary key).
 */
export class PgEventMirror {
  private feed?: PgEventFeed;
  private stopped = false;
  private readonly listeners = new Set<(ev: StoredEvent) => void>();
  private readonly insertPage: (page: StoredEvent[]) => void;

  constructor(
    private readonly db: DB,
    private readonly backend: PostgresBackend,
    private readonly opts: { pollMs?: number; onError?: (e: Error) => void } = {},
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS pg_events (
        id INTEGER PRIMARY KEY, time INTEGER NOT NULL, mac TEXT, node TEXT, kind TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}', server_id TEXT NOT NULL DEFAULT '');
      CREATE INDEX IF NOT EXISTS pg_events_mac ON pg_events(mac, id);
      CREATE INDEX IF NOT EXISTS pg_events_node ON pg_events(node, id);
      CREATE INDEX IF NOT EXISTS pg_events_kind ON pg_events(kind, id);`);
    const ins = db.prepare('INSERT OR IGNORE INTO pg_events (id, time, mac, node, kind, detail, server_id) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.insertPage = db.transaction((page: StoredEvent[]) => {
      for (const e of page) ins.run(e.id, e.time, e.mac ?? null, e.node ?? null, e.kind, JSON.stringify(e.detail ?? {}), e.serverId);
    });
  }

  /** The highest event id mirrored so far (0: none). */
  get lastId(): number {
    return (this.db.prepare('SELECT COALESCE(max(id), 0) AS id FROM pg_events').get() as { id: number }).id;
  }

  /**
   * Starts following PostgreSQL from the highest id mirrored (everything on a new replica). A
   * mirror holding ids the database does not have (the database was recreated) starts over.
   */
  async start(): Promise<void> {
    if (this.stopped) return;
    let from = this.lastId;
    if (from > 0) {
      const [r] = await this.backend.sql`SELECT COALESCE(max(id), 0)::bigint AS id FROM events`;
      if (Number(r!.id) < from) {
        this.db.exec('DELETE FROM pg_events');
        from = 0;
      }
    }
    this.feed = new PgEventFeed(this.backend, {
      fromId: from,
      pollMs: this.opts.pollMs ?? 2000,
      onError: this.opts.onError,
      onEvents: (page) => this.insertPage(page),
      onEvent: (e) => {
        for (const fn of this.listeners) {
          try {
            fn(e);
          } catch {
            /* a broken listener must not stop the feed */
          }
        }
      },
    });
    try {
      await this.feed.start();
    } catch (e) {
      const feed = this.feed;
      this.feed = undefined;
      await feed.stop().catch(() => undefined);
      throw e;
    }
  }

  /** Read what PostgreSQL has now (tests, and a caller that must see a write of its own). */
  catchUp(): Promise<void> {
    return this.feed?.catchUp() ?? Promise.resolve();
  }

  subscribe(fn: (ev: StoredEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private where(f: Filter, afterId?: number): { sql: string; args: (string | number)[] } {
    const w: string[] = [];
    const args: (string | number)[] = [];
    if (afterId !== undefined) w.push('id > ?'), args.push(afterId);
    if (f.mac) w.push('mac = ?'), args.push(f.mac);
    if (f.node) w.push('node = ?'), args.push(f.node);
    if (f.kind) w.push('(kind = ? OR kind LIKE ?)'), args.push(f.kind, f.kind.replace(/[%_]/g, '') + '.%');
    if (f.since !== undefined) w.push('time >= ?'), args.push(f.since);
    if (f.until !== undefined) w.push('time <= ?'), args.push(f.until);
    return { sql: w.length ? `WHERE ${w.join(' AND ')}` : '', args };
  }

  private rows(sql: string, args: (string | number)[]): StoredEvent[] {
    return (this.db.prepare(sql).all(...args) as MirrorRow[]).map((r) => ({
      id: r.id,
      time: r.time,
      mac: r.mac ?? undefined,
      node: r.node ?? undefined,
      kind: r.kind,
      detail: JSON.parse(r.detail) as Record<string, unknown>,
      serverId: r.server_id,
    }));
  }

  /** Events of every server, newest first by database id (or oldest first with order: asc). */
  query(f: Filter = {}): StoredEvent[] {
    const { sql, args } = this.where(f);
    const order = f.order === 'asc' ? 'ASC' : 'DESC';
    return this.rows(`SELECT * FROM pg_events ${sql} ORDER BY id ${order} LIMIT ?`, [...args, Math.max(1, Math.min(f.limit ?? 1000, 100000))]);
  }

  /** Events after database id `id` matching the filter, oldest first (a stream resuming). */
  after(id: number, f: Filter, limit = 1000): StoredEvent[] {
    const { sql, args } = this.where({ mac: f.mac, node: f.node, kind: f.kind }, id);
    return this.rows(`SELECT * FROM pg_events ${sql} ORDER BY id LIMIT ?`, [...args, limit]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.feed?.stop();
    this.listeners.clear();
  }
}
