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

export type AnswerMode = 'all' | 'standby';

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

/**
 * Why this server stays silent, or undefined when it answers. `secs`: the packet's raw field.
 * (A SELECTING REQUEST naming another server never gets here: the handler ignores it first.)
 */
export function silenceReason(policy: AnswerPolicy | undefined, step: ClientStep, secs: number, subnet: string): string | undefined {
  if (!policy || policy.mode === 'all') return undefined;
  if (step === 'selecting' || step === 'renewing') return undefined;
  const tried = clientSecs(secs);
  if (tried >= policy.standbySecs) return undefined;
  return `standby for ${subnet}: the client has tried for ${tried} s (secs), under standby_secs ${policy.standbySecs} s: the primary answers`;
}
