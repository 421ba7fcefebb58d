/**
 * The DHCP decision maker: a decoded request in, replies (and leases to persist) out. No
 * sockets here, so tests feed packets straight in. RFC 2131 for full mode, the PXE
 * specification (2.1, ch. 2) for ProxyDHCP.
 */
import type { Lease, Node } from '../nodes/types.js';
import type { DhcpBackend } from './backend.js';
import { bootLoaderOf } from '../boot/loader.js';
import { clientKind, decideBoot, isPxeVendor, type BootDecision, type BootFiles, type ClientKind } from './boot.js';
import { emptyPacket, type DhcpPacket } from './codec.js';
import { intToIp, ipToInt } from './ip.js';
import { isActive, LeaseTable } from './leases.js';
import {
  decodeSubOptions,
  enc,
  encodeSubOptions,
  getIp,
  getString,
  getU16,
  IpxeSub,
  MESSAGE_NAMES,
  MessageType,
  messageType,
  Opt,
  PxeSub,
} from './options.js';
import { buildPools, poolContains, selectPool, usableInNetwork, type DhcpConfig, type Pool } from './pools.js';
import { answerPolicies, clientBucket, requestStep, silenceReason, type AnswerPolicy, type BalanceView } from './policy.js';

export interface DhcpCounters {
  received: number;
  /** Undecodable datagrams (counted by the server) and decodable ones that make no sense. */
  malformed: number;
  /** Well-formed but not for us (other servers' replies, other server chosen, non-PXE in proxy mode...). */
  ignored: number;
  offers: number;
  acks: number;
  naks: number;
  proxyReplies: number;
  /** Replies that could not be sent, and ACK batches whose leases could not be stored. */
  sendErrors: number;
  storeErrors: number;
}

export function newCounters(): DhcpCounters {
  return { received: 0, malformed: 0, ignored: 0, offers: 0, acks: 0, naks: 0, proxyReplies: 0, sendErrors: 0, storeErrors: 0 };
}

export interface RequestMeta {
  /** Which socket it came in on: the DHCP port (67) or the ProxyDHCP port (4011). */
  via: 'dhcp' | 'proxy';
  /** Source address and port of the datagram. */
  from: { address: string; port: number };
  now?: number;
  /** When given, the handler explains its choices here (used by `pxeherd explain`). */
  trace?: Trace;
}

export interface Trace {
  reasons: string[];
  addressSource?: 'reservation' | 'lease' | 'pool' | 'none';
  boot?: BootDecision;
}

export interface Reply {
  packet: DhcpPacket;
  to: { address: string; port: number };
  via: 'dhcp' | 'proxy';
  /** Largest datagram the client accepts (option 57), for encode(). */
  maxSize: number;
  /** After sending: tell the backend this MAC now holds this address (ACKs). */
  bound?: { mac: string; ip: string };
  /**
   * The dhcp.offer / dhcp.ack / dhcp.nak event its decision recorded: the DHCP server counts the
   * reply as sent of that type once it left (DhcpServer.sent; a reply the shared database's
   * confirm refused, or whose lease could not be stored, never does).
   */
  counted?: 'offer' | 'ack' | 'nak';
}

export interface Outcome {
  replies: Reply[];
  /** Leases that must be durable before any of `replies` is sent. */
  persist: Lease[];
}

export interface HandlerOptions {
  config: DhcpConfig;
  serverAddress: string;
  httpPort: number;
  backend: DhcpBackend;
  counters?: DhcpCounters;
  /** How long an offered address is held for the client's REQUEST. */
  offerHoldSeconds?: number;
  /** How long a DECLINEd address is kept out of the pool (RFC 2131 §4.3.3). */
  declineHoldSeconds?: number;
  /**
   * Several servers share the pools (PostgreSQL): each search for a free address starts at a
   * random point of the pool (as Kea's random allocator), so servers answering the same
   * DISCOVERs seldom pick the same address for different clients, which the database would
   * refuse to one of them (that client then waits for its retransmission).
   */
  sharedPools?: boolean;
  /**
   * `answer: balanced` (src/dhcp/policy.ts): the owner of a client's bucket among the live
   * servers (src/store/pg/membership.ts); undefined, or an undefined answer: every client is
   * this server's (one server alone, or the live set is not known).
   */
  balance?: (bucket: number) => BalanceView | undefined;
}

