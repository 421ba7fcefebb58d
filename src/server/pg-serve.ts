/**
 * `pxeherd serve` on PostgreSQL (issue 19): any number of servers on one database.
 *
 * Every protocol server reads the synchronous SQLite `Store` as on a single server; here that
 * store is a local replica under the state directory (src/store/pg/replica.ts), loaded from
 * PostgreSQL at start and following its change log. PostgreSQL is the only coordinator:
 * - DHCP: a slice of queued datagrams is decided and written against the replica as today, then
 *   its claims go to PostgreSQL (PostgresBackend: registration insert-or-read, offer/allocate
 *   with decideClaim, release, decline) before any of its replies leave. A claim that lost a
 *   race (another server registered the MAC under another name, offered the client another
 *   address, or holds the address) drops that client's replies and re-reads its rows into the
 *   replica and the handler's lease memory: the client retries and gets the database's answer.
 * - Events are shipped to PostgreSQL in batches with this server's id (the local copy stays for
 *   this server's metrics and install decisions). Registrations record node.register in
 *   PostgreSQL themselves, once. The admin API, UI, streams and timelines read every server's
 *   events, mirrored back from PostgreSQL by id (src/store/pg/event-feed.ts' PgEventMirror).
 * - DHCP answer policy with several servers on one segment (all / standby, option 54,
 *   rebinding): src/dhcp/policy.ts; a REQUEST naming another server releases this server's own
 *   offer row (releaseOfferTakenElsewhere).
 * - PostgreSQL unreachable: known nodes keep being answered from the replica (their own bound
 *   lease or fixed address); new registrations and new dynamic leases pause, with one log line
 *   per outage and the metrics pxeherd_database_up / pxeherd_database_paused_total; the replica
 *   reconnects with backoff and reloads.
 * - Every other write goes to PostgreSQL through the replica (src/store/pg/writer.ts): the same
 *   code as on a single server writes the replica; temporary triggers capture its rows, which are
 *   written to PostgreSQL (changed columns only) and come back to every replica by the change log.
 *   Admin API and UI requests (app.ts) catch up with the change log first and answer once their
 *   rows are committed (409 on a conflicting change, 503 when the database is unreachable, the
 *   replica undone either way). What nodes report (provisiond contact/state, inventory, health,
 *   installs) is written per event-loop turn, held while the database is unreachable. A boot
 *   once -> local is a conditional UPDATE: only the server that won records boot.once_done.
 *   The DHCP path's own replica writes are not captured (confirm() coordinates them).
 * DHCPv6: the same rules, in src/server/pg-dhcp6.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { Store } from '../store/store.js';
import { openDatabase } from '../store/db.js';
import { PostgresBackend } from '../store/pg/backend.js';
import { claimSlice, claimSliceFinishingBusy, touchAddresses, type SliceClaim } from '../store/pg/claims.js';
import { nameError } from '../nodes/names.js';
import { PgReplica } from '../store/pg/replica.js';
import { PgEventMirror } from '../store/pg/event-feed.js';
import { ServerMembership } from '../store/pg/membership.js';
import { WriteThrough } from '../store/pg/writer.js';
import { PG_SCHEMA_VERSION, pgSchemaVersion } from '../store/pg/schema.js';
import { redactUrl } from '../store/pg/url.js';
import { onPoolHost, onPoolRenewed } from '../store/pg/connect.js';
import type { BootEvent, Lease, Node } from '../nodes/types.js';
import type { DhcpBackend } from '../dhcp/backend.js';
import type { Reply } from '../dhcp/handler.js';
import { enc, MessageType, messageType, Opt } from '../dhcp/options.js';
import type { Logger } from '../util/log.js';
import { namingPolicy } from './backends.js';

/** How long an offer is held in PostgreSQL for the client's REQUEST (the handler's default). */
const OFFER_HOLD_MS = 60_000;
/** Wait before a busy client's claims are tried again (another server's slice holds it for its transaction). */
const BUSY_RETRY_MS = 100;
/** Events kept for PostgreSQL while it is unreachable; older ones are dropped and counted. */
const EVENT_BUFFER_MAX = 50_000;

export class PgServeError extends Error {}

/** The ignored event's reason for a new MAC while PostgreSQL is unreachable (v4 and v6). */
export const REGISTRATION_WAITS = 'new client while the database is unreachable: registrations wait for it (the client retries; known nodes are answered from the local replica)';

