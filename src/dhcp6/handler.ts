/**
 * The DHCPv6 decision maker (RFC 8415 §18.3 server behaviour; RFC 5970 boot options): a decoded
 * message in, replies and leases to persist out. No sockets, so tests feed messages straight
 * in. A node is keyed by its MAC as everywhere in pxeherd; the client's DUID and IAID key its
 * leases. The MAC comes from the DUID (LL/LLT), the relay's link-layer option, the EUI-64
 * link-local source address, an earlier lease of the same DUID, or the neighbour table.
 */
import { clientBucket, type BalanceView } from '../dhcp/policy.js';
import type { Node } from '../nodes/types.js';
import { ARCH_NAMES, decideBoot, type BootDecision, type BootFiles, type ClientKind } from '../dhcp/boot.js';
import type { Dhcp6Backend, Lease6, LeaseClaim6 } from './backend.js';
import { isRelay, MSG_NAMES, MsgType, type Dhcp6Message, type Dhcp6Option, type Dhcp6Packet } from './codec.js';
import { bigIntToIp6, inPrefix, ip6ToBigInt, ip6ToBuffer, isLinkLocal, macFromEui64 } from './ip6.js';
import {
  clientArchs,
  enc6,
  first,
  iaAddrOption,
  iaNaOption,
  macFromDuid,
  macFromLinkLayerOption,
  Opt6,
  parseIaNa,
  requested,
  Status,
  statusOption,
  userClasses,
  vendorClasses,
  all,
} from './options.js';
import { buildPool6, poolHas, type Dhcp6Config, type Pool6 } from './pool.js';

export interface Dhcp6Counters {
  received: number;
  /** Undecodable datagrams (counted by the server) and decodable ones that break RFC 8415 §16. */
  malformed: number;
  /** Well-formed but not ours to answer (other server chosen, server messages, relays). */
  ignored: number;
  advertises: number;
  replies: number;
  sendErrors: number;
  storeErrors: number;
}

export function newCounters6(): Dhcp6Counters {
  return { received: 0, malformed: 0, ignored: 0, advertises: 0, replies: 0, sendErrors: 0, storeErrors: 0 };
}

export interface Request6Meta {
  /** Source of the datagram (link-local with its zone, e.g. fe80::5054:ff:fe00:1%br0). */
  from: { address: string; port: number };
  now?: number;
  trace?: Trace6;
}

export interface Trace6 {
  reasons: string[];
  mac?: string;
  macSource?: string;
  addressSource?: 'lease' | 'pool' | 'none';
  boot?: BootDecision;
}

export interface Reply6 {
  message: Dhcp6Message;
  to: { address: string; port: number };
  /** After sending: the node was in contact at this address. */
  bound?: { mac: string; ip: string };
  /** The node (MAC) this reply is for, and what it hands out or gives back (shared database). */
  mac?: string;
  claims?: LeaseClaim6[];
}

export interface Outcome6 {
  replies: Reply6[];
  /** Durable before any reply leaves. */
  persist: Lease6[];
}

export interface Handler6Options {
  config: Dhcp6Config;
  /** The server's DUID (option 2). */
  serverDuid: Buffer;
  /** The address clients reach pxeherd at over IPv6 (boot URLs). */
  serverAddress: string;
  httpPort: number;
  bootFiles: BootFiles;
  backend: Dhcp6Backend;
  counters?: Dhcp6Counters;
  /** How long an advertised address is held for the client's Request. */
  offerHoldSeconds?: number;
  /** How long a declined address stays out of the pool. */
  declineHoldSeconds?: number;
  /** `dhcp6.answer: balanced`: the owner of a client bucket among the live servers (src/dhcp/policy.ts). */
  balance?: (bucket: number) => BalanceView | undefined;
}

const NONE: Outcome6 = Object.freeze({ replies: [], persist: [] }) as Outcome6;