const BROADCAST = '255.255.255.255';
const NONE: Outcome = Object.freeze({ replies: [], persist: [] }) as Outcome;

export class DhcpHandler {
  readonly counters: DhcpCounters;
  private readonly cfg: DhcpConfig;
  private readonly pools: ReturnType<typeof buildPools>;
  private readonly table: LeaseTable;
  private readonly backend: DhcpBackend;
  private readonly server: string;
  private readonly serverInt: number;
  private readonly httpPort: number;
  private readonly offerHoldMs: number;
  private readonly declineHoldMs: number;
  private readonly declined = new Map<number, number>();
  private readonly ignoredAt = new Map<string, number>();
  private readonly sharedPools: boolean;
  /** Several servers on one segment: who answers (src/dhcp/policy.ts). */
  private readonly answer: Map<Pool, AnswerPolicy>;
  private readonly balance?: (bucket: number) => BalanceView | undefined;

  constructor(opts: HandlerOptions) {
    this.cfg = opts.config;
    this.backend = opts.backend;
    this.server = opts.serverAddress;
    const s = ipToInt(opts.serverAddress);
    if (s === undefined || s === 0) throw new Error(`DHCP: server address "${opts.serverAddress}" is not a usable IPv4 address`);
    this.serverInt = s;
    this.httpPort = opts.httpPort;
    this.counters = opts.counters ?? newCounters();
    this.pools = buildPools(opts.config);
    this.answer = answerPolicies(opts.config, this.pools);
    this.sharedPools = opts.sharedPools ?? false;
    this.balance = opts.balance;
    this.table = new LeaseTable(opts.backend.leases);
    this.offerHoldMs = (opts.offerHoldSeconds ?? 60) * 1000;
    this.declineHoldMs = (opts.declineHoldSeconds ?? 600) * 1000;
  }

  /** Read the active leases from the store; call once before the first packet. */
  load(now = Date.now()): number {
    return this.table.load(now);
  }

  /** A lease record written elsewhere (another server on the shared database); undefined: gone. */
  noteLease(mac: string, lease: Lease | undefined): void {
    this.table.replace(mac, lease);
  }

  handle(req: DhcpPacket, meta: RequestMeta): Outcome {
    const now = meta.now ?? Date.now();
    this.counters.received++;
    if (req.op !== 1) return this.ignore();
    if (req.htype !== 1 || req.hlen !== 6 || req.hops > 16) return this.malformed();
    const type = messageType(req.options);
    if (type === undefined) return this.malformed(); // plain BOOTP is not served
    const mac = macText(req.chaddr);
    if (mac === '00:00:00:00:00:00' || (req.chaddr[0]! & 1) === 1) return this.malformed();
    if (this.cfg.mode === 'proxy' || meta.via === 'proxy') return this.proxy(req, type, mac, meta, now);
    switch (type) {
      case MessageType.Discover:
        return this.discover(req, mac, meta, now);
      case MessageType.Request:
        return this.request(req, mac, meta, now);
      case MessageType.Decline:
        return this.decline(req, mac, now);
      case MessageType.Release:
        return this.release(req, mac, now);
      case MessageType.Inform:
        return this.inform(req, mac, meta, now);
      default:
        return this.ignore(); // OFFER/ACK/NAK from another server
    }
  }

  /** `balanced`: the client's owner, keyed by its client identifier (option 61), else chaddr. */
  private balanceOf(req: DhcpPacket, policy: AnswerPolicy | undefined): BalanceView | undefined {
    if (policy?.mode !== 'balanced' || !this.balance) return undefined;
    const id = req.options.get(Opt.ClientId);
    return this.balance(clientBucket(id && id.length ? id : req.chaddr.subarray(0, 6)));
  }

  // ---- full mode -------------------------------------------------------------------------