/** What a server on PostgreSQL adds to the single-server wiring. */
export interface PgServe {
  /** The local replica: what every protocol server reads. */
  store: Store;
  pg: PostgresBackend;
  replica: PgReplica;
  /** The event sink's extra subscriber: ships events to PostgreSQL. */
  shipEvent(ev: BootEvent): void;
  /** Every server's events, mirrored from PostgreSQL: what the admin API, UI and streams read. */
  events: PgEventMirror;
  /** The DHCP backend over the replica, with claims confirmed in PostgreSQL. */
  dhcp(base: DhcpBackend): DhcpBackend;
  /** Lease records the replica learnt from PostgreSQL go here (the DHCP handler's memory). */
  onLease(fn: (mac: string, lease: Lease | undefined) => void): void;
  /** Rows this server's own code writes into the replica go to PostgreSQL (src/store/pg/writer.ts). */
  writer: WriteThrough;
  /** Before an admin change: the replica catches up with PostgreSQL (not waited for while it is unreachable). */
  catchUp(): Promise<void>;
  /** This server won a boot once -> local flip in PostgreSQL (it alone records the event). */
  onBootFlip(fn: (mac: string, name: string) => void): void;
  /** For /metrics. */
  database: { up(): boolean; readonly paused: Record<string, number>; readonly races: Record<string, number> };
  /** `dhcp.answer: balanced`: the owner of a client bucket among the live servers (src/store/pg/membership.ts). */
  balance?: (bucket: number) => ReturnType<ServerMembership['view']>;
  close(): Promise<void>;
}

