/**
 * The live event feed across servers on one PostgreSQL: every event any server appends, in id
 * order, once. NOTIFY pxeherd_events is only a hint that there is something new; the events are
 * always read by id (eventsAfter), so a notification lost while the listening connection was
 * down costs nothing: postgres.js re-issues LISTEN after a reconnect and calls `onlisten`, which
 * catches up from the last id delivered. postgres.js gives up re-listening when the reconnect
 * itself fails (the database was unreachable at that moment), so each poll also sends a
 * heartbeat NOTIFY on this feed's own channel through the same listening connection: when the
 * previous heartbeat never came back, the feed subscribes again (and catches up). Appends take an
 * advisory lock (PostgresBackend), so ids become visible in order and paging by id never skips a
 * late commit.
 */
import type { StoredEvent } from '../backend.js';
import type { PostgresBackend } from './backend.js';
import { EVENTS_CHANNEL } from './backend.js';

export interface EventFeedOptions {
  /** Deliver events with id > fromId; default: only events appended from now on. */
  fromId?: number;
  onEvent: (e: StoredEvent) => void;
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
            const page = await this.backend.eventsAfter(this.last, 500);
            for (const e of page) {
              this.last = e.id;
              this.opts.onEvent(e);
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

  /** The id of the last event delivered. */
  get lastId(): number {
    return this.last;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    for (const u of this.unlisten) await u().catch(() => undefined);
  }
}
