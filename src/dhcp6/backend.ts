/**
 * What the DHCPv6 server needs from the rest of pxeherd: the same narrow shape as DHCPv4's
 * (src/dhcp/backend.ts), with leases keyed by the client's DUID and IAID (RFC 8415 §4.2: an
 * identity association is the unit a server binds addresses to) and the node's MAC beside
 * them: firmware in virtual machines often sends the same DUID-UUID (an all-zero SMBIOS
 * UUID) from every machine, and two machines must never share a binding.
 */
import type { Node, EventSink } from '../nodes/types.js';
import type { Reply6 } from './handler.js';

export interface Lease6 {
  /** Client DUID, lower-case hex. */
  duid: string;
  iaid: number;
  /** The node's MAC (from the DUID, the link-local address or an earlier lease). */
  mac: string;
  ip: string;
  /** ms since epoch: end of the valid lifetime. */
  expiresAt: number;
  state: 'offered' | 'bound' | 'released' | 'declined';
  updatedAt: number;
}

/**
 * What a reply hands out or gives back, for servers sharing one database (src/store/pg/leases6.ts):
 * offer (Advertise), bind (Reply to Request, Renew, Rebind, rapid commit), release, decline.
 */
export interface LeaseClaim6 {
  kind: 'offer' | 'bind' | 'release' | 'decline';
  lease: Lease6;
}

export interface Lease6Store {
  byKey(duid: string, iaid: number, mac: string): Lease6 | undefined;
  byIp(ip: string): Lease6 | undefined;
  /** Latest lease of a DUID, any IAID: remembers the MAC of a client whose DUID carries none. */
  byDuid(duid: string): Lease6 | undefined;
  /** Every lease of a node (any DUID/IAID): the handler re-reads them after another server wrote them. */
  forMac(mac: string): Lease6[];
  /** All non-expired offered/bound leases (the in-use set at start). */
  active(now: number): Lease6[];
  /** One durable transaction; the server writes a batch before sending its replies. */
  putMany(leases: Lease6[]): void;
}

export interface Dhcp6Backend {
  /** As DHCPv4's: an unknown MAC is registered when nodes.auto_register is on. */
  lookupNode(mac: string, hint: { hostname?: string }): { node: Node; registered: boolean } | undefined;
  /**
   * Why lookupNode just gave no node for this MAC, when the reason is not nodes.auto_register
   * being off (e.g. on PostgreSQL: registrations wait while the database is unreachable), so the
   * ignored event and `explain` name the real cause. Absent or undefined: auto_register is off.
   */
  unknownReason?(mac: string): string | undefined;
  /**
   * Last resort for a client whose DUID and link-local address carry no MAC: the kernel's
   * neighbour table for its source address. Optional (tests, explain).
   */
  neighbourMac?(address: string): string | undefined;
  /** After a Reply that binds: the node was in contact. */
  bound(mac: string, ip: string): void;
  leases: Lease6Store;
  /** kinds: dhcp6.solicit, .advertise, .request, .reply, .renew, .rebind, .release, .decline, .confirm, .inform, .ignored */
  events: EventSink;
  /**
   * Several servers on one PostgreSQL (src/server/pg-dhcp6.ts): the replies' claims are made in the
   * shared database before they leave; resolves to the replies that may be sent (a lost race
   * drops its client's reply, the client retransmits). Absent: the local commit is the confirmation.
   */
  confirm?(replies: Reply6[]): Promise<Reply6[]>;
}
