/**
 * `node reinstall|rollback --wait` on PostgreSQL: the node boots through whichever server answers
 * it, so its events are followed in the database (src/store/pg/event-feed.ts, as `node timeline
 * --follow` does: NOTIFY as a hint, read by id, catch-up after a reconnect), not in the CLI's
 * in-memory replica, which has no event log. Two more things differ from SQLite:
 * - before the first power action, the command's writes (boot once, a rollback's pin) and its
 *   own events are flushed to PostgreSQL and awaited: a server must hand the node the new boot
 *   mode the moment it PXE-boots;
 * - before an SSH probe the node is re-read from PostgreSQL (a server may have given it its
 *   address during this boot).
 * Events are taken from the database id current when the command started (not by time: the
 * servers' clocks need not agree with this machine's).
 */
import type { CliContext } from '../context.js';
import type { ReinstallBackend } from '../../lifecycle/reinstall.js';
import type { BootEvent } from '../../nodes/types.js';

/** `follow`: --wait (read events); without it only the flush before the first power action. */
export async function reinstallOnPostgres(ctx: CliContext, base: ReinstallBackend, follow: boolean): Promise<{ backend: ReinstallBackend; stop: () => Promise<void> }> {
  const pgCli = ctx.pgCli;
  if (!pgCli) return { backend: base, stop: async () => undefined };
  const { PgEventFeed } = await import('../../store/pg/event-feed.js');
  const pg = pgCli.backend;
  const [r] = await pg.sql`SELECT COALESCE(max(id), 0)::bigint AS last FROM events`;
  const byMac = new Map<string, BootEvent[]>();
  let warned = false;
  const feed = follow && new PgEventFeed(pg, {
    fromId: Number(r!.last),
    pollMs: 1000,
    onEvent: (ev) => {
      warned = false;
      if (ev.mac) (byMac.get(ev.mac) ?? byMac.set(ev.mac, []).get(ev.mac)!).push(ev);
    },
    onError: (e) => {
      if (!warned) ctx.io.err(`the database is unreachable (${e.message}): following resumes when it is back\n`);
      warned = true;
    },
  });
  if (feed) await feed.start();
  let flushed = false;
  const flushOnce = async () => {
    if (flushed) return;
    await pgCli.flush();
    flushed = true;
  };
  return {
    backend: {
      ...base,
      setBootPxe: async (n) => {
        await flushOnce();
        return base.setBootPxe(n);
      },
      powerCycle: async (n) => {
        await flushOnce();
        return base.powerCycle(n);
      },
      eventsSince: (n) => [...(byMac.get(n.mac) ?? [])],
      probeSsh: async (n, timeoutMs) => {
        await pgCli.refreshNodes([n.mac]);
        return base.probeSsh(n, timeoutMs);
      },
    },
    stop: async () => {
      if (feed) await feed.stop();
    },
  };
}
