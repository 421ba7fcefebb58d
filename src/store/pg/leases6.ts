/**
 * One DHCPv6 slice's lease claims in PostgreSQL in ONE transaction (issue 19), the DHCPv6
 * counterpart of claims.ts' claimSlice: the offers (Advertise), bindings (Reply to Request,
 * Renew, Rebind, rapid commit), releases and declines of the replies one server is about to send.
 *
 * A binding's identity is (DUID, IAID, MAC) as in the leases6 table (src/dhcp6/backend.ts); an
 * address is held by one identity (the UNIQUE ip). The rules, decided against the rows read
 * FOR UPDATE (decideClaim6, pure, tested without a database):
 * - offer: a client whose row already holds another live address keeps it (the claim is lost:
 *   its Advertise is not sent, the server re-reads the row and the client's retransmission is
 *   offered that address) — so every server offers a client the same address. A bound row is
 *   never turned back into an offer.
 * - offer/bind of an address another identity holds live (offered, bound, or declined and not yet
 *   expired) is lost; a stale holder (expired, released) is evicted.
 * - bind: the client's own row moves to bound (request, renew, rebind from any server).
 * - release/decline: only the client's own row holding that address changes.
 * As in claims.ts, the slice first TRIES a transaction-scoped advisory lock per identity and per
 * address (never waits): a client another server is writing right now is left to that server
 * (`busy`). Unique violations and serialization failures retry the whole transaction (bounded).
 */
import type { Lease6, LeaseClaim6 } from '../../dhcp6/backend.js';
import type { Sql, TxSql } from './connect.js';
import { SLICE_LOCK_CLASS } from './schema.js';
import { lease6FromRow, type Lease6Row } from '../leases6.js';

export type Claim6 = LeaseClaim6;

export type Claim6Outcome = { ok: true; lease: Lease6 } | { ok: false; why: 'busy' | 'moved' | 'taken'; holder?: Lease6 };

export const lease6Key = (l: Pick<Lease6, 'duid' | 'iaid' | 'mac'>): string => `${l.duid}/${l.iaid}/${l.mac}`;

/** Holds its address now: offered or bound, or declined (kept out of the pool) until it expires. */
export function holdsAddress(l: Lease6, now: number): boolean {
  return l.expiresAt > now && (l.state === 'offered' || l.state === 'bound' || l.state === 'declined');
}

export type Decision6 = { do: 'write'; lease: Lease6; evict?: string } | { do: 'keep'; lease: Lease6 } | { do: 'lost'; why: 'moved' | 'taken'; holder: Lease6 } | { do: 'none' };

/** What one claim does given the client's own row and the row holding the address (pure). */
export function decideClaim6(own: Lease6 | undefined, atIp: Lease6 | undefined, c: Claim6, now: number): Decision6 {
  const want = c.lease;
  if (c.kind === 'release' || c.kind === 'decline') {
    if (!own || own.ip !== want.ip) return { do: 'none' };
    if (c.kind === 'release' && own.state !== 'offered' && own.state !== 'bound') return { do: 'none' };
    return { do: 'write', lease: { ...own, state: want.state, expiresAt: want.expiresAt, updatedAt: now } };
  }
  if (own && own.ip !== want.ip && (own.state === 'offered' || own.state === 'bound') && own.expiresAt > now) {
    // The database gave this client another address (another server's offer or binding).
    return { do: 'lost', why: 'moved', holder: own };
  }
  if (c.kind === 'offer' && own && own.ip === want.ip && own.state === 'bound' && own.expiresAt > now) return { do: 'keep', lease: own };
  if (atIp && lease6Key(atIp) !== lease6Key(want)) {
    if (holdsAddress(atIp, now)) return { do: 'lost', why: 'taken', holder: atIp };
    return { do: 'write', lease: { ...want, updatedAt: now }, evict: lease6Key(atIp) };
  }
  return { do: 'write', lease: { ...want, updatedAt: now } };
}

const RETRYABLE = new Set(['23505', '40001', '40P01']);
const MAX_ATTEMPTS = 5;

class LostRace extends Error {
  code = '40001';
}

export interface Slice6Result {
  /** One per claim, in the order given. */
  outcomes: Claim6Outcome[];
  retries: number;
}

export async function claimSlice6(sql: Sql, serverId: string, claims: Claim6[], now: number): Promise<Slice6Result> {
  for (let attempt = 1; ; attempt++) {
    try {
      const outcomes = (await sql.begin((tx) => slice6Tx(tx, serverId, claims, now))) as Claim6Outcome[];
      return { outcomes, retries: attempt - 1 };
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (!code || !RETRYABLE.has(code) || attempt >= MAX_ATTEMPTS) throw e;
    }
  }
}

