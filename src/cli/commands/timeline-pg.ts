/**
 * `pxeherd node timeline` on PostgreSQL (`database: postgres://...`): the node and its events
 * from every server, read from the database; `--follow` follows the database's event feed
 * (src/store/pg/event-feed.ts: NOTIFY as a hint, read by id, catch-up after a reconnect), so
 * events any server records appear, each once, in database id order, with the server's id.
 */
import type { CliContext } from '../context.js';
import { NotFound } from '../../nodes/select.js';
import { buildTimeline, isNodeEvent } from '../../admin/timeline.js';
import { findNodeInPg, nodeEventsFromPg } from '../../admin/timeline-pg.js';
import { PostgresBackend } from '../../store/pg/backend.js';
import { PgEventFeed } from '../../store/pg/event-feed.js';
import type { BootEvent } from '../../nodes/types.js';

export async function pgNodeTimeline(ctx: CliContext, name: string, o: { boots: number; follow?: boolean }, text: { boot: (node: string, b: ReturnType<typeof buildTimeline>[number]) => string; follow: (node: string, ev: BootEvent) => string }): Promise<void> {
  const pg = PostgresBackend.connect(ctx.config.database, ctx.config.server_id || 'cli', { max: 2 });
  try {
    const node = await findNodeInPg(pg, name);
    if (!node) throw new NotFound(`no node named or with MAC "${name}"`);
    const events = await nodeEventsFromPg(pg, node, 5000);
    const boots = buildTimeline(events).slice(0, o.boots);
    ctx.print({ node: node.name, mac: node.mac, boots }, () => (boots.length ? boots.map((b) => text.boot(node.name, b)).join('\n') : `${node.name}: no events recorded yet\n`));
    if (!o.follow) return;
    const last = events.reduce((m, e) => Math.max(m, e.id), 0);
    ctx.io.err(`following ${node.name} on every server (Ctrl-C to stop)\n`);
    let warned = false;
    const feed = new PgEventFeed(pg, {
      fromId: last,
      pollMs: 2000,
      onEvent: (ev) => {
        warned = false;
        if (isNodeEvent(node, ev)) ctx.io.out(text.follow(node.name, ev));
      },
      onError: (e) => {
        if (!warned) ctx.io.err(`the database is unreachable (${e.message}): following resumes when it is back\n`);
        warned = true;
      },
    });
    await feed.start();
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await feed.stop();
  } finally {
    await pg.close().catch(() => undefined);
  }
}