export class Dhcp6Handler {
  readonly counters: Dhcp6Counters;
  readonly pool: Pool6;
  private readonly cfg: Dhcp6Config;
  private readonly backend: Dhcp6Backend;
  private readonly serverDuid: Buffer;
  private readonly byKey = new Map<string, Lease6>();
  private readonly byIp = new Map<string, Lease6>();
  private readonly declined = new Map<string, number>();
  private readonly ignoredAt = new Map<string, number>();
  private readonly offerHoldMs: number;
  private readonly declineHoldMs: number;

  constructor(private readonly opts: Handler6Options) {
    this.cfg = opts.config;
    this.backend = opts.backend;
    this.serverDuid = opts.serverDuid;
    if (!ip6ToBuffer(opts.serverAddress)) throw new Error(`DHCPv6: server address "${opts.serverAddress}" is not an IPv6 address (set dhcp6.address)`);
    this.pool = buildPool6(opts.config);
    this.counters = opts.counters ?? newCounters6();
    this.offerHoldMs = (opts.offerHoldSeconds ?? 60) * 1000;
    this.declineHoldMs = (opts.declineHoldSeconds ?? 600) * 1000;
  }

  /** Active leases from the store; once before the first message. */
  load(now = Date.now()): number {
    const list = this.backend.leases.active(now);
    for (const l of list) this.remember(l);
    return list.length;
  }

  handle(p: Dhcp6Packet, meta: Request6Meta): Outcome6 {
    const now = meta.now ?? Date.now();
    this.counters.received++;
    if (isRelay(p)) {
      // Relay-forw would need the reply wrapped back per relay hop; pxeherd serves its own link.
      this.counters.ignored++;
      meta.trace?.reasons.push('relayed DHCPv6 messages are not served (pxeherd answers on its own link only)');
      return NONE;
    }
    const msg = p;
    switch (msg.type) {
      case MsgType.Solicit:
      case MsgType.Request:
      case MsgType.Renew:
      case MsgType.Rebind:
      case MsgType.Release:
      case MsgType.Decline:
      case MsgType.Confirm:
      case MsgType.InformationRequest:
        break;
      default:
        return this.ignore(); // server messages (Advertise, Reply, Reconfigure) from another server
    }
    const clientId = first(msg.options, Opt6.ClientId);
    const serverId = first(msg.options, Opt6.ServerId);
    // RFC 8415 §16: which messages must and must not carry the two identifiers.
    const needsServerId = msg.type === MsgType.Request || msg.type === MsgType.Renew || msg.type === MsgType.Release || msg.type === MsgType.Decline;
    const forbidsServerId = msg.type === MsgType.Solicit || msg.type === MsgType.Confirm || msg.type === MsgType.Rebind;
    if (msg.type !== MsgType.InformationRequest && !clientId) return this.malformed();
    if (forbidsServerId && serverId) return this.malformed();
    if (needsServerId && !serverId) return this.malformed();
    if (serverId && !serverId.equals(this.serverDuid)) {
      // The client chose another server: an advertised (unpersisted) address is free again.
      if (msg.type === MsgType.Request && clientId) this.dropOffers(clientId.toString('hex'));
      return this.ignore();
    }
    const duid = clientId?.toString('hex') ?? '';
    const kind = MSG_NAMES[msg.type]!.toLowerCase().replace('information-request', 'inform');
    const silent = standbySilence(this.cfg, msg, this.opts.balance);
    if (silent) {
      meta.trace?.reasons.push(`ignored: ${silent}`);
      return this.ignore();
    }
    const mac = this.macOf(msg, clientId, meta);
    this.event(`dhcp6.${kind}`, mac, undefined, { xid: msg.xid, duid: duid || undefined, from: meta.from.address });
    if (!mac) return this.ignoredEvent(duid || meta.from.address, undefined, 'no MAC address in the DUID, the link-local address or the neighbour table: cannot tell which node this is', meta, now);
    const found = this.backend.lookupNode(mac, {});
    if (!found) return this.ignoredEvent(duid, mac, this.backend.unknownReason?.(mac) ?? 'unknown client and nodes.auto_register is off', meta, now);
    if (found.registered) meta.trace?.reasons.push(`unknown MAC: registered as node ${found.node.name} (nodes.auto_register)`);
    const node = found.node;
    switch (msg.type) {
      case MsgType.Solicit:
        return this.solicit(msg, duid, mac, node, meta, now);
      case MsgType.Request:
        return this.bindAll(msg, duid, mac, node, meta, now, 'request');
      case MsgType.Renew:
      case MsgType.Rebind:
        return this.bindAll(msg, duid, mac, node, meta, now, msg.type === MsgType.Renew ? 'renew' : 'rebind');
      case MsgType.Release:
      case MsgType.Decline:
        return this.giveBack(msg, duid, mac, node, meta, now);
      case MsgType.Confirm:
        return this.confirm(msg, mac, node, meta);
      default:
        return this.inform(msg, mac, node, meta);
    }
  }