export async function openPgServe(config: Config, log: Logger): Promise<PgServe> {
  const url = config.database;
  const serverId = config.server_id;
  const pg = PostgresBackend.connect(url, serverId, { max: 10 });
  // Several hosts (postgres://h1,h2/db): which one the connections go through, and a host failing.
  onPoolHost(pg.sql, (e) =>
    e.kind === 'up'
      ? log.info({ database: redactUrl(url), host: e.host }, `database: connected through host ${e.host}`)
      : log.warn({ database: redactUrl(url), host: e.host }, `database: host ${e.host} failed (${e.reason}): the other hosts are tried first for 30 s`),
  );
  const file = path.join(config.statedir, 'pg-replica.db');
  const hadReplica = fs.existsSync(file);
  let reachable = true;
  try {
    const v = await pgSchemaVersion(pg.sql);
    if (v !== PG_SCHEMA_VERSION) {
      await pg.close();
      throw new PgServeError(
        v < PG_SCHEMA_VERSION
          ? `database ${redactUrl(url)} has schema version ${v}, this pxeherd ${PG_SCHEMA_VERSION}: run \`pxeherd db migrate\` first`
          : `database ${redactUrl(url)} has schema version ${v}, newer than this pxeherd understands (${PG_SCHEMA_VERSION}): upgrade pxeherd on this server`,
      );
    }
  } catch (e) {
    if (e instanceof PgServeError) throw e;
    if (!hadReplica) {
      await pg.close().catch(() => undefined);
      throw new PgServeError(`cannot reach the database ${redactUrl(url)} (${(e as Error).message}) and there is no local replica (${file}) to serve from yet`);
    }
    reachable = false;
    log.warn({ database: redactUrl(url) }, `database ${redactUrl(url)} unreachable at start (${(e as Error).message}): serving known nodes from the local replica ${file}`);
  }

  const store = new Store(openDatabase(file), { serverId });
  const leaseListeners: ((mac: string, lease: Lease | undefined) => void)[] = [];
  const paused: Record<string, number> = {};
  const races: Record<string, number> = {};
  let up = reachable;
  const flipListeners: ((mac: string, name: string) => void)[] = [];
  // eslint-disable-next-line prefer-const
  let replica: PgReplica;
  const heldTouches = new HeldAddressTouches(pg.sql);
  const writer = new WriteThrough(store.db, pg, {
    refresh: (keys) => replica.refresh(keys),
    invalidate: () => replica.invalidate(),
    onBootFlip: (mac, name) => flipListeners.forEach((fn) => fn(mac, name)),
    warn: (m) => log.warn({ database: redactUrl(url) }, m),
    isConnectionError,
    isUp: () => up && replica.connected,
  });
  replica = new PgReplica(store.db, pg.sql, {
    applying: (fn) => writer.suspended(fn),
    onLease: (mac, l) => leaseListeners.forEach((fn) => fn(mac, l)),
    onDown: (e) => {
      up = false;
      log.warn({ database: redactUrl(url) }, `database unreachable (${e.message}): known nodes are served from the local replica; new registrations and new dynamic leases pause until it is back (reconnecting with backoff)`);
    },
    onUp: () => {
      up = true;
      void writer.flush(); // node reports held during the outage
      void heldTouches.flush(); // addresses of ACKs just before it
      log.info({ database: redactUrl(url) }, 'database reachable again: replica reloaded, registrations and dynamic leases resume');
    },
  });
  if (reachable) {
    const counts = await replica.load();
    log.info({ database: redactUrl(url), replica: file, ...counts }, `database ${redactUrl(url)}: replica loaded (${counts.nodes} nodes, ${counts.leases} leases)`);
  }
  await replica.start();

  // A boot once -> local this server's boot lost to another server's (the other records it).
  Object.defineProperty(races, 'boot_once', { enumerable: true, get: () => writer.counts.flipsLost });
  const shipper = new EventShipper(pg, (m) => log.warn(m));
  // A wedged postgres.js pool is replaced (src/store/pg/connect.ts): one line each time.
  onPoolRenewed(pg.sql, (why) => log.warn({ database: redactUrl(url) }, `database: connection pool replaced (${why})`));
  const policy = namingPolicy(config);
  // The live feed across servers: read by id after every NOTIFY, reconnect and poll (catch-up
  // after an outage; the replica's own log line reports the outage itself).
  const events = new PgEventMirror(store.db, pg, { onError: (e) => log.debug({ err: e.message }, 'events: the feed cannot read the database, it catches up when it is back') });
  // Not awaited: a server joining a database with a long history serves while it catches up.
  void startEventMirror(events, log, reachable);
  // `dhcp.answer: balanced` anywhere: heartbeats in PostgreSQL say which servers share the clients.
  const balanced = config.dhcp.answer === 'balanced' || config.dhcp.subnets.some((s) => s.answer === 'balanced') || config.dhcp6.answer === 'balanced';
  const membership = balanced ? new ServerMembership(pg.sql, serverId, { onChange: (live) => log.info({ live }, `dhcp: balanced among ${live.length} live server(s): ${live.join(', ')}`) }) : undefined;
  void membership?.start();

  return {
    store,
    pg,
    replica,
    shipEvent: (ev) => shipper.push(ev),
    events,
    onLease: (fn) => leaseListeners.push(fn),
    writer,
    onBootFlip: (fn) => flipListeners.push(fn),
    async catchUp() {
      if (up && replica.connected) await replica.kick();
    },
    database: { up: () => up && replica.connected, paused, races },
    balance: membership && ((bucket) => membership.view(bucket)),
    dhcp: (base) =>
      confirmedDhcpBackend(base, store, pg, replica, policy, { isUp: () => up && replica.connected, paused, races, log, writer, noteLease: (mac, l) => leaseListeners.forEach((fn) => fn(mac, l)), heldTouches }),
    async close() {
      await membership?.stop();
      await events.stop();
      await writer.close();
      await replica.stop();
      await shipper.stop();
      await pg.close().catch(() => undefined);
    },
  };
}

/** Starts the event mirror, or retries every 2 s while the database is away. */
async function startEventMirror(events: PgEventMirror, log: Logger, reachable: boolean): Promise<void> {
  for (let first = true; ; first = false) {
    if (!first || !reachable) await new Promise((r) => setTimeout(r, 2000).unref());
    try {
      await events.start();
      if (!first || !reachable) log.info('events: the live feed across servers follows the database');
      return;
    } catch (e) {
      if (first) log.debug({ err: (e as Error).message }, 'events: the live feed across servers waits for the database');
    }
  }
}

/**
 * A client's SELECTING REQUEST named another server (option 54) and `ip`: the offer row this
 * server wrote for it is released, so the address is free at once rather than when the offer
 * expires. Not when it is the address being taken (servers on one database offer a client the
 * same address: it is about to be bound), nor once another server has written the row, nor a
 * bound lease. True when an offer was released.
 */
