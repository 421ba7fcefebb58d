/**
 * The store operations that several boot servers coordinate through the database (issue 19),
 * as one asynchronous interface with two backends: SQLite (src/store/sqlite-backend.ts, the
 * synchronous repositories behind promises: one server) and PostgreSQL
 * (src/store/pg/backend.ts: any number of servers). Each method is one transaction inside the
 * backend; no transaction spans an await in a caller. The synchronous SQLite path that
 * `pxeherd serve` runs today (Store, DhcpBackend.batch) stays as it is.
 * test/integration/store-contract.test.ts runs the same suite against both.
 */
import type { BootEvent, Lease, Node } from '../nodes/types.js';
import type { NamingPolicy } from './nodes.js';

export interface LeaseRequest {
  mac: string;
  ip: string;
  /** ms since epoch when the lease (or the offer) ends */
  expiresAt: number;
  hostname?: string;
  subnet?: string;
  /** "now" for deciding which leases are still active (tests pass a fixed clock) */
  now?: number;
}

export type LeaseResult =
  | { ok: true; lease: Lease }
  /** The address is actively held by another client (or was taken in a race): pick another or drop the packet. */
  | { ok: false; reason: 'taken'; holder: string };

/** An event as stored: its id orders the log across servers. */
export interface StoredEvent extends BootEvent {
  id: number;
  time: number;
  serverId: string;
}

export interface StoreBackend {
  readonly kind: 'sqlite' | 'postgres';
  /** Written on leases and events. */
  readonly serverId: string;

  /**
   * The node with this MAC, or a new one named from the pattern. Exactly one caller (across all
   * servers) gets created: true, and only that one records `node.register`.
   */
  registerNode(mac: string, policy: NamingPolicy, opts?: { preferredName?: string; ip?: string }): Promise<{ node: Node; created: boolean }>;
  nodeByMac(mac: string): Promise<Node | undefined>;
  /** Nodes matching a query (node list's language, compiled to SQL), sorted by name; no query: all. */
  listNodes(query?: string): Promise<Node[]>;

  leaseByMac(mac: string): Promise<Lease | undefined>;
  /**
   * Hold `ip` for `mac` as an offer. If the client already has an active lease or offer (from
   * any server), that one is returned instead, so every server offers it the same address.
   * An address another client actively holds is refused.
   */
  offerLease(req: LeaseRequest): Promise<LeaseResult>;
  /** REQUEST -> ACK: the client takes `ip` (its offer, its old lease, or a free address). */
  allocateLease(req: LeaseRequest): Promise<LeaseResult>;
  /** Extend the client's bound lease on `ip`; false when it no longer holds it (NAK). */
  renewLease(mac: string, ip: string, expiresAt: number, now?: number): Promise<boolean>;
  /** The client gives `ip` back; false when it did not hold it. */
  releaseLease(mac: string, ip: string, now?: number): Promise<boolean>;
  /** Active (offered or bound, not expired) leases. */
  activeLeases(now?: number): Promise<Lease[]>;

  /** Append events in one transaction; their ids, in order. */
  appendEvents(events: BootEvent[]): Promise<number[]>;
  /** Events with id > `afterId`, oldest first (a live feed catching up after a gap). */
  eventsAfter(afterId: number, limit?: number): Promise<StoredEvent[]>;

  /** boot=once -> local, exactly once across servers: true for the one caller that flipped it. */
  flipBootOnce(mac: string): Promise<boolean>;

  /**
   * Rows a server's own code wrote into its replica (src/store/pg/writer.ts), as ONE transaction:
   * a new row is upserted, a changed row gets only its changed columns, a gone row is deleted.
   * `strict` (an admin operation): any refusal fails the whole call, and a changed row the
   * database no longer has is written whole. Otherwise (what nodes report): a refused row (its
   * node is gone) or an update of a missing row is dropped and counted, and boot once -> local
   * is the boot-once flip: conditional, `flipsWon` only for the caller whose update matched.
   */
  applyRowChanges(changes: RowChange[], o: { strict: boolean }): Promise<RowChangesResult>;

  close(): Promise<void>;
}

export function isActiveLease(l: Pick<Lease, 'state' | 'expiresAt'> | undefined, now: number): boolean {
  return !!l && (l.state === 'offered' || l.state === 'bound') && l.expiresAt > now;
}

/** What a lease claim does, decided from the client's own row and the address's current row. */
export type ClaimDecision = { do: 'keep-own'; lease: Lease } | { do: 'taken'; holder: string } | { do: 'write'; evict?: string };

/**
 * The one rule both backends apply inside their transaction. `offer`: a client with an active
 * lease keeps it (the same answer from every server). Any claim: an address actively held by
 * another client is refused; an inactive record of another client is evicted.
 */
export function decideClaim(own: Lease | undefined, atIp: Lease | undefined, req: LeaseRequest, mode: 'offer' | 'allocate', now: number): ClaimDecision {
  if (mode === 'offer' && own && isActiveLease(own, now)) return { do: 'keep-own', lease: own };
  if (atIp && atIp.mac !== req.mac) {
    if (isActiveLease(atIp, now)) return { do: 'taken', holder: atIp.mac };
    return { do: 'write', evict: atIp.mac };
  }
  return { do: 'write' };
}

/** A row written by a server's own code, before and after (src/store/pg/writer.ts). */
export interface RowChange {
  table: string;
  pk: string[];
  /** absent: a new row */
  old?: Record<string, unknown>;
  /** absent: the row is gone */
  new?: Record<string, unknown>;
}

export interface RowChangesResult {
  written: number;
  dropped: number;
  flipsWon: { mac: string; name: string }[];
  flipsLost: number;
}

/** The boot-once flip inside a lenient row change: boot went once -> local. */
export function isBootOnceFlip(c: RowChange): boolean {
  return c.table === 'nodes' && !!c.old && !!c.new && c.old.boot === 'once' && c.new.boot === 'local';
}

const VNFS_HASH_COLUMNS = new Set(['kernel_sha256', 'kernel_size', 'initrd_sha256', 'initrd_size']);

/**
 * A server recording the hash of a kernel+initrd VNFS file that had none (VnfsRepo.recordFileHash):
 * the change only fills NULL hash columns. A server's (lenient) one is applied on PostgreSQL only
 * where they are still NULL: a replica that has not yet seen a `vnfs add` elsewhere must not
 * overwrite the hashes that command recorded.
 */
export function isHashFill(c: RowChange): boolean {
  if (c.table !== 'vnfs' || !c.old || !c.new) return false;
  const changed = Object.keys(c.new).filter((k) => c.new![k] !== c.old![k]);
  return changed.length > 0 && changed.every((k) => VNFS_HASH_COLUMNS.has(k) && c.old![k] === null);
}

/** A table or column name of pxeherd's schema, quoted (row changes name them from row keys). */
export function sqlIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a column or table name: ${name}`);
  return `"${name}"`;
}