  private discover(req: DhcpPacket, mac: string, meta: RequestMeta, now: number): Outcome {
    const hostname = getString(req.options, Opt.Hostname);
    const pool = this.poolFor(req);
    const policy = pool && this.answer.get(pool);
    const quiet = pool && silenceReason(policy, 'discover', req.secs, pool.name, this.balanceOf(req, policy));
    // balanced: another server's client is that server's to record (its dhcp.discover, offer...);
    // this one records only why it stays silent (dhcp.ignored, once a minute per client).
    if (quiet && policy?.mode === 'balanced') return this.ignoredEvent(mac, quiet, meta, now);
    this.event('dhcp.discover', mac, undefined, { xid: req.xid, giaddr: nz(req.giaddr), hostname });
    if (!pool) return this.ignoredEvent(mac, `no subnet configured for ${req.giaddr === '0.0.0.0' ? 'this link' : `relay ${req.giaddr}`}`, meta, now);
    if (quiet) return this.ignoredEvent(mac, quiet, meta, now);
    const found = this.node(mac, hostname, meta, now);
    if (!found) return NONE;
    const { node } = found;
    const pick = this.allocate(mac, node, pool, getIp(req.options, Opt.RequestedIp), now, meta.trace);
    if (!pick) {
      this.event('dhcp.ignored', mac, node, { reason: `pool ${pool.name} is exhausted` });
      return this.ignore();
    }
    const prev = this.table.get(mac);
    const expiresAt = now + this.offerHoldMs;
    // Do not turn a bound lease into a mere offer: the client still holds it.
    if (!(isActive(prev, now) && prev.state === 'bound' && prev.ip === pick.ip)) {
      this.table.set({ mac, ip: pick.ip, expiresAt, hostname: hostname ?? '', state: 'offered', subnet: pool.name, updatedAt: now });
    }
    const kind = clientKind(req.options);
    const boot = this.boot(kind, mac, node, meta.trace);
    const reply = this.fullReply(req, MessageType.Offer, pick.ip, pool, node, kind, boot);
    this.counters.offers++;
    this.event('dhcp.offer', mac, node, { ip: pick.ip, source: pick.source, boot: boot.kind, file: boot.bootFile, subnet: pool.name });
    return { replies: [this.addressed(req, reply, false, 'offer')], persist: [] };
  }

  private request(req: DhcpPacket, mac: string, meta: RequestMeta, now: number): Outcome {
    const sid = getIp(req.options, Opt.ServerId);
    const requested = getIp(req.options, Opt.RequestedIp);
    const hostname = getString(req.options, Opt.Hostname);
    if (this.balance && sid !== undefined && sid !== this.server) {
      // balanced: another server's client taking that server's offer. This one stayed silent to
      // its DISCOVER (same bucket, same secs), so it has no offer to free, and the record of the
      // exchange is that server's. (Had it offered under another view of the live set, its offer
      // row simply expires.)
      const pool = this.poolFor(req);
      const policy = pool && this.answer.get(pool);
      if (pool && policy?.mode === 'balanced' && silenceReason(policy, 'discover', req.secs, pool.name, this.balanceOf(req, policy))) return this.ignore();
    }
    this.event('dhcp.request', mac, undefined, { xid: req.xid, ip: requested ?? nz(req.ciaddr), serverId: sid });
    if (sid !== undefined && sid !== this.server) {
      // SELECTING with another server chosen: our offer is free again (RFC 2131 §4.3.2).
      this.table.dropOffer(mac);
      this.backend.otherServerChosen?.(mac, requested ?? nz(req.ciaddr));
      return this.ignore();
    }
    let ip: string | undefined;
    if (sid !== undefined) ip = requested ?? nz(req.ciaddr); // SELECTING
    else if (requested !== undefined) ip = requested; // INIT-REBOOT
    else ip = nz(req.ciaddr); // RENEWING / REBINDING
    if (!ip || ip === '0.0.0.0') return this.malformed();
    const ipInt = ipToInt(ip)!;
    // Only a RENEWING client (ciaddr, unicast, no relay) may be on another link than the one the
    // request came from; SELECTING and INIT-REBOOT are judged against the arrival link (§4.3.2).
    const renewing = sid === undefined && requested === undefined;
    const pool = this.poolFor(req, renewing ? ipInt : undefined);
    if (!pool) return this.ignoredEvent(mac, `no subnet configured for ${req.giaddr === '0.0.0.0' ? ip : `relay ${req.giaddr}`}`, meta, now);
    const policy = this.answer.get(pool);
    const quiet = silenceReason(policy, requestStep(sid, requested), req.secs, pool.name, this.balanceOf(req, policy));
    if (quiet) return this.ignoredEvent(mac, quiet, meta, now);
    const found = this.node(mac, hostname, meta, now);
    if (!found) return NONE;
    const { node } = found;
    const why = this.refuse(mac, node, pool, ipInt, now);
    if (why) {
      this.counters.naks++;
      this.event('dhcp.nak', mac, node, { ip, reason: why });
      return { replies: [this.addressed(req, this.nak(req, why), true, 'nak')], persist: [] };
    }
    const lease: Lease = {
      mac,
      ip,
      expiresAt: now + pool.leaseSeconds * 1000,
      hostname: hostname ?? this.table.get(mac)?.hostname ?? '',
      state: 'bound',
      subnet: pool.name,
      updatedAt: now,
    };
    this.table.set(lease);
    const kind = clientKind(req.options);
    const boot = this.boot(kind, mac, node, meta.trace);
    const reply = this.fullReply(req, MessageType.Ack, ip, pool, node, kind, boot);
    if (req.ciaddr !== '0.0.0.0') reply.ciaddr = req.ciaddr;
    this.counters.acks++;
    this.event('dhcp.ack', mac, node, { ip, subnet: pool.name, leaseSeconds: pool.leaseSeconds, boot: boot.kind, file: boot.bootFile });
    const r = this.addressed(req, reply, false, 'ack');
    r.bound = { mac, ip };
    return { replies: [r], persist: [lease] };
  }