export async function releaseOfferTakenElsewhere(pg: PostgresBackend, mac: string, ip: string | undefined, now = Date.now()): Promise<boolean> {
  const r = await pg.sql`UPDATE leases SET state = 'released', expires_at = ${now}, updated_at = ${now}
    WHERE mac = ${mac} AND state = 'offered' AND server_id = ${pg.serverId} AND ip <> ${ip ?? ''}`;
  return r.count === 1;
}

/** Errors that say the database could not be reached (as opposed to a refused statement). */
export function isConnectionError(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? '';
  // A SQLSTATE only on PostgreSQL's own errors: EPIPE is five capitals too, and a node report
  // refused with it was dropped (a PostgreSQL restart) instead of held.
  if ((e as Error | undefined)?.name === 'PostgresError' && /^[0-9A-Z]{5}$/.test(code)) return code.startsWith('08') || code.startsWith('57');
  return true; // ECONNREFUSED, ENOENT (socket), EPIPE, CONNECTION_CLOSED, CONNECT_TIMEOUT...
}

class DatabaseDown extends Error {}

/**
 * Longest a claim waits for the database. A client retransmits after 2-4 s; a claim that takes
 * longer is treated as the database being unreachable (a connection attempt to a host that
 * dropped off the network can hang far longer). A claim that still commits afterwards is
 * consistent: the reply went out only under the offline rule (the node's own address).
 * 3 s, not 1.5 s: in a 1000-node two-server storm on a loaded machine one slice in 20 took
 * 1.5-4 s to confirm (slices grow while others are confirmed, src/dhcp/server.ts); each was
 * counted as an outage and all its clients refused, though a PXE ROM's later tries wait 4-16 s.
 */
const CLAIM_TIMEOUT_MS = 3000;

