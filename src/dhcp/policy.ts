/**
 * Who answers when several pxeherd servers share one PostgreSQL and hear the same broadcast
 * segment (issue 19). The servers never talk to each other; the database makes sure they hand
 * out the same answer (one lease row per client), and this policy says who speaks.
 *
 * Per subnet, `dhcp.answer` (the `dhcp.range` pool, and the default for `dhcp.subnets[]`) or
 * `dhcp.subnets[].answer`:
 * - `all` (default): every server answers every client. The client takes the first OFFER; the
 *   others are released when its REQUEST names the server it chose (option 54).
 * - `standby`: this server answers a DISCOVER, or an INIT-REBOOT REQUEST (a rebooting client
 *   checking its address), only when the client's `secs` field says it has been trying for at
 *   least `standby_secs` seconds (default 3) — the primary is silent. The same reading of `secs`
 *   as ISC dhcpd's failover secondary and dhcrelay's wait: no heartbeat between servers is needed,
 *   the client's own retransmissions are the evidence. Clients count `secs` from their first
 *   DISCOVER (ISC dhclient, busybox udhcpc, PXE ROMs); a client that always sends 0 never reaches
 *   a standby server, which is why `all` is the default.
 * - `balanced`: each client belongs to exactly one live server, which answers it at once; the
 *   others stay silent unless its `secs` reaches `standby_secs` (its owner is dead or slow: the
 *   same evidence as `standby`). In the style of RFC 3074 (DHC Load Balancing Algorithm): the
 *   client's key (option 61 client identifier, else chaddr) is hashed into one of 256 buckets
 *   with a Pearson hash (clientBucket), identically on every server. RFC 3074 gives each server a
 *   configured set of buckets; here the servers never talk to each other and are not listed in
 *   any configuration, so the set of servers comes from PostgreSQL (src/store/pg/membership.ts):
 *   every server upserts a heartbeat row (server_id, last_seen, started) in `dhcp_servers` every
 *   second, and the live set is the rows seen within the last few seconds (the database's clock,
 *   so the servers' clocks do not matter). A bucket's owner is the live server with the highest
 *   hash of (bucket, server_id) (bucketOwner: rendezvous hashing), so when a server joins or
 *   leaves, only the buckets it gains or loses move; the others keep their owner.
 *   Membership changes:
 *   - A server dies (kill -9, power): its row stops being refreshed and ages out of every other
 *     server's live set within LIVE_MS + one heartbeat (~5 s); its clients then belong to the
 *     survivors. Until then its clients are answered by the others once their secs reach
 *     standby_secs (a PXE ROM's second DISCOVER comes 4 s after the first).
 *   - A server stops cleanly: it deletes its row; the others move its clients at their next
 *     heartbeat (~1 s).
 *   - A server starts: it answers every client until its first heartbeat has read the live set,
 *     then its own buckets; the others give it its buckets at their next heartbeat. For up to a
 *     heartbeat a client can belong to two servers (both answer, the database arbitrates as with
 *     `all`) or to none (its retransmission, or its secs, gets it answered).
 *   - This server cannot reach PostgreSQL (its last successful heartbeat is older than LIVE_MS):
 *     it answers every client as `all` would. It then serves only the nodes its replica knows
 *     (their own lease or fixed address, src/server/pg-serve.ts); new MACs wait for the database
 *     anyway. Every server cut off does the same, so known nodes keep booting from whichever
 *     server still hears them; the other servers drop it from their live set and take over its
 *     buckets for the clients they can reach.
 *   - One server alone (or SQLite, where the table holds just this server): it owns every bucket.
 *   DHCPv6 (`dhcp6.answer: balanced`, src/dhcp6/handler.ts standbySilence): the same live set and
 *   buckets, keyed by the client's DUID, the Elapsed Time option standing for `secs`.
 *   Every server on the segment must use `balanced` for the subnet and hear the same segment: a
 *   server counted live that does not serve the subnet leaves its share to standby_secs. Servers
 *   of different pxeherd versions must hash alike (the bucket function and table are fixed).
 *
 * Whatever the policy:
 * - A SELECTING REQUEST (option 54 set) is answered only by the server it names; another server's
 *   own offer for that client is dropped (and on PostgreSQL released, unless it is the address
 *   the client is taking) so the address is free again (RFC 2131 §4.3.2).
 * - A RENEWING REQUEST (ciaddr, no option 54) is unicast to the server that gave the lease: it is
 *   answered. A REBINDING REQUEST (the same, broadcast at T2, when that server stayed silent
 *   through the renewals) is answered by any server, standby included, from the lease the
 *   database holds: its server has been silent for (T2 - T1) = 3/8 of the lease.
 * - next-server (siaddr), option 54, option 66 and the boot URLs are always the answering
 *   server's own address: a client boots from whoever answered, so a dead server is never named.
 */
import type { DhcpConfig, Pool } from './pools.js';

export type AnswerMode = 'all' | 'standby' | 'balanced';

export interface AnswerPolicy {
  mode: AnswerMode;
  /** standby: answer once the client has been trying this long. */
  standbySecs: number;
}