  private decline(req: DhcpPacket, mac: string, now: number): Outcome {
    const sid = getIp(req.options, Opt.ServerId);
    if (sid !== undefined && sid !== this.server) return this.ignore();
    const ip = getIp(req.options, Opt.RequestedIp);
    const lease = this.table.get(mac);
    if (!ip || !lease || lease.ip !== ip) return this.ignore();
    const n = ipToInt(ip)!;
    // Someone else answers ARP for it: keep it out of the pool for a while.
    this.declined.set(n, now + this.declineHoldMs);
    const l: Lease = { ...lease, state: 'declined', expiresAt: now, updatedAt: now };
    this.table.set(l);
    this.event('dhcp.decline', mac, undefined, { ip, message: getString(req.options, Opt.Message) });
    return { replies: [], persist: [l] };
  }

  private release(req: DhcpPacket, mac: string, now: number): Outcome {
    const sid = getIp(req.options, Opt.ServerId);
    if (sid !== undefined && sid !== this.server) return this.ignore();
    const lease = this.table.get(mac);
    if (!lease || lease.ip !== req.ciaddr || lease.state !== 'bound') return this.ignore();
    // Keep the record (RFC 2131 §3.1 step 8): a returning client gets this address again if free.
    const l: Lease = { ...lease, state: 'released', expiresAt: now, updatedAt: now };
    this.table.set(l);
    this.event('dhcp.release', mac, undefined, { ip: lease.ip });
    return { replies: [], persist: [l] };
  }

  private inform(req: DhcpPacket, mac: string, meta: RequestMeta, now: number): Outcome {
    const ci = ipToInt(req.ciaddr) ?? 0;
    const pool = this.poolFor(req, ci || undefined);
    this.event('dhcp.inform', mac, undefined, { ciaddr: nz(req.ciaddr) });
    if (!pool) return this.ignore();
    const found = this.node(mac, getString(req.options, Opt.Hostname), meta, now);
    if (!found) return NONE;
    const kind = clientKind(req.options);
    const boot = this.boot(kind, mac, found.node, meta.trace);
    // RFC 2131 §3.4: no lease time and no yiaddr in the answer to an INFORM.
    const reply = this.fullReply(req, MessageType.Ack, '0.0.0.0', pool, found.node, kind, boot, false);
    reply.ciaddr = req.ciaddr;
    const to =
      req.giaddr !== '0.0.0.0'
        ? { address: req.giaddr, port: 67 }
        : ci
          ? { address: req.ciaddr, port: 68 }
          : { address: meta.from.address, port: meta.from.port };
    this.counters.acks++;
    return { replies: [{ packet: reply, to, via: 'dhcp', maxSize: maxSize(req) }], persist: [] };
  }

  // ---- ProxyDHCP ------------------------------------------------------------------------