  // ---- messages ---------------------------------------------------------------------------

  private solicit(msg: Dhcp6Message, duid: string, mac: string, node: Node, meta: Request6Meta, now: number): Outcome6 {
    const rapid = this.cfg.rapid_commit && !!first(msg.options, Opt6.RapidCommit);
    if (rapid) {
      meta.trace?.reasons.push('rapid commit: the client asked for it (option 14) and dhcp6.rapid_commit is on, so it gets a Reply at once');
      return this.bindAll(msg, duid, mac, node, meta, now, 'solicit');
    }
    const ias: Dhcp6Option[] = [];
    const offered: string[] = [];
    const claims: LeaseClaim6[] = [];
    for (const v of all(msg.options, Opt6.IaNa)) {
      const ia = parseIaNa(v);
      const ip = this.allocate(duid, ia.iaid, mac, ia.addresses.map((a) => a.address), now, meta.trace);
      if (!ip) {
        ias.push(iaNaOption(ia.iaid, 0, 0, [statusOption(Status.NoAddrsAvail, 'the pool is exhausted')]));
        continue;
      }
      const prev = this.byKey.get(key(duid, ia.iaid, mac));
      // Do not turn a bound lease into a mere offer: the client still holds it.
      if (!(prev && prev.state === 'bound' && prev.ip === ip && prev.expiresAt > now)) {
        const offer: Lease6 = { duid, iaid: ia.iaid, mac, ip, state: 'offered', expiresAt: now + this.offerHoldMs, updatedAt: now };
        this.remember(offer);
        claims.push({ kind: 'offer', lease: offer });
      } else claims.push({ kind: 'offer', lease: prev });
      ias.push(this.iaWithAddress(ia.iaid, ip));
      offered.push(ip);
    }
    const { m: reply, boot } = this.reply(MsgType.Advertise, msg, mac, meta.trace);
    // RFC 8415 §18.3.9: preference 255 tells the client to stop collecting Advertises.
    reply.options.splice(2, 0, { code: Opt6.Preference, data: enc6.u8(255) }, ...ias);
    this.counters.advertises++;
    this.event('dhcp6.advertise', mac, node, { ip: offered[0], duid, boot: boot.kind, url: boot.bootFile });
    return { replies: [{ message: reply, to: meta.from, mac, claims }], persist: [] };
  }