export function inTime<T>(p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DatabaseDown(`no answer from the database in ${CLAIM_TIMEOUT_MS} ms`)), CLAIM_TIMEOUT_MS);
  });
  p.catch(() => undefined); // a late failure after the timeout has nobody to report to
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function macOf(chaddr: Buffer): string {
  return [...chaddr.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

interface Claim {
  kind: 'offer' | 'allocate' | 'release' | 'decline';
  ip: string;
  expiresAt: number;
  hostname?: string;
  subnet?: string;
}

/**
 * The DHCP backend of a server on PostgreSQL: the single-server one over the replica, plus
 * `confirm`, which makes the slice's claims in PostgreSQL and returns the replies that may go.
 */
export function confirmedDhcpBackend(
  base: DhcpBackend,
  store: Store,
  pg: PostgresBackend,
  replica: PgReplica,
  policy: ReturnType<typeof namingPolicy>,
  o: {
    isUp(): boolean;
    paused: Record<string, number>;
    races: Record<string, number>;
    log: Logger;
    writer?: WriteThrough;
    /** The handler's lease memory (a refused client's lease restored). */
    noteLease?: (mac: string, lease: Lease | undefined) => void;
    /** Address touches the database missed (it went away right after the ACK). */
    heldTouches?: HeldAddressTouches;
  },
): DhcpBackend {
  // The DHCP path coordinates its own rows (registration, leases, address) in confirm(): its
  // replica writes are not written through a second time.
  const quiet = <T>(fn: () => T): T => (o.writer ? o.writer.suspended(fn) : fn());
  /** This slice's registrations (MAC -> the node as the replica named it). */
  let registered = new Map<string, Node>();
  /**
   * Each client's lease and node address as the replica had them before this slice (offline:
   * only those are renewed). The address too because the slice's own ACKs write node.ip into the
   * replica (the single server's touchAddress) before the claims are confirmed, so the address
   * read afterwards would make any ACK look like the node's fixed one.
   */
  let prior = new Map<string, { lease: Lease | undefined; ip: string | undefined; known: boolean }>();
  const pause = (what: string) => {
    o.paused[what] = (o.paused[what] ?? 0) + 1;
  };
  const race = (what: string, n = 1) => {
    o.races[what] = (o.races[what] ?? 0) + n;
  };
  /**
   * Clients a slice left out because another server's slice held them, whose step only this
   * server finishes (REQUEST naming it, RELEASE, DECLINE): their claims again, a little later,
   * in transactions of their own (claimSliceFinishingBusy); the ACKs that then go in are sent.
   * Before, a RELEASE or DECLINE left out was lost (the lease waited for its expiry).
   */
  const finishLater = async (cs: SliceClaim[], replies: Reply[], now: number, sendLater?: (replies: Reply[]) => void) => {
    try {
      await new Promise((r) => setTimeout(r, BUSY_RETRY_MS));
      const res = await inTime(claimSliceFinishingBusy(pg.sql, pg.serverId, policy, [], cs, now, { attempts: 3, waitMs: BUSY_RETRY_MS }));
      const lostMacs = new Set(res.busy);
      cs.forEach((c, i) => {
        const r = res.outcomes[i];
        if (r && !(r.ok && r.lease.ip === c.ip)) lostMacs.add(c.mac);
      });
      const done = new Set(cs.map((c) => c.mac).filter((m) => !lostMacs.has(m)));
      race('busy_finished', done.size);
      if (lostMacs.size) race('busy_dropped', lostMacs.size);
      const send = replies.filter((r) => r.via === 'dhcp' && done.has(macOf(r.packet.chaddr)));
      if (sendLater && send.length) sendLater(send);
      const bound = send.flatMap((r) => (r.bound ? [{ mac: r.bound.mac, ip: r.bound.ip, now }] : []));
      await touchAddresses(pg.sql, bound).catch(() => bound.forEach((b) => o.heldTouches?.hold(b, now)));
    } catch {
      race('busy_dropped', new Set(cs.map((c) => c.mac)).size); // the client retransmits (a RELEASE: the lease expires)
    }
  };
  return {
    ...base,
    otherServerChosen(mac, ip) {
      base.otherServerChosen?.(mac, ip);
      if (!o.isUp()) return; // its offer expires by itself (OFFER_HOLD_MS)
      releaseOfferTakenElsewhere(pg, mac, ip).catch(() => undefined);
    },
    lookupNode(mac, hint) {
      let had = prior.get(mac);
      if (!had) {
        // Only the name and address (not the node with its attributes): per client per slice.
        const n = store.nodes.nameAndIpByMac(mac);
        prior.set(mac, (had = { lease: store.leases.byMac(mac), ip: n?.ip, known: !!n }));
      }
      if (!o.isUp() && !had.known && !registered.has(mac)) {
        pause('registration');
        return undefined; // a new MAC waits for the database (its client retries)
      }
      const r = quiet(() => base.lookupNode(mac, hint));
      if (r?.registered) registered.set(mac, r.node);
      return r;
    },
    unknownReason: (mac) => (o.isUp() || prior.get(mac)?.known ? undefined : REGISTRATION_WAITS),
    batch: base.batch ? (work) => quiet(() => base.batch!(work)) : undefined,
    bound: (mac, ip) => quiet(() => base.bound(mac, ip)),
    async confirm(replies: Reply[], leases: Lease[], sendLater?: (replies: Reply[]) => void): Promise<Reply[]> {
      const reg = registered;
      const before = prior;
      registered = new Map();
      prior = new Map();
      const now = Date.now();
      const claims = new Map<string, Claim[]>();
      const add = (mac: string, c: Claim) => (claims.get(mac) ?? claims.set(mac, []).get(mac)!).push(c);
      for (const r of replies) {
        if (r.via !== 'dhcp') continue;
        const t = messageType(r.packet.options);
        const mac = macOf(r.packet.chaddr);
        const ip = r.packet.yiaddr;
        if (ip === '0.0.0.0') continue; // proxyDHCP, INFORM: no address handed out
        if (t === MessageType.Offer) add(mac, { kind: 'offer', ip, expiresAt: now + OFFER_HOLD_MS });
        else if (t === MessageType.Ack) {
          const l = leases.find((x) => x.mac === mac && x.state === 'bound');
          if (l) add(mac, { kind: 'allocate', ip, expiresAt: l.expiresAt, hostname: l.hostname, subnet: l.subnet });
        }
      }
      for (const l of leases) {
        if (l.state === 'released') add(l.mac, { kind: 'release', ip: l.ip, expiresAt: now });
        else if (l.state === 'declined') add(l.mac, { kind: 'decline', ip: l.ip, expiresAt: now });
      }
      const refused = new Set<string>();
      const renamed = new Map<string, string>();
      /** Registrations PostgreSQL has: the others leave the replica again (below). */
      const confirmed = new Set<string>();
      const nodeKeys = new Set<string>();
      const leaseKeys = new Set<string>();
      let offline: Error | undefined;
      // Known to be down (the replica's last round failed): no waiting on connection attempts;
      // the replica's reconnects (with backoff) say when it is back.
      const down = !o.isUp();
      /** One MAC's registration and claims, one transaction each (the path before slices were batched). */
      const oneByOne = async (mac: string, o: { claims: boolean } = { claims: true }) => {
        const cs = o.claims ? (claims.get(mac) ?? []) : [];
        try {
          if (down) throw new DatabaseDown('the database is unreachable');
          const local = reg.get(mac);
          if (local) {
            const r = await inTime(pg.registerNode(mac, policy, { preferredName: local.name }));
            confirmed.add(mac);
            // Another server named it (or took this name) first: the database's name wins; the
            // reply carries it (option 12) and the replica takes the database's row.
            if (r.node.name !== local.name) {
              renamed.set(mac, r.node.name);
              nodeKeys.add(mac);
              race('name');
            }
          }
          for (const c of cs) {
            if (c.kind === 'offer' || c.kind === 'allocate') {
              const req = { mac, ip: c.ip, expiresAt: c.expiresAt, hostname: c.hostname, subnet: c.subnet, now };
              const res = await inTime(c.kind === 'offer' ? pg.offerLease(req) : pg.allocateLease(req));
              lost(mac, c, res.ok ? { ok: true, ip: res.lease.ip } : { ok: false, holder: res.holder });
            } else if (c.kind === 'release') await inTime(pg.releaseLease(mac, c.ip, now));
            else await inTime(pg.declineLease(mac, c.ip, now));
          }
        } catch (e) {
          failed(mac, claims.get(mac) ?? [], e);
        }
      };
      /** A claim's outcome: one that lost a race drops the client's replies and re-reads its rows. */
      const lost = (mac: string, c: Claim, res: { ok: true; ip: string } | { ok: false; holder: string }) => {
        if (res.ok && res.ip === c.ip) return;
        race(c.kind);
        o.log.debug({ mac, ip: c.ip, got: res.ok ? res.ip : undefined, holder: res.ok ? undefined : res.holder }, `DHCP: ${c.kind} of ${c.ip} to ${mac} lost a race in the database: not sent`);
        refused.add(mac);
        leaseKeys.add(mac);
        if (!res.ok) leaseKeys.add(res.holder);
      };
      const failed = (mac: string, cs: Claim[], e: unknown) => {
        if (!isConnectionError(e)) {
          o.log.warn({ mac }, `DHCP: the database refused the claims of ${mac}, its reply is not sent: ${(e as Error).message}`);
          refused.add(mac);
          nodeKeys.add(mac);
          leaseKeys.add(mac);
          return;
        }
        offline = e as Error;
        // Unreachable: a known node keeps its own bound lease or its fixed address; anything
        // new (a registration, another address) waits for the database.
        const had = before.get(mac)?.lease;
        const fixed = before.get(mac)?.ip;
        const own = (c: Claim) => c.kind === 'release' || c.kind === 'decline' || (!!fixed && fixed === c.ip) || (had?.state === 'bound' && had.ip === c.ip);
        if (reg.has(mac) || !cs.every(own)) {
          refused.add(mac);
          pause(reg.has(mac) ? 'registration' : 'lease');
        }
      };
      /**
       * Registrations the slice did not get in (known meanwhile, or their name taken by another
       * server): one transaction per round for all of them (PostgresBackend.registerNodes).
       */
      const registerRest = async (rest: string[]) => {
        if (!rest.length) return;
        try {
          const r = await inTime(pg.registerNodes(rest.map((mac) => ({ mac, preferredName: reg.get(mac)!.name })), policy));
          for (const [mac, got] of r) {
            confirmed.add(mac);
            // Another server named it (or took this name) first: the database's name wins.
            if (got.node.name !== reg.get(mac)!.name) {
              renamed.set(mac, got.node.name);
              nodeKeys.add(mac);
              race('name');
            }
          }
        } catch (e) {
          for (const mac of rest) failed(mac, claims.get(mac) ?? [], e);
        }
      };
      const macs = [...new Set([...reg.keys(), ...claims.keys()])];
      const late = new Set<string>();
      const flat: SliceClaim[] = [];
      for (const [mac, cs] of claims) for (const c of cs) flat.push({ mac, ...c });
      if (down || macs.length === 0) await Promise.all(macs.map((mac) => oneByOne(mac)));
      else {
        // The whole slice in one transaction (src/store/pg/claims.ts): one commit instead of one
        // per claim. Registrations that did not go in (known, or taken meanwhile) are resolved one
        // by one; a slice the database refuses falls back to one claim at a time.
        const batchRegs = [...reg].filter(([, n]) => !nameError('node', n.name)).map(([mac, n]) => ({ mac, name: n.name }));
        try {
          const res = await inTime(claimSlice(pg.sql, pg.serverId, policy, batchRegs, flat, now));
          o.races.slice_retry = (o.races.slice_retry ?? 0) + res.retries;
          // Busy clients only this server can finish (a REQUEST naming it, a RELEASE, a DECLINE):
          // retried after this slice's replies are out, not in the way of them (finishLater).
          for (const mac of res.busy) if (!reg.has(mac) && (claims.get(mac) ?? []).some((c) => c.kind !== 'offer')) late.add(mac);
          for (const mac of res.registered.keys()) confirmed.add(mac);
          // Another server is writing these clients' rows right now: it answers them; this one
          // re-reads their rows (its own registration of them, unconfirmed, leaves the replica below).
          for (const mac of res.busy) {
            refused.add(mac);
            nodeKeys.add(mac);
            leaseKeys.add(mac);
          }
          if (res.busy.size) o.races.busy = (o.races.busy ?? 0) + res.busy.size;
          const rest = [...reg.keys()].filter((m) => !res.registered.has(m) && !res.busy.has(m));
          flat.forEach((c, i) => {
            const r = res.outcomes[i];
            if (r) lost(c.mac, c, r.ok ? { ok: true, ip: r.lease.ip } : r);
          });
          await registerRest(rest);
        } catch (e) {
          if (isConnectionError(e)) for (const mac of macs) failed(mac, claims.get(mac) ?? [], e);
          else {
            race('slice');
            o.log.debug({ err: (e as Error).message }, 'DHCP: the slice transaction failed: its claims are made one at a time');
            await Promise.all(macs.map((mac) => oneByOne(mac)));
          }
        }
      }
      if (offline) void replica.kick(); // notices the outage (one log line) and starts reconnecting
      // A refused client's lease goes back to what it was before this slice, in the replica and in
      // the handler's memory: the slice already wrote it there (an ACK's 'bound'), and left in
      // place it would pass, on the client's next retransmission while the database is away, for
      // a lease the database has ("its own bound lease"): an ACK the database never recorded, an
      // address another server could then hand out again. (When reachable, the refresh below
      // then brings the database's row.)
      // And the node's address the refused ACK wrote into the replica.
      for (const mac of refused) {
        const was = before.get(mac);
        if (!was) continue; // never looked up in this slice: its lease and address were not touched
        const cur = store.leases.byMac(mac);
        if (JSON.stringify(cur) !== JSON.stringify(was.lease)) {
          // quiet: the DHCP path's own rows are coordinated here, not written through.
          quiet(() => (was.lease ? store.leases.putMany([was.lease]) : store.db.prepare('DELETE FROM leases WHERE mac = ?').run(mac)));
          o.noteLease?.(mac, was.lease);
        }
        const ip = was.ip ?? '';
        try {
          quiet(() => store.db.prepare('UPDATE nodes SET ip = ? WHERE mac = ? AND ip <> ?').run(ip, mac, ip));
        } catch {
          nodeKeys.add(mac); // its old address is another node's meanwhile: the refresh brings the database's row
        }
      }
      // A registration the database did not confirm must not stay in the replica: that MAC would
      // look known on its next DISCOVER and never be registered in PostgreSQL. Its row is re-read
      // from PostgreSQL (another server may have it), or comes back with the next reload.
      for (const mac of reg.keys()) {
        if (confirmed.has(mac)) continue;
        quiet(() => store.db.prepare('DELETE FROM nodes WHERE mac = ?').run(mac));
        nodeKeys.add(mac);
      }
      if (nodeKeys.size || leaseKeys.size) {
        await inTime(replica
          .refresh(
            new Map([
              ['nodes', nodeKeys],
              ['node_attrs', nodeKeys],
              ['leases', leaseKeys],
            ]),
          ))
          .catch(() => undefined); // unreachable now: the next poll reloads
      }
      o.log.debug({ ms: Date.now() - now, replies: replies.length, registrations: reg.size, refused: refused.size }, 'DHCP: slice confirmed in the database');
      const ok = refused.size ? replies.filter((r) => !refused.has(macOf(r.packet.chaddr))) : replies;
      if (renamed.size) {
        for (const r of ok) {
          const name = renamed.get(macOf(r.packet.chaddr));
          if (name && r.packet.options.has(Opt.Hostname)) r.packet.options.set(Opt.Hostname, enc.str(name));
        }
      }
      if (!offline) {
        // The node's address and last contact, as the single server records them after an ACK:
        // one statement for the slice; one per node if that lost a race on an address.
        const bound = ok.flatMap((r) => (r.bound ? [{ mac: r.bound.mac, ip: r.bound.ip, now }] : []));
        touchAddresses(pg.sql, bound).catch(() => {
          for (const b of bound) pg.touchAddress(b.mac, b.ip, now).catch(() => o.heldTouches?.hold(b, now));
        });
      }
      if (late.size) void finishLater(flat.filter((c) => late.has(c.mac)), replies, now, sendLater);
      return ok;
    },
  };
}

/**
 * A node's address after an ACK whose claims PostgreSQL had confirmed, but whose address touch
 * (touchAddresses, fire-and-forget) failed because the database went away right then: without
 * this the address is lost (the replica reloads the node from PostgreSQL when it is back, and the
 * node keeps its lease but not its address). Held per MAC (the latest), written when the replica
 * is back; only while the node's bound lease in PostgreSQL is still that address.
 */
export class HeldAddressTouches {
  private readonly held = new Map<string, { ip: string; now: number }>();
  private flushing?: Promise<void>;

  constructor(private readonly sql: PostgresBackend['sql']) {}

  get size(): number {
    return this.held.size;
  }

  hold(b: { mac: string; ip: string }, now: number): void {
    const had = this.held.get(b.mac);
    if (!had || had.now <= now) this.held.set(b.mac, { ip: b.ip, now });
  }

  /** Write what is held; what fails again stays held for the next call. */
  flush(): Promise<void> {
    if (this.flushing || this.held.size === 0) return this.flushing ?? Promise.resolve();
    const batch = [...this.held];
    this.held.clear();
    this.flushing = (async () => {
      try {
        await touchAddresses(this.sql, batch.map(([mac, v]) => ({ mac, ip: v.ip, now: v.now })), { whileBound: true });
      } catch {
        for (const [mac, v] of batch) this.hold({ mac, ip: v.ip }, v.now);
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }
}

/**
 * Ships the events this server records to PostgreSQL with its server_id, in batches, in order;
 * held (bounded) while the database is unreachable. node.register from DHCP is left out: the
 * registration in PostgreSQL records it, once, for the server that won.
 */
class EventShipper {
  private buf: BootEvent[] = [];
  private flushing?: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  dropped = 0;
  private failing = false;

  constructor(
    private readonly pg: PostgresBackend,
    private readonly warn: (m: string) => void,
  ) {
    this.timer = setInterval(() => void this.flush(), 200);
    this.timer.unref();
  }

  push(ev: BootEvent): void {
    const via = (ev.detail as Record<string, unknown> | undefined)?.via;
    if (ev.kind === 'node.register' && (via === 'dhcp' || via === 'dhcp6')) return;
    this.buf.push(ev);
    if (this.buf.length > EVENT_BUFFER_MAX) {
      this.dropped += this.buf.length - EVENT_BUFFER_MAX;
      this.buf.splice(0, this.buf.length - EVENT_BUFFER_MAX);
    }
  }

  flush(): Promise<void> {
    if (this.flushing || this.buf.length === 0) return this.flushing ?? Promise.resolve();
    const batch = this.buf.splice(0, 1000);
    this.flushing = this.pg
      .appendEvents(batch)
      .then(
        () => {
          if (this.failing) this.warn(`events: shipping to the database resumed`);
          this.failing = false;
        },
        (e: Error) => {
          this.buf.unshift(...batch);
          if (!this.failing) this.warn(`events: cannot ship ${batch.length} events to the database (${e.message}); they are held and sent when it is back`);
          this.failing = true;
        },
      )
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (let i = 0; i < 20 && this.buf.length > 0; i++) {
      await this.flush();
      if (this.failing) break;
    }
  }
}