  private proxy(req: DhcpPacket, type: MessageType, mac: string, meta: RequestMeta, now: number): Outcome {
    const kind = clientKind(req.options);
    if (!kind.ipxe && !isPxeVendor(kind.vendorClass)) return this.ignore(); // not a network-boot client
    const bootItem = decodeSubOptions(req.options.get(Opt.VendorSpecific))?.get(PxeSub.BootItem);
    let replyType: MessageType;
    let to: { address: string; port: number };
    if (meta.via === 'proxy') {
      // Port 4011: the client has its address and asks us directly; answer where it asked from.
      if (type !== MessageType.Request && type !== MessageType.Inform) return this.ignore();
      replyType = MessageType.Ack;
      to = { address: nz(req.ciaddr) ?? meta.from.address, port: meta.from.port };
      if (to.address === '0.0.0.0') to = { address: meta.from.address, port: meta.from.port };
    } else if (type === MessageType.Discover) {
      replyType = MessageType.Offer;
      to = req.giaddr !== '0.0.0.0' ? { address: req.giaddr, port: 67 } : { address: BROADCAST, port: 68 };
    } else if (type === MessageType.Request && bootItem) {
      // PXE boot server discovery broadcast to port 67 (PXE spec 2.2.4).
      replyType = MessageType.Ack;
      to = req.giaddr !== '0.0.0.0' ? { address: req.giaddr, port: 67 } : req.ciaddr !== '0.0.0.0' ? { address: req.ciaddr, port: 68 } : { address: BROADCAST, port: 68 };
    } else {
      return this.ignore(); // the site DHCP server's business
    }
    const found = this.node(mac, getString(req.options, Opt.Hostname), meta, now);
    if (!found) return NONE;
    const boot = this.boot(kind, mac, found.node, meta.trace);
    if (!boot.bootFile) {
      this.event('dhcp.ignored', mac, found.node, { reason: boot.reasons.join('; ') });
      return this.ignore();
    }
    const reply = this.replyBase(req, replyType);
    if (meta.via === 'proxy') reply.ciaddr = req.ciaddr;
    reply.siaddr = this.server;
    reply.file = boot.bootFile;
    const o = reply.options;
    o.set(Opt.ServerId, enc.ip(this.server));
    o.set(Opt.VendorClass, enc.str(boot.replyVendorClass ?? 'PXEClient'));
    if (boot.replyVendorClass !== 'HTTPClient') {
      // Discovery control 8: "boot the file named in this offer", no menu, no multicast discovery.
      const subs = new Map<number, Buffer>([[PxeSub.DiscoveryControl, enc.u8(8)]]);
      if (bootItem && bootItem.length === 4) subs.set(PxeSub.BootItem, bootItem);
      o.set(Opt.VendorSpecific, encodeSubOptions(subs, true));
    }
    o.set(Opt.BootFile, enc.str(boot.bootFile));
    this.echo(req, reply);
    this.counters.proxyReplies++;
    this.event('dhcp.proxy', mac, found.node, { port: meta.via === 'proxy' ? this.cfg.proxy_port : this.cfg.port, reply: MESSAGE_NAMES[replyType], boot: boot.kind, file: boot.bootFile });
    if (meta.trace) meta.trace.addressSource = 'none';
    return { replies: [{ packet: reply, to, via: meta.via, maxSize: maxSize(req) }], persist: [] };
  }

  // ---- address choice ---------------------------------------------------------------------

  private poolFor(req: DhcpPacket, clientIp?: number): Pool | undefined {
    if (req.giaddr === '0.0.0.0' && clientIp) {
      // A renewing client unicasts straight to us, without its relay: choose by its address.
      const p = this.pools.all.find((x) => usableInNetwork(x, clientIp));
      if (p) return p;
    }
    return selectPool(this.pools, req.giaddr, this.server);
  }

  /** The reservation if valid for this pool and not held by another client. */
  private reservation(mac: string, node: Node, pool: Pool, now: number, trace?: Trace): number | undefined {
    if (!node.ip) return undefined;
    const r = ipToInt(node.ip);
    if (r === undefined) return undefined;
    if (!usableInNetwork(pool, r)) {
      trace?.reasons.push(`reservation ${node.ip} is outside subnet ${pool.name}: not used here`);
      return undefined;
    }
    if (!this.free(r, mac, now)) {
      trace?.reasons.push(`reservation ${node.ip} is held by another client's lease: not offered`);
      return undefined;
    }
    return r;
  }

