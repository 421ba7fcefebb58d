import fs from 'node:fs';
import type { BootEvent, Node } from '../nodes/types.js';
import { Registry, type Counter, type Histogram, type Labels } from './registry.js';

/** What metrics need from the store: the live event feed and the nodes (for per-state gauges). */
export interface MetricsSource {
  nodes: { all(): Node[] };
  events: { subscribe(fn: (ev: BootEvent) => void): () => void };
}

export interface PxeherdMetrics {
  registry: Registry;
  /** The exposition text for GET /metrics. */
  render(): Promise<string>;
  /** Count one event (called for every event of the live feed; public for tests). */
  observeEvent(ev: BootEvent): void;
  /** Stop following the event feed. */
  close(): void;
}

/** Seconds: a provision run is a few scripts, usually well under a minute; timeouts reach minutes. */
export const PROVISION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

const DHCP_RECEIVED = new Set(['discover', 'request', 'decline', 'release', 'inform']);
const DHCP_SENT = new Set(['offer', 'ack', 'nak']);
const DHCP6_RECEIVED = new Set(['solicit', 'request', 'renew', 'rebind', 'release', 'decline', 'confirm', 'inform']);
const DHCP6_SENT = new Set(['advertise', 'reply']);
/** Keep label sets bounded: anything unexpected is counted as "other". */
const HTTP_ROUTES = new Set(['ipxe', 'kernel', 'initrd', 'file', 'provision', 'boot', 'vnfs', 'files', 'loader', 'grub', 'pxelinux']);

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** The HTTP route an error event belongs to, from its path's first segment. */
function routeOfPath(path: unknown): string {
  if (typeof path !== 'string') return 'other';
  const seg = path.split('/').filter(Boolean)[0] ?? '';
  return HTTP_ROUTES.has(seg) ? seg : 'other';
}

/** Why a nodescript failed, as a small fixed set (the event's reason is a sentence). */
export function nodescriptFailureReason(d: Record<string, unknown>): string {
  const reason = typeof d.reason === 'string' ? d.reason : '';
  if (d.timedOut === true || reason === 'timeout' || reason.startsWith('timed out')) return 'timeout';
  if (reason.startsWith('cannot execute')) return 'spawn';
  if (reason.startsWith('output larger')) return 'output';
  if (d.signal || reason.startsWith('killed')) return 'signal';
  return 'exit';
}

/**
 * Pure: datagrams the kernel dropped (receive buffer full) per local UDP port, summed over the
 * sockets of /proc/net/udp text whose local port is in `ports`. The last column is `drops`.
 */
export function udpDropsByPort(procNetUdp: string, ports: readonly number[]): Map<number, number> {
  const out = new Map<number, number>(ports.map((p) => [p, 0]));
  for (const line of procNetUdp.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13) continue;
    const port = parseInt(f[1]!.split(':')[1] ?? '', 16);
    const drops = Number(f[f.length - 1]);
    if (out.has(port) && Number.isFinite(drops)) out.set(port, out.get(port)! + drops);
  }
  return out;
}

export interface MetricsOptions {
  subscribe?: boolean;
  /** Listening UDP ports (DHCP, proxyDHCP, TFTP) whose kernel drops are exported. */
  udpPorts?: { port: number; service: string }[];
  /** Reads /proc/net/udp of the server's network namespace (tests pass their own). */
  readProcNetUdp?: () => string;
  /** The HTTP admission of kernels and initrds (http.streams). */
  httpStreams?: { now(): { active: number; waiting: number } };
  /**
   * The DHCP server's queue: datagrams waiting now, those shed as stale by message type, and the
   * offers/ACKs/NAKs that left (`sent`: then the metric's result="sent" counts those, not the
   * dhcp.offer/ack/nak events, which record decisions a PostgreSQL confirm may still withhold).
   */
  dhcpQueue?: { queued(): number; readonly shed: Record<string, number>; readonly sent?: Record<string, number> };
  /** Several servers on PostgreSQL: whether it is reachable, and what paused while it was not. */
  database?: { up(): boolean; readonly paused: Record<string, number>; readonly races?: Record<string, number> };
  /** prom-client's process and Node.js runtime metrics (CPU, memory, event-loop lag, GC, heap). */
  processMetrics?: boolean;
  /** Labels on every series: { server: ID } where several servers share one database. */
  defaultLabels?: Record<string, string>;
}

/**
 * pxeherd's metrics are derived from the event stream: every protocol already records what
 * it did, so counting events keeps the servers free of metrics code and the numbers equal
 * to what the event log says. Node counts per state are read from the store at scrape time.
 * One exception: DHCP replies sent are what the DHCP server's socket took (dhcpQueue.sent), since
 * an event records the decision and a PostgreSQL confirm can still withhold the reply.
 */
