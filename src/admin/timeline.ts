import type { BootEvent, Node } from '../nodes/types.js';

export interface TimelineRow {
  id: number | null;
  time: string;
  /** Seconds since the start of this boot, e.g. "+12.345 s". */
  offset: string;
  /** Since the previous event of the boot, e.g. "0.120 s". */
  delta: string;
  kind: string;
  summary: string;
  failed: boolean;
  /** stderr of a failed or noisy nodescript, shown in full (escaped). */
  stderr?: string;
  /** The server that recorded it, on PostgreSQL where several servers record a node's events. */
  server?: string;
}

export interface Boot {
  start: string;
  durationS: string;
  failed: boolean;
  rows: TimelineRow[];
}

const FAILURE_KINDS = /\.(fail|error|nak|denied|decline)$/;

export function isFailure(ev: BootEvent): boolean {
  const d = ev.detail ?? {};
  if (ev.kind === 'tftp.error' && d.probe === true) return false;
  if (FAILURE_KINDS.test(ev.kind) || ev.kind === 'install.local_boot_failed') return true;
  if (ev.kind === 'provision.end' && d.ok === false) return true;
  return typeof d.status === 'number' && d.status >= 400;
}

const s = (v: unknown) => (v === undefined || v === null || v === '' ? undefined : String(v));

function bytes(n: unknown): string | undefined {
  if (typeof n !== 'number') return undefined;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function ms(n: unknown): string | undefined {
  return typeof n === 'number' ? `${n} ms` : undefined;
}

/** One line a person can read for an event; the full detail stays available as JSON. */
export function summarize(ev: BootEvent): string {
  const d = (ev.detail ?? {}) as Record<string, unknown>;
  const parts: (string | undefined)[] = [];
  switch (ev.kind.split('.')[0]) {
    case 'dhcp':
      parts.push(s(d.ip) && `ip ${s(d.ip)}`, s(d.boot) && `boot ${s(d.boot)}`, s(d.file) && `file ${s(d.file)}`, s(d.reply), s(d.reason));
      break;
    case 'tftp':
      parts.push(s(d.file), s(d.peer) && `from ${s(d.peer)}`, bytes(d.bytes), ms(d.durationMs), s(d.error));
      break;
    case 'http':
      parts.push(s(d.path) ?? (s(d.vnfs) && `${s(d.vnfs)}/${s(d.file) ?? ''}`) ?? s(d.template), s(d.status) && `status ${s(d.status)}`, bytes(d.bytes), ms(d.ms), s(d.mode) && `mode ${s(d.mode)}`, s(d.error));
      break;
    case 'provision':
      parts.push(s(d.state) && `state ${s(d.state)}`, s(d.via) && `via ${s(d.via)}`, ms(d.durationMs ?? d.ms), d.ok === true ? 'ok' : d.ok === false ? 'FAILED' : undefined, s(d.message));
      if (Array.isArray(d.failed) && d.failed.length) parts.push(`failed: ${d.failed.join(', ')}`);
      break;
    case 'nodescript':
      parts.push(s(d.script), s(d.reason));
      break;
    case 'install':
      parts.push(
        s(d.vnfs) && s(d.rev) ? `${s(d.vnfs)} r${s(d.rev)}` : s(d.rev) && `r${s(d.rev)}`,
        s(d.disk) && `disk ${s(d.disk)}`,
        s(d.firmware),
        s(d.stage) && `stage ${s(d.stage)}`,
        s(d.error),
        typeof d.failures === 'number' ? `${d.failures} failed disk boot${d.failures === 1 ? '' : 's'} in a row` : undefined,
        s(d.hint),
      );
      break;
    case 'power':
      parts.push(s(d.action), s(d.driver) && `driver ${s(d.driver)}`, s(d.power) && `power ${s(d.power)}`, d.skipped === true ? 'skipped' : undefined, s(d.error));
      break;
    case 'install':
      // install.rollback: deb12@2 → deb12@1; install.done/recorded: the revision (and the one before it).
      parts.push(s(d.from) && `${s(d.from)} → ${s(d.to)}`, s(d.vnfs) && s(d.rev) && `${s(d.vnfs)} r${s(d.rev)}`, s(d.previous) && `before: ${s(d.previous)}`, s(d.stage) && `stage ${s(d.stage)}`, s(d.reason) ?? s(d.error));
      break;
    default:
      parts.push(s(d.reason) ?? s(d.error), s(d.via) && `via ${s(d.via)}`, s(d.ip) && `ip ${s(d.ip)}`);
  }
  return parts.filter(Boolean).join(' · ');
}

/** A new boot starts at a DHCP DISCOVER (or a ProxyDHCP answer) after other events. */
function startsBoot(ev: BootEvent): boolean {
  return ev.kind === 'dhcp.discover';
}

/**
 * Group a node's events (oldest first) into boots with timings relative to each boot's
 * first event. Newest boot first, as a person looks for the latest attempt.
 */
export function buildTimeline(events: BootEvent[]): Boot[] {
  const sorted = [...events].sort((a, b) => (a.time ?? 0) - (b.time ?? 0) || (a.id ?? 0) - (b.id ?? 0));
  const groups: BootEvent[][] = [];
  for (const ev of sorted) {
    const cur = groups[groups.length - 1];
    if (!cur || (startsBoot(ev) && !cur.every(startsBoot))) groups.push([ev]);
    else cur.push(ev);
  }
  return groups
    .map((g) => {
      const t0 = g[0]!.time ?? 0;
      let prev = t0;
      const rows = g.map((ev) => {
        const t = ev.time ?? 0;
        const row: TimelineRow = {
          id: ev.id ?? null,
          time: new Date(t).toISOString(),
          offset: `+${((t - t0) / 1000).toFixed(3)} s`,
          delta: `${((t - prev) / 1000).toFixed(3)} s`,
          kind: ev.kind,
          summary: summarize(ev),
          failed: isFailure(ev),
        };
        const server = (ev as { serverId?: string }).serverId;
        if (server) row.server = server;
        const err = ev.detail?.stderr;
        if (typeof err === 'string' && err.length) row.stderr = err;
        prev = t;
        return row;
      });
      const last = g[g.length - 1]!.time ?? t0;
      return { start: new Date(t0).toISOString(), durationS: ((last - t0) / 1000).toFixed(3), failed: rows.some((r) => r.failed), rows };
    })
    .reverse();
}

/** Whether an event belongs to the node: its MAC, or a TFTP transfer (recorded without a MAC) from its address. */
export function isNodeEvent(node: Pick<Node, 'mac' | 'ip'>, e: BootEvent): boolean {
  return e.mac === node.mac || (!e.mac && !!node.ip && e.kind.startsWith('tftp.') && e.detail?.peer === node.ip);
}

/**
 * Events of one node: those recorded with its MAC, plus TFTP transfers from its address
 * (TFTP knows the peer, not the MAC).
 */
export function nodeEvents(q: (f: { mac?: string; kind?: string; limit?: number; order?: 'asc' | 'desc' }) => BootEvent[], node: Node, limit = 500): BootEvent[] {
  const own = q({ mac: node.mac, limit, order: 'desc' });
  const tftp = node.ip ? q({ kind: 'tftp', limit: 5000, order: 'desc' }).filter((e) => isNodeEvent(node, e)) : [];
  const seen = new Set(own.map((e) => e.id));
  return [...own, ...tftp.filter((e) => !seen.has(e.id))]
    .sort((a, b) => (b.time ?? 0) - (a.time ?? 0))
    .slice(0, limit);
}