  /** Request, Renew, Rebind, and Solicit with rapid commit: bind every IA_NA, reply. */
  private bindAll(msg: Dhcp6Message, duid: string, mac: string, node: Node, meta: Request6Meta, now: number, what: string): Outcome6 {
    const ias: Dhcp6Option[] = [];
    const persist: Lease6[] = [];
    const renewing = what === 'renew' || what === 'rebind';
    for (const v of all(msg.options, Opt6.IaNa)) {
      const ia = parseIaNa(v);
      const asked = ia.addresses.map((a) => a.address);
      let ip: string | undefined;
      if (renewing) {
        const mine = this.leaseOf(duid, ia.iaid, mac);
        if (mine && mine.state !== 'declined' && asked.includes(mine.ip)) ip = mine.ip;
        else if (what === 'rebind' && !mine) ip = this.allocate(duid, ia.iaid, mac, asked, now, meta.trace, true);
        if (!ip) {
          if (what === 'renew') {
            // §18.3.4: no binding for this IA -> NoBinding, the client goes back to Solicit.
            ias.push(iaNaOption(ia.iaid, 0, 0, [statusOption(Status.NoBinding, 'no binding for this IA')]));
          } else {
            // §18.3.5: addresses that are not appropriate get lifetimes 0.
            ias.push(iaNaOption(ia.iaid, 0, 0, asked.map((a) => iaAddrOption(a, 0, 0))));
          }
          continue;
        }
      } else {
        ip = this.allocate(duid, ia.iaid, mac, asked, now, meta.trace);
        if (!ip) {
          ias.push(iaNaOption(ia.iaid, 0, 0, [statusOption(Status.NoAddrsAvail, 'the pool is exhausted')]));
          continue;
        }
      }
      const lease: Lease6 = { duid, iaid: ia.iaid, mac, ip, state: 'bound', expiresAt: now + this.pool.validSeconds * 1000, updatedAt: now };
      this.remember(lease);
      persist.push(lease);
      const opts = [this.iaWithAddress(ia.iaid, ip)];
      // §18.3.5: other addresses the client listed for a rebound IA are no longer valid.
      for (const a of asked) if (a !== ip && renewing) opts.push(iaAddrOption(a, 0, 0));
      ias.push(opts.length === 1 ? opts[0]! : this.mergeIa(ia.iaid, opts));
    }
    const { m: reply, boot } = this.reply(MsgType.Reply, msg, mac, meta.trace);
    if (what === 'solicit') reply.options.splice(2, 0, { code: Opt6.RapidCommit, data: Buffer.alloc(0) });
    reply.options.splice(2, 0, ...ias);
    this.counters.replies++;
    this.event('dhcp6.reply', mac, node, { to: what, ip: persist[0]?.ip, duid, validSeconds: persist.length ? this.pool.validSeconds : undefined, boot: boot.kind, url: boot.bootFile });
    const r: Reply6 = { message: reply, to: meta.from, mac, claims: persist.map((lease) => ({ kind: 'bind', lease })) };
    if (persist[0]) r.bound = { mac, ip: persist[0].ip };
    return { replies: [r], persist };
  }

  private giveBack(msg: Dhcp6Message, duid: string, mac: string, node: Node, meta: Request6Meta, now: number): Outcome6 {
    const decline = msg.type === MsgType.Decline;
    const ias: Dhcp6Option[] = [];
    const persist: Lease6[] = [];
    for (const v of all(msg.options, Opt6.IaNa)) {
      const ia = parseIaNa(v);
      const mine = this.leaseOf(duid, ia.iaid, mac);
      const hit = mine && ia.addresses.some((a) => a.address === mine.ip) ? mine : undefined;
      if (!hit) {
        ias.push(iaNaOption(ia.iaid, 0, 0, [statusOption(Status.NoBinding, 'no binding for this IA')]));
        continue;
      }
      if (decline) this.declined.set(hit.ip, now + this.declineHoldMs);
      // A declined row keeps its address out of every server's pool until it expires.
      const l: Lease6 = { ...hit, state: decline ? 'declined' : 'released', expiresAt: decline ? now + this.declineHoldMs : now, updatedAt: now };
      this.remember(l);
      persist.push(l);
    }
    const reply = this.base(MsgType.Reply, msg);
    reply.options.push(...ias, statusOption(Status.Success, decline ? 'declined' : 'released'));
    this.counters.replies++;
    this.event(decline ? 'dhcp6.decline' : 'dhcp6.release', mac, node, { ip: persist.map((l) => l.ip).join(' ') || undefined, duid });
    return { replies: [{ message: reply, to: meta.from, mac, claims: persist.map((lease) => ({ kind: decline ? 'decline' : 'release', lease })) }], persist };
  }