export function createMetrics(source: MetricsSource, opts: MetricsOptions = {}): PxeherdMetrics {
  const r = new Registry({ processMetrics: opts.processMetrics, defaultLabels: opts.defaultLabels });
  // pxeherd_dhcp_messages_total: counted from events, except result="sent" when the DHCP server
  // counts what left (MetricsOptions.dhcpQueue.sent).
  const dhcpSent = opts.dhcpQueue?.sent;
  const dhcpSeen = new Map<string, { labels: Labels; n: number }>();
  const countDhcp = (type: string, result: string) => {
    if (result === 'sent' && dhcpSent) return;
    const key = `${type}\0${result}`;
    const s = dhcpSeen.get(key);
    if (s) s.n++;
    else dhcpSeen.set(key, { labels: { type, result }, n: 1 });
  };
  const c = {
    events: r.counter('pxeherd_events_total', 'Boot events recorded, by protocol (first part of the event kind).', ['protocol']),
    dhcp: r.counter('pxeherd_dhcp_messages_total', 'DHCP messages by type and result (received, sent, proxy, ignored).', ['type', 'result'], (set) => {
      for (const { labels, n } of dhcpSeen.values()) set(labels, n);
      if (dhcpSent) for (const [type, n] of Object.entries(dhcpSent)) set({ type, result: 'sent' }, n);
    }),
    dhcp6: r.counter('pxeherd_dhcp6_messages_total', 'DHCPv6 messages by type and result (received, sent, ignored).', ['type', 'result']),
    tftpTransfers: r.counter('pxeherd_tftp_transfers_total', 'TFTP transfers by result (ok, error, refused, probe = UEFI tsize probe).', ['result']),
    tftpBytes: r.counter('pxeherd_tftp_bytes_sent_total', 'Bytes sent by TFTP (finished and failed transfers).'),
    tftpErrors: r.counter('pxeherd_tftp_errors_total', 'TFTP transfers that failed or were refused (UEFI tsize probes excluded).'),
    http: r.counter('pxeherd_http_requests_total', 'HTTP boot requests by route and status.', ['route', 'status']),
    httpBytes: r.counter('pxeherd_http_bytes_sent_total', 'Bytes sent by HTTP boot routes.', ['route']),
    provision: r.counter('pxeherd_provision_total', 'Provision runs (nodescript streams) by result.', ['result']),
    provisionSeconds: r.histogram('pxeherd_provision_duration_seconds', 'Time to assemble and stream the nodescripts of one provision request.', ['result'], PROVISION_BUCKETS),
    nsFailures: r.counter('pxeherd_nodescript_failures_total', 'Nodescripts that failed, by reason (exit, timeout, signal, spawn, output).', ['reason']),
    nsTimeouts: r.counter('pxeherd_nodescript_timeouts_total', 'Nodescripts killed by their timeout.'),
    registered: r.counter('pxeherd_nodes_registered_total', 'Nodes registered automatically on first contact.'),
    denied: r.counter('pxeherd_security_denied_total', 'Provision requests refused by the node token check.'),
  } satisfies Record<string, Counter | Histogram>;
  // Both node gauges read one snapshot per scrape: loading every node is the costly part.
  let snapshot: Node[] | undefined;
  const nodesNow = () => (snapshot ??= source.nodes.all());
  r.gauge('pxeherd_nodes', 'Nodes in the database by last reported state ("none" before the first request).', ['state'], (g) => {
    for (const n of nodesNow()) g.inc({ state: n.state || 'none' });
  });
  r.gauge('pxeherd_nodes_disabled', 'Nodes that are disabled (refused provisioning).', [], (g) => {
    g.set(undefined, nodesNow().filter((n) => !n.enabled).length);
  });
  const streams = opts.httpStreams;
  if (streams) {
    r.gauge('pxeherd_http_streams', 'Kernel/initrd downloads streaming now (active) and waiting for one of the http.streams places (waiting).', ['state'], (g) => {
      const n = streams.now();
      g.set({ state: 'active' }, n.active);
      g.set({ state: 'waiting' }, n.waiting);
    });
  }
  const dq = opts.dhcpQueue;
  if (dq) {
    r.gauge('pxeherd_dhcp_queue_length', 'DHCP datagrams read from the socket and waiting for their turn.', [], (g) => g.set(undefined, dq.queued()));
    r.counter(
      'pxeherd_dhcp_shed_total',
      'DHCP datagrams dropped unanswered because they waited longer than dhcp.queue_max_age_ms (their clients had given up or will retransmit), by message type.',
      ['type'],
      (set) => {
        for (const [type, n] of Object.entries(dq.shed)) set({ type }, n);
      },
    );
  }
  const db = opts.database;
  if (db) {
    r.gauge('pxeherd_database_up', 'Whether the shared PostgreSQL database was reachable at its last use (1) or not (0).', [], (g) => g.set(undefined, db.up() ? 1 : 0));
    r.counter(
      'pxeherd_database_paused_total',
      'DHCP answers not given because the database was unreachable (new registrations, new dynamic leases); known nodes are answered from the local replica.',
      ['what'],
      (set) => {
        for (const [what, n] of Object.entries(db.paused)) set({ what }, n);
      },
    );
    r.counter(
      'pxeherd_database_races_total',
      'DHCP claims another server won in the database: offer/allocate (that reply is not sent, the client retries), name (the reply carries the name the database gave).',
      ['what'],
      (set) => {
        for (const [what, n] of Object.entries(db.races ?? {})) set({ what }, n);
      },
    );
  }
  const udp = (opts.udpPorts ?? []).filter((u) => u.port > 0);
  if (udp.length) {
    const read = opts.readProcNetUdp ?? (() => fs.readFileSync('/proc/self/net/udp', 'utf8'));
    r.gauge(
      'pxeherd_udp_receive_drops',
      'Datagrams the kernel dropped at a listening UDP socket because its receive buffer was full (each costs a client a retransmission), since the socket opened.',
      ['service', 'port'],
      (g) => {
        let text: string;
        try {
          text = read();
        } catch {
          return; // not Linux, or /proc hidden: no samples rather than wrong ones
        }
        const drops = udpDropsByPort(text, udp.map((u) => u.port));
        for (const u of udp) g.set({ service: u.service, port: String(u.port) }, drops.get(u.port) ?? 0);
      },
    );
  }

  function observeEvent(ev: BootEvent): void {
    const d = (ev.detail ?? {}) as Record<string, unknown>;
    const dot = ev.kind.indexOf('.');
    const protocol = dot > 0 ? ev.kind.slice(0, dot) : ev.kind;
    const what = dot > 0 ? ev.kind.slice(dot + 1) : '';
    c.events.inc({ protocol: /^[a-z][a-z0-9]{0,15}$/.test(protocol) ? protocol : 'other' });
    switch (protocol) {
      case 'dhcp':
        if (DHCP_RECEIVED.has(what)) countDhcp(what, 'received');
        else if (DHCP_SENT.has(what)) countDhcp(what, 'sent');
        else if (what === 'proxy') countDhcp(typeof d.reply === 'string' ? d.reply.toLowerCase() : 'offer', 'proxy');
        else if (what === 'ignored') countDhcp('any', 'ignored');
        break;
      case 'dhcp6':
        if (DHCP6_RECEIVED.has(what)) c.dhcp6.inc({ type: what, result: 'received' });
        else if (DHCP6_SENT.has(what)) c.dhcp6.inc({ type: what, result: 'sent' });
        else if (what === 'ignored') c.dhcp6.inc({ type: 'any', result: 'ignored' });
        break;
      case 'tftp': {
        const bytes = num(d.bytes);
        if (what === 'done') {
          c.tftpTransfers.inc({ result: 'ok' });
          if (bytes) c.tftpBytes.inc(undefined, bytes);
        } else if (what === 'error') {
          const result = d.probe === true ? 'probe' : d.refused === true ? 'refused' : 'error';
          c.tftpTransfers.inc({ result });
          if (result !== 'probe') c.tftpErrors.inc();
          if (bytes) c.tftpBytes.inc(undefined, bytes);
        }
        break;
      }
      case 'http': {
        const route = what === 'error' ? routeOfPath(d.path) : HTTP_ROUTES.has(what) ? what : 'other';
        const status = num(d.status) ?? (what === 'error' ? 500 : 200);
        c.http.inc({ route, status: String(status) });
        const bytes = num(d.bytes);
        if (bytes) c.httpBytes.inc({ route }, bytes);
        break;
      }
      case 'provision':
        if (what === 'end') {
          const result = d.ok === true ? 'ok' : 'fail';
          c.provision.inc({ result });
          // Engines report durationMs; `ms` is accepted too so any producer can feed the histogram.
          const ms = num(d.durationMs) ?? num(d.ms);
          if (ms !== undefined) c.provisionSeconds.observe({ result }, ms / 1000);
        }
        break;
      case 'nodescript':
        if (what === 'fail') {
          const reason = nodescriptFailureReason(d);
          c.nsFailures.inc({ reason });
          if (reason === 'timeout') c.nsTimeouts.inc();
        }
        break;
      case 'node':
        if (what === 'register') c.registered.inc();
        break;
      case 'security':
        if (what === 'denied') c.denied.inc();
        break;
    }
  }

  const unsubscribe = opts.subscribe === false ? () => undefined : source.events.subscribe(observeEvent);
  return {
    registry: r,
    render: async () => {
      try {
        return await r.render();
      } finally {
        snapshot = undefined;
      }
    },
    observeEvent,
    close: () => {
      unsubscribe();
    },
  };
}