  private allocate(mac: string, node: Node, pool: Pool, requested: string | undefined, now: number, trace?: Trace): { ip: string; source: 'reservation' | 'lease' | 'pool' } | undefined {
    const r = this.reservation(mac, node, pool, now, trace);
    const done = (ip: number, source: 'reservation' | 'lease' | 'pool', why: string) => {
      if (trace) {
        trace.addressSource = source;
        trace.reasons.push(why);
      }
      return { ip: intToIp(ip), source };
    };
    if (r !== undefined) return done(r, 'reservation', `fixed address ${node.ip} of node ${node.name}`);
    const prev = this.table.get(mac);
    if (prev && prev.state !== 'declined') {
      const p = ipToInt(prev.ip);
      if (p !== undefined && poolContains(pool, p) && this.free(p, mac, now)) {
        return done(p, 'lease', `${isActive(prev, now) ? 'current' : 'previous'} lease of this client (${prev.state}) in ${pool.name}`);
      }
    }
    const want = requested ? ipToInt(requested) : undefined;
    if (want !== undefined && poolContains(pool, want) && usableInNetwork(pool, want) && this.free(want, mac, now) && !this.otherOwner(want, mac)) {
      return done(want, 'pool', `address ${requested} asked for by the client (option 50) is free in ${pool.name}`);
    }
    if (this.sharedPools) pool.cursor = pool.start + Math.floor(Math.random() * (pool.end - pool.start + 1));
    // Two passes: first never-used or own addresses, so returning clients find theirs; then expired ones.
    for (const strict of [true, false]) {
      const size = pool.end - pool.start + 1;
      let ip = pool.cursor;
      for (let i = 0; i < size; i++, ip = ip >= pool.end ? pool.start : ip + 1) {
        if (!usableInNetwork(pool, ip) || !this.free(ip, mac, now)) continue;
        if (strict && this.otherOwner(ip, mac)) continue;
        pool.cursor = ip >= pool.end ? pool.start : ip + 1;
        return done(ip, 'pool', `next free address in pool ${pool.name}`);
      }
    }
    if (trace) {
      trace.addressSource = 'none';
      trace.reasons.push(`pool ${pool.name} is exhausted`);
    }
    return undefined;
  }

  /** Not held by another active lease, not declined, not someone's reservation, not ours. */
  private free(ip: number, mac: string, now: number): boolean {
    if (ip === this.serverInt) return false;
    const d = this.declined.get(ip);
    if (d !== undefined) {
      if (d > now) return false;
      this.declined.delete(ip);
    }
    const h = this.table.holder(ip, now);
    if (h && h.mac !== mac) return false;
    const owner = this.backend.reservationOwner(intToIp(ip));
    return owner === undefined || owner === mac;
  }

  /** Another client held this address last (lease expired or released but remembered). */
  private otherOwner(ip: number, mac: string): boolean {
    const last = this.table.lastOwner(ip, intToIp(ip));
    return !!last && last.mac !== mac;
  }

  /** Why this client may not have this address (NAK text), or undefined when it may. */
  private refuse(mac: string, node: Node, pool: Pool, ip: number, now: number): string | undefined {
    const text = intToIp(ip);
    if (!usableInNetwork(pool, ip)) return `${text} is not on network ${pool.name}`;
    const r = this.reservation(mac, node, pool, now);
    if (r !== undefined && r !== ip) return `this client's address is ${intToIp(r)}`;
    if (r === undefined && !poolContains(pool, ip)) return `${text} is not in the pool of ${pool.name}`;
    if (!this.free(ip, mac, now)) return `${text} is in use by another client`;
    return undefined;
  }

  // ---- replies ------------------------------------------------------------------------------

  private boot(kind: ClientKind, mac: string, node: Node, trace?: Trace): BootDecision {
    // The node's chain (boot_loader, node beats group) and its CPU as the firmware says it.
    this.backend.noteClientArch?.(mac, kind.arch);
    const chosen = this.backend.attrsFor ? bootLoaderOf(this.backend.attrsFor(node)) : { loader: 'ipxe' as const };
    const d = decideBoot(kind, { mac, serverAddress: this.server, httpPort: this.httpPort, bootFiles: this.cfg.boot_files as BootFiles, loader: chosen.loader });
    if (chosen.error) d.reasons.unshift(chosen.error);
    if (trace) {
      trace.boot = d;
      trace.reasons.push(...d.reasons);
    }
    return d;
  }