async function slice6Tx(tx: TxSql, serverId: string, claims: Claim6[], now: number): Promise<Claim6Outcome[]> {
  if (claims.length === 0) return [];
  // Never wait on another server's slice (see claims.ts): try a lock per identity and address.
  const keysOf = (c: Claim6) => [`k6:${lease6Key(c.lease)}`, ...(c.kind === 'offer' || c.kind === 'bind' ? [`a6:${c.lease.ip}`] : [])];
  const keys = [...new Set(claims.flatMap(keysOf))];
  const got = await tx<{ k: string; ok: boolean }[]>`SELECT k, pg_try_advisory_xact_lock(${SLICE_LOCK_CLASS}, hashtext(k)) AS ok FROM unnest(${tx.array(keys)}::text[]) AS k`;
  const held = new Set(got.filter((r) => !r.ok).map((r) => r.k));
  const busy = (c: Claim6) => keysOf(c).some((k) => held.has(k));
  const mine = claims.filter((c) => !busy(c));
  const rows = mine.length
    ? await tx<Lease6Row[]>`
        SELECT duid, iaid, mac, ip, expires_at, state, updated_at FROM leases6
        WHERE (duid, iaid, mac) IN (SELECT * FROM unnest(${tx.array(mine.map((c) => c.lease.duid))}::text[], ${tx.array(mine.map((c) => c.lease.iaid))}::bigint[], ${tx.array(mine.map((c) => c.lease.mac))}::text[]))
           OR ip = ANY(${tx.array(mine.map((c) => c.lease.ip))}::text[])
        ORDER BY ip FOR UPDATE`
    : [];
  const byKey = new Map<string, Lease6>();
  for (const r of rows) byKey.set(lease6Key(lease6FromRow(r)), lease6FromRow(r));
  const existed = new Set(byKey.keys());
  const holderOf = (ip: string) => [...byKey.values()].find((l) => l.ip === ip);
  const dirty = new Set<string>();
  const evicted = new Set<string>();
  const outcomes: Claim6Outcome[] = [];
  for (const c of claims) {
    if (busy(c)) {
      outcomes.push({ ok: false, why: 'busy' });
      continue;
    }
    const k = lease6Key(c.lease);
    const d = decideClaim6(byKey.get(k), holderOf(c.lease.ip), c, now);
    if (d.do === 'none') outcomes.push({ ok: true, lease: c.lease });
    else if (d.do === 'keep') outcomes.push({ ok: true, lease: d.lease });
    else if (d.do === 'lost') outcomes.push({ ok: false, why: d.why, holder: d.holder });
    else {
      if (d.evict) {
        byKey.delete(d.evict);
        dirty.delete(d.evict);
        evicted.add(d.evict);
      }
      byKey.set(k, d.lease);
      dirty.add(k);
      evicted.delete(k);
      outcomes.push({ ok: true, lease: d.lease });
    }
  }
  const writes: Promise<unknown>[] = [];
  const gone = [...evicted].filter((k) => existed.has(k)).map((k) => k.split('/'));
  if (gone.length) {
    writes.push(tx`DELETE FROM leases6 WHERE (duid, iaid, mac) IN (SELECT * FROM unnest(${tx.array(gone.map((g) => g[0]!))}::text[], ${tx.array(gone.map((g) => Number(g[1])))}::bigint[], ${tx.array(gone.map((g) => g[2]!))}::text[]))`);
  }
  for (const k of [...dirty].sort()) {
    const l = byKey.get(k)!;
    if (existed.has(k)) {
      writes.push(tx`UPDATE leases6 SET ip = ${l.ip}, expires_at = ${l.expiresAt}, state = ${l.state}, updated_at = ${now}, server_id = ${serverId}
                     WHERE duid = ${l.duid} AND iaid = ${l.iaid} AND mac = ${l.mac}`);
    } else {
      writes.push(
        tx`INSERT INTO leases6 (duid, iaid, mac, ip, expires_at, state, updated_at, server_id)
           VALUES (${l.duid}, ${l.iaid}, ${l.mac}, ${l.ip}, ${l.expiresAt}, ${l.state}, ${now}, ${serverId})
           ON CONFLICT DO NOTHING RETURNING mac`.then((r) => {
          // Another server created this identity's or this address's row meanwhile: decide again.
          if (r.length === 0) throw new LostRace(`DHCPv6 lease row ${k} (${l.ip}) created concurrently`);
        }),
      );
    }
  }
  const settled = await Promise.allSettled(writes);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return outcomes;
}