  /** §18.3.3: are the client's addresses on this link? Success or NotOnLink; nothing else. */
  private confirm(msg: Dhcp6Message, mac: string, node: Node, meta: Request6Meta): Outcome6 {
    const addrs = all(msg.options, Opt6.IaNa).flatMap((v) => parseIaNa(v).addresses.map((a) => a.address));
    if (addrs.length === 0) return this.ignore(); // no addresses: no reply (§18.3.3)
    const onLink = addrs.every((a) => {
      const n = ip6ToBigInt(a);
      return n !== undefined && inPrefix(this.pool.prefix, n);
    });
    const reply = this.base(MsgType.Reply, msg);
    reply.options.push(onLink ? statusOption(Status.Success, 'on link') : statusOption(Status.NotOnLink, `not in ${this.pool.prefix.text}`));
    this.counters.replies++;
    this.event('dhcp6.reply', mac, node, { to: 'confirm', status: onLink ? 'Success' : 'NotOnLink' });
    return { replies: [{ message: reply, to: meta.from }], persist: [] };
  }

  /** Information-request: configuration (DNS, boot URL) without addresses (§18.3.6). */
  private inform(msg: Dhcp6Message, mac: string, node: Node, meta: Request6Meta): Outcome6 {
    const { m: reply, boot } = this.reply(MsgType.Reply, msg, mac, meta.trace);
    this.counters.replies++;
    this.event('dhcp6.reply', mac, node, { to: 'information-request', boot: boot.kind, url: boot.bootFile });
    return { replies: [{ message: reply, to: meta.from }], persist: [] };
  }

  // ---- replies ----------------------------------------------------------------------------

  private base(type: number, req: Dhcp6Message): Dhcp6Message {
    const options: Dhcp6Option[] = [];
    const cid = first(req.options, Opt6.ClientId);
    if (cid) options.push({ code: Opt6.ClientId, data: cid });
    options.push({ code: Opt6.ServerId, data: this.serverDuid });
    return { type, xid: req.xid, options };
  }

  /** Advertise/Reply with the configuration options: DNS, domain search, and the boot URL (RFC 5970). */
  private reply(type: number, req: Dhcp6Message, mac: string, trace?: Trace6): { m: Dhcp6Message; boot: BootDecision } {
    const m = this.base(type, req);
    const oro = requested(req.options);
    const boot = this.boot(clientKind6(req.options), mac, trace);
    if (this.cfg.dns.length) m.options.push({ code: Opt6.DnsServers, data: enc6.addrs(this.cfg.dns) });
    if (this.cfg.domain_search.length && oro.includes(Opt6.DomainList)) m.options.push({ code: Opt6.DomainList, data: enc6.domains(this.cfg.domain_search) });
    // §5970 3.1: the boot URL goes to clients that ask for it, and to netboot firmware (which
    // says what it is with 61/16/15) even when its ORO forgot it.
    const netboot = boot.kind !== 'none';
    if (boot.bootFile && (oro.includes(Opt6.BootfileUrl) || netboot)) {
      m.options.push({ code: Opt6.BootfileUrl, data: enc6.str(boot.bootFile) });
      if (this.cfg.boot_params?.length) m.options.push({ code: Opt6.BootfileParam, data: enc6.opaqueList(this.cfg.boot_params) });
      if (boot.replyVendorClass === 'HTTPClient') {
        // UEFI HTTP boot accepts only offers that say HTTPClient (enterprise 343, as edk2 sends it).
        const vc = Buffer.concat([enc6.u32(343), enc6.opaqueList(['HTTPClient'])]);
        m.options.push({ code: Opt6.VendorClass, data: vc });
      }
    }
    if (oro.includes(Opt6.InfoRefreshTime) && type === MsgType.Reply && !first(req.options, Opt6.IaNa)) {
      m.options.push({ code: Opt6.InfoRefreshTime, data: enc6.u32(this.pool.validSeconds) });
    }
    return { m, boot };
  }

  private iaWithAddress(iaid: number, ip: string): Dhcp6Option {
    const p = this.pool;
    // T1/T2 at 0.5 and 0.8 of the preferred lifetime (RFC 8415 §21.4 recommendation).
    return iaNaOption(iaid, Math.floor(p.preferredSeconds * 0.5), Math.floor(p.preferredSeconds * 0.8), [iaAddrOption(ip, p.preferredSeconds, p.validSeconds)]);
  }