/** What the client is doing (RFC 2131 §4.3.2), as far as the policy cares. */
export type ClientStep = 'discover' | 'selecting' | 'init-reboot' | 'renewing';

export const DEFAULT_STANDBY_SECS = 3;

/** The policy of each pool (buildPools' order: the `dhcp.range` pool first, then `dhcp.subnets`). */
export function answerPolicies(cfg: Pick<DhcpConfig, 'range' | 'subnets'> & { answer?: AnswerMode; standby_secs?: number }, pools: { local?: Pool; all: Pool[] }): Map<Pool, AnswerPolicy> {
  const base: AnswerPolicy = { mode: cfg.answer ?? 'all', standbySecs: cfg.standby_secs ?? DEFAULT_STANDBY_SECS };
  const out = new Map<Pool, AnswerPolicy>();
  if (pools.local) out.set(pools.local, base);
  const first = pools.local ? 1 : 0;
  cfg.subnets.forEach((s, i) => {
    const x = s as { answer?: AnswerMode; standby_secs?: number };
    const pool = pools.all[first + i];
    if (pool) out.set(pool, { mode: x.answer ?? base.mode, standbySecs: x.standby_secs ?? base.standbySecs });
  });
  return out;
}

/**
 * Seconds the client has been trying, from the BOOTP `secs` field. Some PXE ROMs write it
 * little-endian: a value whose low byte is 0 and high byte is not reads as the byte-swapped one
 * (ISC dhcpd's reading of the same bug).
 */
export function clientSecs(secs: number): number {
  const s = secs & 0xffff;
  return s > 0xff && (s & 0xff) === 0 ? s >> 8 : s;
}

/** The client's step from a REQUEST's fields: option 54, option 50, ciaddr. */
export function requestStep(serverId: string | undefined, requestedIp: string | undefined): Exclude<ClientStep, 'discover'> {
  if (serverId !== undefined) return 'selecting';
  if (requestedIp !== undefined) return 'init-reboot';
  return 'renewing'; // RENEWING (unicast) or REBINDING (broadcast): ciaddr, no 54, no 50
}

/** `balanced`: who owns the client (from the live set); undefined: the live set is not known (answer). */
export interface BalanceView {
  self: string;
  owner: string;
  bucket: number;
}

/**
 * Why this server stays silent, or undefined when it answers. `secs`: the packet's raw field.
 * `balance`: for `balanced`, the client's owner among the live servers (undefined: not known,
 * e.g. the database is unreachable: answer as `all`).
 * (A SELECTING REQUEST naming another server never gets here: the handler ignores it first.)
 */
export function silenceReason(policy: AnswerPolicy | undefined, step: ClientStep, secs: number, subnet: string, balance?: BalanceView): string | undefined {
  if (!policy || policy.mode === 'all') return undefined;
  if (step === 'selecting' || step === 'renewing') return undefined;
  if (policy.mode === 'balanced' && (!balance || balance.owner === balance.self)) return undefined;
  const tried = clientSecs(secs);
  if (tried >= policy.standbySecs) return undefined;
  if (policy.mode === 'balanced') return `balanced for ${subnet}: bucket ${balance!.bucket} belongs to ${balance!.owner}, the client has tried for ${tried} s (secs), under standby_secs ${policy.standbySecs} s: its owner answers`;
  return `standby for ${subnet}: the client has tried for ${tried} s (secs), under standby_secs ${policy.standbySecs} s: the primary answers`;
}

/**
 * The Pearson hash table (a permutation of 0..255) of clientBucket: made from a fixed seed by a
 * Fisher-Yates shuffle driven by a 32-bit xorshift, so every server computes the same table.
 * RFC 3074 prints its own table; any fixed permutation spreads keys as well (changing it moves
 * every client, which is why it must never change).
 */
const PEARSON: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let i = 0; i < 256; i++) t[i] = i;
  let x = 0x70786568; // "pxeh"
  for (let i = 255; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const j = x % (i + 1);
    const v = t[i]!;
    t[i] = t[j]!;
    t[j] = v;
  }
  return t;
})();

/**
 * The client's bucket, 0-255 (RFC 3074 §3's Pearson hash over the client's key: option 61 when
 * the client sends one, else its hardware address), the same on every server.
 */
export function clientBucket(key: Uint8Array): number {
  let h = key.length & 0xff;
  for (const b of key) h = PEARSON[h ^ b]!;
  return h;
}

/** FNV-1a 32-bit of the server id with the bucket as last byte: the rendezvous weight. */
function weight(serverId: string, bucket: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < serverId.length; i++) h = Math.imul(h ^ serverId.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ bucket, 0x01000193);
  // Final mix (FNV alone is weak in its low bits for near-identical ids such as a/b).
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The live server owning a bucket: the highest weight(server, bucket) (rendezvous hashing), ties
 * to the smaller id. Any order of `live` gives the same answer; a server joining or leaving
 * moves only the buckets it takes or gives up. Undefined for an empty live set.
 */
export function bucketOwner(bucket: number, live: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestW = -1;
  for (const s of live) {
    const w = weight(s, bucket);
    if (w > bestW || (w === bestW && best !== undefined && s < best)) {
      best = s;
      bestW = w;
    }
  }
  return best;
}
