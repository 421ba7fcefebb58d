import { Command, Option } from 'commander';
import { json, positiveInt } from '../options.js';
import type { CliContext } from '../context.js';
import type { Run } from '../main.js';
import type { BootEvent, Node } from '../../nodes/types.js';
import { buildTimeline, nodeEvents, summarize, isFailure, type Boot } from '../../admin/timeline.js';
import { isPostgresUrl } from '../../store/pg/url.js';

/** One boot as text: its start, length and outcome, then a row per event (failures marked). */
export function bootText(node: string, b: Boot): string {
  const head = `${node}: boot at ${b.start}, ${b.durationS} s${b.failed ? ', FAILED' : ''}`;
  const rows = b.rows.map((r) => {
    const line = `  ${r.offset.padStart(11)}  ${r.failed ? '!' : ' '} ${r.kind.padEnd(22)} ${r.server ? `[${r.server}] ` : ''}${r.summary}`.trimEnd();
    return r.stderr ? `${line}\n${r.stderr.trimEnd().split('\n').map((l) => `      | ${l}`).join('\n')}` : line;
  });
  return [head, ...rows].join('\n') + '\n';
}

/** An event as one line of `--follow` output. */
function followLine(node: string, ev: BootEvent): string {
  const t = new Date(ev.time ?? 0).toISOString().slice(11, 23);
  const server = (ev as { serverId?: string }).serverId; // PostgreSQL: which server recorded it
  return `${t}  ${node}${server ? ` [${server}]` : ''}  ${isFailure(ev) ? '!' : ' '} ${ev.kind.padEnd(22)} ${summarize(ev)}`.trimEnd() + '\n';
}

/** Events of a node newer than `after` (by time, then id), oldest first. */
function newerEvents(ctx: CliContext, node: Node, after: { time: number; ids: Set<number> }): BootEvent[] {
  return nodeEvents((f) => ctx.store.events.query({ ...f, since: after.time }), node, 5000)
    .filter((e) => !after.ids.has(e.id ?? -1))
    .sort((a, b) => (a.time ?? 0) - (b.time ?? 0) || (a.id ?? 0) - (b.id ?? 0));
}

/**
 * `pxeherd node timeline <NODE>`: the node's boots as the web UI's timeline shows them (events
 * grouped per boot, offsets from the boot's start, failures marked, a failing nodescript's
 * stderr in full); `--follow` then prints each new event as it is recorded, to watch a boot.
 */
export function nodeTimelineCommand(run: Run): Command {
  return new Command('timeline')
    .description("a node's boots, newest first: every event (DHCP, TFTP, HTTP, nodescripts, image, install, power) with its offset in the boot, failures marked with !; --follow watches new ones")
    .argument('<NODE>', 'node name or MAC')
    .addOption(new Option('--boots <N>', 'how many boots to show, newest first').default(1).argParser(positiveInt('--boots')))
    .addOption(new Option('--follow', 'after the boots, print each new event of the node as it is recorded (until interrupted)').conflicts('json'))
    .addOption(json())
    .action(
      run(async (ctx, name: string, o: { boots: number; follow?: boolean }) => {
        if (isPostgresUrl(ctx.config.database ?? '')) {
          // Every server's events, from the database (src/cli/commands/timeline-pg.ts).
          const { pgNodeTimeline } = await import('./timeline-pg.js');
          return pgNodeTimeline(ctx, name, o, { boot: bootText, follow: followLine });
        }
        const node = ctx.nodes.get(name);
        const events = nodeEvents((f) => ctx.store.events.query(f), node, 5000);
        const boots = buildTimeline(events).slice(0, o.boots);
        ctx.print({ node: node.name, mac: node.mac, boots }, () =>
          boots.length ? boots.map((b) => bootText(node.name, b)).join('\n') : `${node.name}: no events recorded yet\n`,
        );
        if (!o.follow) return;
        const last = events.reduce((t, e) => Math.max(t, e.time ?? 0), 0);
        const after = { time: last, ids: new Set(events.filter((e) => (e.time ?? 0) === last).map((e) => e.id ?? -1)) };
        ctx.io.err(`following ${node.name} (Ctrl-C to stop)\n`);
        await new Promise<void>((resolve) => {
          const timer = setInterval(() => {
            for (const ev of newerEvents(ctx, node, after)) {
              ctx.io.out(followLine(node.name, ev));
              if ((ev.time ?? 0) > after.time) after.ids.clear();
              after.time = Math.max(after.time, ev.time ?? 0);
              after.ids.add(ev.id ?? -1);
            }
          }, 500);
          const stop = () => {
            clearInterval(timer);
            resolve();
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
      }),
    );
}