  private mergeIa(iaid: number, opts: Dhcp6Option[]): Dhcp6Option {
    const p = this.pool;
    const addrs = opts.flatMap((o) => parseIaNa(o.data).options);
    return iaNaOption(iaid, Math.floor(p.preferredSeconds * 0.5), Math.floor(p.preferredSeconds * 0.8), addrs);
  }

  private boot(kind: ClientKind, mac: string, trace?: Trace6): BootDecision {
    const d = bootDecision6(kind, { mac, serverAddress: this.opts.serverAddress, httpPort: this.opts.httpPort, bootFiles: this.opts.bootFiles });
    if (trace) {
      trace.boot = d;
      trace.reasons.push(...d.reasons);
    }
    return d;
  }

  // ---- who is it ---------------------------------------------------------------------------

  private macOf(msg: Dhcp6Message, clientId: Buffer | undefined, meta: Request6Meta): string | undefined {
    const say = (mac: string | undefined, source: string) => {
      if (mac && meta.trace) {
        meta.trace.mac = mac;
        meta.trace.macSource = source;
      }
      return mac;
    };
    if (clientId) {
      const m = macFromDuid(clientId);
      if (m) return say(m, 'the client DUID (DUID-LL/LLT)');
    }
    const ll = macFromLinkLayerOption(first(msg.options, Opt6.ClientLinkLayerAddr));
    if (ll) return say(ll, 'the client link-layer address option (79)');
    const src = ip6ToBuffer(meta.from.address);
    if (src && isLinkLocal(src)) {
      const m = macFromEui64(src);
      if (m) return say(m, 'the EUI-64 link-local source address');
    }
    // An all-zero DUID (firmware without an SMBIOS UUID) is shared by many machines: no clue.
    if (clientId && !clientId.subarray(2).every((b) => b === 0)) {
      const prev = this.backend.leases.byDuid(clientId.toString('hex'));
      if (prev) return say(prev.mac, 'an earlier lease of this DUID');
    }
    return say(this.backend.neighbourMac?.(meta.from.address), 'the neighbour table');
  }

  // ---- addresses -----------------------------------------------------------------------------

  private leaseOf(duid: string, iaid: number, mac: string): Lease6 | undefined {
    const k = key(duid, iaid, mac);
    const m = this.byKey.get(k);
    if (m) return m;
    const s = this.backend.leases.byKey(duid, iaid, mac);
    if (s) this.remember(s);
    return s;
  }

  private allocate(duid: string, iaid: number, mac: string, asked: string[], now: number, trace?: Trace6, onlyAsked = false): string | undefined {
    const k = key(duid, iaid, mac);
    const done = (ip: string, source: 'lease' | 'pool', why: string) => {
      if (trace) {
        trace.addressSource = source;
        trace.reasons.push(why);
      }
      return ip;
    };
    const prev = this.leaseOf(duid, iaid, mac);
    if (prev && prev.state !== 'declined') {
      const n = ip6ToBigInt(prev.ip);
      if (n !== undefined && poolHas(this.pool, n) && this.free(prev.ip, k, now)) {
        return done(prev.ip, 'lease', `${prev.expiresAt > now && (prev.state === 'bound' || prev.state === 'offered') ? 'current' : 'previous'} lease of this DUID/IAID (${prev.state})`);
      }
    }
    for (const a of asked) {
      const n = ip6ToBigInt(a);
      const ip = n === undefined ? undefined : bigIntToIp6(n);
      if (ip && n !== undefined && poolHas(this.pool, n) && this.free(ip, k, now) && !this.otherOwner(ip, k)) {
        return done(ip, 'pool', `address ${ip} asked for by the client is free`);
      }
    }
    if (onlyAsked) return undefined;
    const p = this.pool;
    const size = p.end - p.start + 1n;
    // Scan from the cursor; a /64 range never runs out, a small one is walked at most once.
    const tries = size < 65536n ? Number(size) : 65536;
    for (const strict of [true, false]) {
      let n = p.cursor;
      for (let i = 0; i < tries; i++, n = n >= p.end ? p.start : n + 1n) {
        const ip = bigIntToIp6(n);
        if (!this.free(ip, k, now)) continue;
        if (strict && this.otherOwner(ip, k)) continue;
        p.cursor = n >= p.end ? p.start : n + 1n;
        return done(ip, 'pool', `next free address in ${p.prefix.text}`);
      }
    }
    if (trace) {
      trace.addressSource = 'none';
      trace.reasons.push(`no free address in dhcp6.range`);
    }
    return undefined;
  }