  private replyBase(req: DhcpPacket, type: MessageType): DhcpPacket {
    const p = emptyPacket(2);
    p.htype = req.htype;
    p.hlen = req.hlen;
    p.xid = req.xid;
    p.flags = req.flags & 0x8000;
    p.giaddr = req.giaddr;
    p.chaddr = Buffer.from(req.chaddr);
    p.options.set(Opt.MessageType, enc.u8(type));
    return p;
  }

  private fullReply(req: DhcpPacket, type: MessageType, yiaddr: string, pool: Pool, node: Node, kind: ClientKind, boot: BootDecision, withLease = true): DhcpPacket {
    const p = this.replyBase(req, type);
    p.yiaddr = yiaddr;
    p.siaddr = this.server; // next server: where TFTP is
    const o = p.options;
    o.set(Opt.ServerId, enc.ip(this.server));
    if (withLease) {
      o.set(Opt.LeaseTime, enc.u32(pool.leaseSeconds));
      o.set(Opt.RenewalTime, enc.u32(Math.floor(pool.leaseSeconds * 0.5)));
      o.set(Opt.RebindingTime, enc.u32(Math.floor(pool.leaseSeconds * 0.875)));
    }
    o.set(Opt.SubnetMask, enc.ip(pool.netmask));
    o.set(Opt.Broadcast, enc.ip(pool.broadcast));
    if (pool.router) o.set(Opt.Router, enc.ip(pool.router));
    if (pool.dns.length) o.set(Opt.DNS, enc.ips(pool.dns));
    if (pool.domain) o.set(Opt.DomainName, enc.str(pool.domain));
    if (node.name) o.set(Opt.Hostname, enc.str(node.name));
    if (boot.bootFile) {
      p.file = boot.bootFile;
      // In full mode PXE ROMs boot from siaddr+file (as with ISC dhcpd); only UEFI HTTP boot
      // requires the vendor class echoed. iPXE gets 175.176 so it skips the ProxyDHCP wait.
      if (boot.replyVendorClass === 'HTTPClient') o.set(Opt.VendorClass, enc.str('HTTPClient'));
      const prl = req.options.get(Opt.ParamRequestList);
      if (prl?.includes(Opt.TftpServer)) o.set(Opt.TftpServer, enc.str(this.server));
      o.set(Opt.BootFile, enc.str(boot.bootFile));
    }
    if (boot.ipxeNoProxyWait) o.set(Opt.Ipxe, encodeSubOptions(new Map([[IpxeSub.NoPxeDhcp, enc.u8(1)]])));
    if (kind.vendorClass?.startsWith('PXEClient') || kind.vendorClass?.startsWith('HTTPClient')) this.echoGuid(req, p);
    const prl = req.options.get(Opt.ParamRequestList);
    if (prl) {
      // Site options go only to clients that ask for them (RFC 2131 §4.3.1)...
      for (const code of prl) {
        const v = pool.options.get(code);
        if (v && !o.has(code)) o.set(code, v);
      }
      // ...and requested options come in the client's order (RFC 2132 §9.8).
      p.options = orderAsRequested(o, prl);
    }
    this.echo(req, p);
    return p;
  }

  private echoGuid(req: DhcpPacket, p: DhcpPacket): void {
    const guid = req.options.get(Opt.ClientGuid);
    if (guid) p.options.set(Opt.ClientGuid, guid); // PXE spec: the server echoes 97
  }

  /** Relay agent information goes back unchanged, and last (RFC 3046 §2.2). */
  private echo(req: DhcpPacket, p: DhcpPacket): void {
    if (p.options.get(Opt.VendorClass)?.toString() === 'PXEClient') this.echoGuid(req, p);
    const ra = req.options.get(Opt.RelayAgent);
    if (ra && req.giaddr !== '0.0.0.0') {
      p.options.delete(Opt.RelayAgent);
      p.options.set(Opt.RelayAgent, ra);
    }
  }

