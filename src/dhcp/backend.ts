/**
 * What the DHCP server needs from the rest of pxeherd. Kept narrow so the store can implement
 * it over SQLite and tests can fake it in a few lines (see memory-backend.ts).
 */
import type { Node, Lease, EventSink } from '../nodes/types.js';
import type { Reply } from './handler.js';

export interface LeaseStore {
  byMac(mac: string): Lease | undefined;
  byIp(ip: string): Lease | undefined;
  /** All non-expired offered/bound leases (for building the in-use set at start). */
  active(now: number): Lease[];
  /**
   * One transaction, durable when it returns (WAL). The server batches: it collects the leases
   * of all ACKs decided in one event-loop turn, calls putMany once, then sends those ACKs — every
   * lease is on disk before its ACK leaves.
   */
  putMany(leases: Lease[]): void;
}

export interface DhcpBackend {
  /** Node for a MAC. Unknown MAC: registers it (auto_register on) -> {node, registered:true}; off -> undefined. */
  lookupNode(mac: string, hint: { hostname?: string }): { node: Node; registered: boolean } | undefined;
  /**
   * Why lookupNode just gave no node for this MAC, when the reason is not nodes.auto_register
   * being off (e.g. on PostgreSQL: registrations wait while the database is unreachable), so the
   * ignored event and `explain` name the real cause. Absent or undefined: auto_register is off.
   */
  unknownReason?(mac: string): string | undefined;
  /**
   * Whether a MAC is a node already (no registration). Asked for each DISCOVER as it is read, so
   * it must be cheap; under overload a known node's DISCOVER goes before new MACs'. Absent: no
   * such priority.
   */
  isKnown?(mac: string): boolean;
  /** MAC of the node that has this IP as its fixed address (node.ip), if any: the pool must skip it for others. */
  reservationOwner(ip: string): string | undefined;
  /** Called after an ACK is sent: the lead records the node's IP/last contact. */
  bound(mac: string, ip: string): void;
  leases: LeaseStore;
  /**
   * Runs `work` as one durable transaction (registrations, leases, bound addresses of a slice
   * of queued datagrams) and returns when it is on disk; absent: each write is its own.
   */
  batch?(work: () => void): void;
  /**
   * Several servers on one PostgreSQL (src/server/pg-serve.ts): after a slice's local batch, its
   * claims (registrations, offers, leases) are made in the shared database, and only the replies
   * this resolves with are sent (a lost race drops its packet; the client retries). The next
   * slice waits for it. Absent (SQLite): the batch's commit is the confirmation, synchronously.
   * `sendLater`: replies confirmed after the call resolved (a client another server held).
   */
  confirm?(replies: Reply[], leases: Lease[], sendLater?: (replies: Reply[]) => void): Promise<Reply[]>;
  /** A node's attributes, group's overridden by the node's own (boot_loader chooses the chain); absent = none. */
  attrsFor?(node: Node): Record<string, string>;
  /** The firmware's architecture (option 93) as it asked, so the boot renderer knows the node's CPU. */
  noteClientArch?(mac: string, arch: number | undefined): void;
  /**
   * A SELECTING REQUEST named another server (option 54): this server's offer to the client is
   * void (RFC 2131 §4.3.2). `ip`: the address the client is taking. On PostgreSQL the offer row
   * this server wrote is released unless it is that address (src/server/pg-serve.ts); absent: the
   * handler's own memory is all there is.
   */
  otherServerChosen?(mac: string, ip: string | undefined): void;
  /** kinds: dhcp.discover, dhcp.offer, dhcp.request, dhcp.ack, dhcp.nak, dhcp.decline, dhcp.release, dhcp.inform, dhcp.ignored, dhcp.proxy */
  events: EventSink;
}

/**
 * What `pxeherd explain` needs: like DhcpBackend but read-only — `findNode` must not register
 * an unknown MAC (explaining a client must not change anything).
 */
export interface ExplainBackend {
  findNode(mac: string): Node | undefined;
  reservationOwner(ip: string): string | undefined;
  leases: Pick<LeaseStore, 'byMac' | 'byIp' | 'active'>;
  attrsFor?(node: Node): Record<string, string>;
}