  /** Usable by the identity association `k` (key()): not ours, not declined, not held by another. */
  private free(ip: string, k: string, now: number): boolean {
    if (ip === this.opts.serverAddress) return false;
    const d = this.declined.get(ip);
    if (d !== undefined) {
      if (d > now) return false;
      this.declined.delete(ip);
    }
    const h = this.byIp.get(ip);
    if (h && (h.state === 'bound' || h.state === 'offered') && h.expiresAt > now && keyOf(h) !== k) return false;
    return true;
  }

  /** Another client held this address last (expired or released but remembered). */
  private otherOwner(ip: string, k: string): boolean {
    const last = this.byIp.get(ip) ?? this.backend.leases.byIp(ip);
    return !!last && keyOf(last) !== k;
  }

  /**
   * Forget what this handler remembers of these nodes and take their rows from the store again:
   * another server on the shared database wrote them, or this server's claim lost a race.
   */
  reloadMacs(macs: Set<string>): void {
    for (const [k, l] of this.byKey) {
      if (!macs.has(l.mac)) continue;
      this.byKey.delete(k);
      if (this.byIp.get(l.ip) === l) this.byIp.delete(l.ip);
    }
    for (const mac of macs) for (const l of this.backend.leases.forMac(mac)) this.remember(l);
  }

  private remember(l: Lease6): void {
    // Another server's decline (shared database) keeps the address out of this pool too.
    if (l.state === 'declined' && l.expiresAt > l.updatedAt) this.declined.set(l.ip, Math.max(this.declined.get(l.ip) ?? 0, l.expiresAt));
    const k = keyOf(l);
    const prev = this.byKey.get(k);
    if (prev && prev.ip !== l.ip && this.byIp.get(prev.ip) === prev) this.byIp.delete(prev.ip);
    this.byKey.set(k, l);
    this.byIp.set(l.ip, l);
  }

  private dropOffers(duid: string): void {
    for (const [k, l] of this.byKey) {
      if (l.duid !== duid || l.state !== 'offered') continue;
      this.byKey.delete(k);
      if (this.byIp.get(l.ip) === l) this.byIp.delete(l.ip);
    }
  }

  // ---- bookkeeping ------------------------------------------------------------------------

  private ignoredEvent(who: string, mac: string | undefined, reason: string, meta: Request6Meta, now: number): Outcome6 {
    meta.trace?.reasons.push(`ignored: ${reason}`);
    if (meta.trace) meta.trace.addressSource = 'none';
    const last = this.ignoredAt.get(who);
    if (last === undefined || now - last >= 60_000) {
      if (this.ignoredAt.size > 10_000) this.ignoredAt.clear();
      this.ignoredAt.set(who, now);
      this.event('dhcp6.ignored', mac, undefined, { reason, from: meta.from.address });
    }
    return this.ignore();
  }

  private event(kind: string, mac: string | undefined, node: Node | undefined, detail: Record<string, unknown>): void {
    for (const k of Object.keys(detail)) if (detail[k] === undefined) delete detail[k];
    this.backend.events.record({ kind, mac, node: node?.name, detail });
  }

  private ignore(): Outcome6 {
    this.counters.ignored++;
    return NONE;
  }

  private malformed(): Outcome6 {
    this.counters.malformed++;
    return NONE;
  }
}

/**
 * Why a `standby` server stays silent (several servers on one PostgreSQL), or undefined when it
 * answers. The DHCPv6 reading of DHCPv4's `secs` rule (src/dhcp/policy.ts): a Solicit, Confirm
 * or Information-request is answered once the client's Elapsed Time (option 8, hundredths of a
 * second since its first message of the exchange, RFC 8415 §21.9) reaches standby_secs — the
 * primary has been silent. A Request, Renew, Release or Decline names its server (the others
 * ignore it already); a Rebind goes to any server, standby included: its server has been silent
 * from T1 to T2.
 */