  private nak(req: DhcpPacket, why: string): DhcpPacket {
    const p = this.replyBase(req, MessageType.Nak);
    p.options.set(Opt.ServerId, enc.ip(this.server));
    p.options.set(Opt.Message, enc.str(why));
    // Through a relay, ask it to broadcast the NAK on the client's link (RFC 2131 §4.1).
    if (req.giaddr !== '0.0.0.0') p.flags |= 0x8000;
    this.echo(req, p);
    return p;
  }

  /** RFC 2131 §4.1 destination rules. */
  private addressed(req: DhcpPacket, packet: DhcpPacket, isNak: boolean, counted?: Reply['counted']): Reply {
    let to: { address: string; port: number };
    if (req.giaddr !== '0.0.0.0') to = { address: req.giaddr, port: 67 };
    else if (isNak) to = { address: BROADCAST, port: 68 };
    else if (req.ciaddr !== '0.0.0.0') to = { address: req.ciaddr, port: 68 };
    // Unicast to yiaddr needs an ARP entry Node cannot create; broadcast reaches the client too.
    else to = { address: BROADCAST, port: 68 };
    return { packet, to, via: 'dhcp', maxSize: maxSize(req), counted };
  }

  // ---- bookkeeping ------------------------------------------------------------------------

  private node(mac: string, hostname: string | undefined, meta: RequestMeta, now: number): { node: Node; registered: boolean } | undefined {
    const found = this.backend.lookupNode(mac, { hostname });
    if (!found) {
      this.ignoredEvent(mac, this.backend.unknownReason?.(mac) ?? 'unknown client and nodes.auto_register is off', meta, now);
      return undefined;
    }
    if (found.registered) meta.trace?.reasons.push(`unknown MAC: registered as node ${found.node.name} (nodes.auto_register)`);
    return found;
  }

  private ignoredEvent(mac: string, reason: string, meta: RequestMeta, now: number): Outcome {
    meta.trace?.reasons.push(`ignored: ${reason}`);
    if (meta.trace) meta.trace.addressSource = 'none';
    // One event per client per minute: a client retrying every few seconds must not flood the log.
    const last = this.ignoredAt.get(mac);
    if (last === undefined || now - last >= 60_000) {
      if (this.ignoredAt.size > 10_000) this.ignoredAt.clear();
      this.ignoredAt.set(mac, now);
      this.event('dhcp.ignored', mac, undefined, { reason });
    }
    return this.ignore();
  }

  private event(kind: string, mac: string, node: Node | undefined, detail: Record<string, unknown>): void {
    // Copy the defined fields (`delete` would turn the object into a slow dictionary).
    const d: Record<string, unknown> = {};
    for (const k in detail) if (detail[k] !== undefined) d[k] = detail[k];
    this.backend.events.record({ kind, mac, node: node?.name, detail: d });
  }

  private ignore(): Outcome {
    this.counters.ignored++;
    return NONE;
  }

  private malformed(): Outcome {
    this.counters.malformed++;
    return NONE;
  }
}

/** aa:bb:cc:dd:ee:ff of the first six chaddr bytes (hot path, so not via parseMac). */
function macText(chaddr: Buffer): string {
  const h = chaddr.toString('hex', 0, 6);
  return `${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}:${h.slice(6, 8)}:${h.slice(8, 10)}:${h.slice(10, 12)}`;
}

function nz(ip: string): string | undefined {
  return ip === '0.0.0.0' ? undefined : ip;
}

/** Option 57 counts the whole IP datagram; keep 28 bytes for the IP and UDP headers. */
function maxSize(req: DhcpPacket): number {
  const m = getU16(req.options, Opt.MaxMessageSize);
  return m === undefined ? 548 : Math.max(548, m - 28);
}

/**
 * The reply's options with the message type and server identifier first (some PXE ROMs read
 * only the start), then those the client requested in its order, then the rest as they were.
 */
export function orderAsRequested(o: Map<number, Buffer>, prl: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  const take = (code: number) => {
    const v = o.get(code);
    if (v !== undefined && !out.has(code)) out.set(code, v);
  };
  take(Opt.MessageType);
  take(Opt.ServerId);
  for (const code of prl) take(code);
  for (const code of o.keys()) take(code);
  return out;
}
