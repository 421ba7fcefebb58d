/**
 * Which servers share this PostgreSQL right now, for `dhcp.answer: balanced` (src/dhcp/policy.ts
 * has the rules). The servers never talk to each other: each one upserts its row in
 * `dhcp_servers` (server_id, last_seen, started; migration 11) every HEARTBEAT_MS and, in the same
 * statement, reads the rows seen within LIVE_MS — both by the database's clock, so the servers'
 * own clocks do not matter. That is the live set; a client's bucket belongs to one of them
 * (bucketOwner). One statement per second per server: nothing on the DHCP path waits for it.
 *
 * When the live set is not known — before the first heartbeat, or when the last successful one
 * is older than LIVE_MS (the database is unreachable, or too slow to answer) — `view` answers
 * undefined and the server answers every client as `answer: all` would (see policy.ts). A
 * heartbeat that fails within LIVE_MS keeps the last live set: the others still count this
 * server too, since its row is as old.
 */
import { bucketOwner, type BalanceView } from '../../dhcp/policy.js';
import type { Sql } from './connect.js';

/** How often a server refreshes its row and reads the others'. */
export const HEARTBEAT_MS = 1000;
/** A row older than this (database clock) is a dead server's; and this server's own view expires. */
export const LIVE_MS = 4000;

export class ServerMembership {
  private live: string[] = [];
  private owners?: (string | undefined)[];
  /** Local time of the last heartbeat that read the live set. */
  private seenAt = 0;
  private timer?: NodeJS.Timeout;
  private beating?: Promise<void>;
  private stopped = false;
  /** Heartbeats that failed (for logs and tests). */
  failures = 0;

  constructor(
    private readonly sql: Sql,
    readonly serverId: string,
    private readonly o: { heartbeatMs?: number; liveMs?: number; onChange?: (live: string[]) => void } = {},
  ) {}

  /** First heartbeat (not waited on by the caller's DHCP path), then one every heartbeatMs. */
  start(): Promise<void> {
    const first = this.beat();
    this.timer = setInterval(() => void this.beat(), this.o.heartbeatMs ?? HEARTBEAT_MS);
    this.timer.unref();
    return first;
  }

  /** The live servers, sorted; [] when not known. */
  liveSet(now = Date.now()): string[] {
    return this.known(now) ? [...this.live] : [];
  }

  /** The owner of a bucket among the live servers; undefined when the live set is not known. */
  view(bucket: number, now = Date.now()): BalanceView | undefined {
    if (!this.known(now) || !this.owners) return undefined;
    return { self: this.serverId, owner: this.owners[bucket]!, bucket };
  }

  private known(now: number): boolean {
    return this.seenAt > 0 && now - this.seenAt < (this.o.liveMs ?? LIVE_MS);
  }

  /** One heartbeat: this server's row refreshed, the live rows read (one statement). */
  beat(): Promise<void> {
    if (this.beating || this.stopped) return this.beating ?? Promise.resolve();
    const liveMs = this.o.liveMs ?? LIVE_MS;
    const t = Date.now();
    this.beating = (async () => {
      try {
        // The CTE's SELECT sees the table as before the upsert: this server is added below.
        const rows = await this.sql<{ server_id: string }[]>`
          WITH me AS (
            INSERT INTO dhcp_servers (server_id, last_seen, started) VALUES (${this.serverId}, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
            ON CONFLICT (server_id) DO UPDATE SET last_seen = excluded.last_seen
            RETURNING server_id
          )
          SELECT server_id FROM dhcp_servers WHERE last_seen > (extract(epoch FROM clock_timestamp()) * 1000)::bigint - ${liveMs} AND server_id <> ${this.serverId}`;
        if (this.stopped) return;
        const live = [...new Set([this.serverId, ...rows.map((r) => r.server_id)])].sort();
        const changed = live.join('\n') !== this.live.join('\n') || !this.owners;
        this.live = live;
        this.seenAt = t;
        if (changed) {
          this.owners = Array.from({ length: 256 }, (_, b) => bucketOwner(b, live));
          this.o.onChange?.(live);
        }
      } catch {
        this.failures++;
      } finally {
        this.beating = undefined;
      }
    })();
    return this.beating;
  }

  /** Stops the heartbeat and removes this server's row: the others take its clients at their next heartbeat. */
  async stop(o: { removeRow?: boolean } = { removeRow: true }): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.beating;
    if (o.removeRow !== false) await this.sql`DELETE FROM dhcp_servers WHERE server_id = ${this.serverId}`.catch(() => undefined);
  }
}