export function standbySilence(cfg: Pick<Dhcp6Config, 'answer' | 'standby_secs'>, msg: Dhcp6Message, balance?: (bucket: number) => BalanceView | undefined): string | undefined {
  if (cfg.answer !== 'standby' && cfg.answer !== 'balanced') return undefined;
  if (msg.type !== MsgType.Solicit && msg.type !== MsgType.Confirm && msg.type !== MsgType.InformationRequest) return undefined;
  // balanced (as DHCPv4's, src/dhcp/policy.ts): the client's DUID (option 1) picks its bucket; its
  // owner answers at once; unknown live set (no database): answer.
  let view: BalanceView | undefined;
  if (cfg.answer === 'balanced') {
    const duid = first(msg.options, Opt6.ClientId);
    view = duid && duid.length && balance ? balance(clientBucket(duid)) : undefined;
    if (!view || view.owner === view.self) return undefined;
  }
  const e = first(msg.options, Opt6.ElapsedTime);
  const hundredths = e && e.length === 2 ? e.readUInt16BE(0) : 0;
  const need = (cfg.standby_secs ?? 3) * 100;
  if (hundredths >= need) return undefined;
  if (view) return `dhcp6.answer balanced: bucket ${view.bucket} belongs to ${view.owner}, the client has tried for ${(hundredths / 100).toFixed(2)} s (Elapsed Time), under standby_secs ${need / 100} s: its owner answers`;
  return `dhcp6.answer standby: the client has tried for ${(hundredths / 100).toFixed(2)} s (Elapsed Time), under standby_secs ${need / 100} s: the primary answers`;
}

/** A binding's identity: DUID and IAID (RFC 8415), and the MAC, as VMs may share one DUID. */
function key(duid: string, iaid: number, mac: string): string {
  return `${duid}/${iaid}/${mac}`;
}

function keyOf(l: Lease6): string {
  return key(l.duid, l.iaid, l.mac);
}

/** What a DHCPv6 client says about itself, in DHCPv4's terms (so one decision serves both). */
export function clientKind6(options: Dhcp6Option[]): ClientKind {
  const vendorClass = vendorClasses(options).find((v) => v.startsWith('PXEClient') || v.startsWith('HTTPClient')) ?? vendorClasses(options)[0];
  let arch = clientArchs(options)[0];
  if (arch === undefined && vendorClass) {
    const m = /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vendorClass);
    if (m) arch = Number(m[1]);
  }
  // Firmware that sends an architecture (61) is a netboot client even without a vendor class.
  const vc = vendorClass ?? (arch !== undefined ? `PXEClient:Arch:${String(arch).padStart(5, '0')}` : undefined);
  return { arch, vendorClass: vc, ipxe: userClasses(options).includes('iPXE') };
}

/**
 * The DHCPv4 boot decision (src/dhcp/boot.ts) with IPv6 URLs: the server in brackets, and the
 * loaders a DHCPv4 client fetches by TFTP name (siaddr + file) as tftp:// URLs (RFC 5970 §3.1
 * has only the URL).
 */
export function bootDecision6(kind: ClientKind, ctx: { mac: string; serverAddress: string; httpPort: number; bootFiles: BootFiles }): BootDecision {
  const host = `[${ctx.serverAddress}]`;
  const d = decideBoot(kind, { mac: ctx.mac, serverAddress: host, httpPort: ctx.httpPort, bootFiles: ctx.bootFiles });
  if (d.bootFile && !d.bootUrl) {
    const url = `tftp://${host}/${d.bootFile}`;
    d.reasons.push(`over IPv6 the loader is named by URL (option 59): ${url}`);
    return { ...d, bootFile: url };
  }
  if (kind.arch !== undefined && d.kind === 'none' && !ARCH_NAMES[kind.arch]) d.reasons.push(`architecture ${kind.arch} is unknown`);
  return d;
}
