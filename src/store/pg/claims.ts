/**
 * One DHCP slice's claims in PostgreSQL in ONE transaction (issue 19): the registrations of the
 * slice's new MACs, the offers and allocations of its replies, its releases and declines. The
 * per-claim path (PostgresBackend.registerNode / offerLease / allocateLease, one transaction
 * each, ~5 round trips and one commit per claim) costs a durable commit per claim; here a slice
 * costs one commit and a handful of round trips whatever its size (postgres.js pipelines the
 * statements a transaction issues without waiting).
 *
 * The same rules as the per-claim path (PostgresBackend, src/store/backend.ts decideClaim):
 * - registration: INSERT ... ON CONFLICT DO NOTHING of the name the replica chose; a MAC whose
 *   row did not go in (known already, or its name or MAC taken by another server meanwhile) is
 *   returned in `unregistered`: the caller resolves them through registerNodes (a read, or a
 *   new name). Each inserted row gets its node.register event in the same transaction.
 * - leases: every lease row of the slice's MACs and addresses is read FOR UPDATE in one
 *   statement; the claims are decided in order against those rows (a later claim of the slice
 *   sees the earlier ones); the resulting rows are written. A row that did not exist cannot be
 *   locked: its INSERT ... ON CONFLICT DO NOTHING names the conflict (another server created the
 *   client's or the address's row meanwhile) and the whole transaction is retried, re-reading.
 * Lost races PostgreSQL reports (unique violation, serialization failure, deadlock) retry the
 * whole transaction a bounded number of times; other errors go to the caller.
 */
import type { Lease } from '../../nodes/types.js';
import { leaseFromRow, type LeaseRow } from '../leases.js';
import { decideClaim } from '../backend.js';
import type { Sql, TxSql } from './connect.js';
import { EVENTS_CHANNEL } from './backend.js';
import { SLICE_LOCK_CLASS } from './schema.js';

export interface SliceRegistration {
  mac: string;
  /** The name the replica gave it. */
  name: string;
}

export interface SliceClaim {
  mac: string;
  kind: 'offer' | 'allocate' | 'release' | 'decline';
  ip: string;
  expiresAt: number;
  hostname?: string;
  subnet?: string;
}

export type ClaimOutcome = { ok: true; lease: Lease } | { ok: false; holder: string };

export interface SliceResult {
  /** Registrations inserted by this transaction (MAC -> name). */
  registered: Map<string, string>;
  /**
   * Registrations that did not go in (their MAC or name was there already, or their proposed
   * name was held by another slice): resolve them with PostgresBackend.registerNodes.
   */
  unregistered: string[];
  /**
   * Clients left out of this slice: a row of theirs (the MAC, the proposed name, a claimed
   * address) is being written by another transaction right now (another server's slice). Their
   * replies are not sent (the other server answers them; a lost race, as Kea drops it).
   */
  busy: Set<string>;
  /** Outcome of each offer/allocate claim, in the order given (undefined for release/decline). */
  outcomes: (ClaimOutcome | undefined)[];
  /** Transactions retried after a lost race. */
  retries: number;
}

const RETRYABLE = new Set(['23505', '40001', '40P01']);

const MAX_ATTEMPTS = 5;

class LostRace extends Error {
  code = '40001';
}

export async function claimSlice(
  sql: Sql,
  serverId: string,
  policy: { defaultGroup: string; defaultVnfs: string },
  regs: SliceRegistration[],
  claims: SliceClaim[],
  now: number,
): Promise<SliceResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      const r = (await sql.begin((tx) => sliceTx(tx, serverId, policy, regs, claims, now))) as Omit<SliceResult, 'retries'>;
      return { ...r, retries: attempt - 1 };
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (!code || !RETRYABLE.has(code) || attempt >= MAX_ATTEMPTS) throw e;
    }
  }
}

async function sliceTx(
  tx: TxSql,
  serverId: string,
  policy: { defaultGroup: string; defaultVnfs: string },
  regs: SliceRegistration[],
  claims: SliceClaim[],
  now: number,
): Promise<Omit<SliceResult, 'retries'>> {
  // Two servers see the same broadcasts, and their replicas name and address new clients on their
  // own: their slices want the same MACs, names and addresses, through two unique keys per table
  // (nodes: mac and name; leases: mac and ip) that no single order can cover. Waiting on the
  // other slice's rows made convoys and deadlocks (found by PostgreSQL after deadlock_timeout,
  // 1 s; a slice past CLAIM_TIMEOUT_MS counts as the database being away). So a slice first
  // TRIES a transaction-scoped advisory lock per key it will write (never waits), and leaves out
  // the clients with a key held elsewhere (`busy`): the other server is answering them right now.
  const wanted = new Map<string, string[]>(); // MAC -> its keys
  const want = (mac: string, key: string) => (wanted.get(mac) ?? wanted.set(mac, [`m:${mac}`]).get(mac)!).push(key);
  for (const r of regs) want(r.mac, `n:${r.name}`);
  for (const c of claims) want(c.mac, c.kind === 'offer' || c.kind === 'allocate' ? `a:${c.ip}` : `m:${c.mac}`);
  // The client's own key (m:MAC) first, and its other keys only once that is this slice's: two
  // servers' slices over the same clients would otherwise each get some of a client's keys and
  // both leave it out (nobody answers it this round). One statement: the join makes each
  // client's m: attempt come before the attempts on its other keys.
  const otherKeys: { mac: string; key: string }[] = [];
  for (const [mac, ks] of wanted) for (const key of new Set(ks)) if (key !== `m:${mac}`) otherKeys.push({ mac, key });
  const clients = [...wanted.keys()];
  const got = clients.length
    ? await tx<{ mac: string; key: string; ok: boolean }[]>`
        WITH own AS (
          SELECT mac, pg_try_advisory_xact_lock(${SLICE_LOCK_CLASS}, hashtext('m:' || mac)) AS ok FROM unnest(${tx.array(clients)}::text[]) AS mac
        ), other AS (
          SELECT k.mac, k.key, pg_try_advisory_xact_lock(${SLICE_LOCK_CLASS}, hashtext(k.key)) AS ok
          FROM unnest(${tx.array(otherKeys.map((k) => k.mac))}::text[], ${tx.array(otherKeys.map((k) => k.key))}::text[]) AS k(mac, key)
          JOIN own ON own.mac = k.mac AND own.ok
        )
        SELECT mac, 'm:' || mac AS key, ok FROM own UNION ALL SELECT mac, key, ok FROM other`
    : [];
  // A proposed name another slice holds is not the client's own business: two servers' replicas
  // name DIFFERENT new MACs alike (the same next name of the pattern), which `answer: balanced`
  // does all the time. That registration leaves this slice (the caller registers it with the
  // next free name, registerNodes) and the client's other claims go on; only its MAC or address
  // held elsewhere makes it busy.
  const nameHeld = new Set(got.filter((r) => !r.ok && r.key.startsWith('n:')).map((r) => r.mac));
  const busy = new Set(got.filter((r) => !r.ok && !r.key.startsWith('n:')).map((r) => r.mac));
  const allClaims = claims;
  if (busy.size || nameHeld.size) {
    regs = regs.filter((r) => !busy.has(r.mac) && !nameHeld.has(r.mac));
    claims = claims.filter((c) => !busy.has(c.mac));
  }
  // Rows are written in MAC order (and locked in address order) by every server.
  regs = [...regs].sort((a, b) => (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0));
  const macs = [...new Set(claims.map((c) => c.mac))];
  const ips = [...new Set(claims.map((c) => c.ip))];
  // First round trip (pipelined): the registrations and the lease rows to decide on.
  const inserted = regs.length
    ? tx<{ mac: string; name: string }[]>`
        INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at)
        SELECT m, n, ${policy.defaultGroup}, ${policy.defaultVnfs}, 1, 0, '', '', NULL, 'provision', ${now}, ${now}
        FROM unnest(${tx.array(regs.map((r) => r.mac))}::text[], ${tx.array(regs.map((r) => r.name))}::text[]) AS t(m, n)
        ON CONFLICT DO NOTHING RETURNING mac, name`
    : Promise.resolve([] as { mac: string; name: string }[]);
  // Locked in address order, as every server does: two slices wait for each other, never deadlock
  // (a deadlock would still only cost a retry).
  const locked = claims.length
    ? tx<LeaseRow[]>`SELECT * FROM leases WHERE mac = ANY(${tx.array(macs)}::text[]) OR ip = ANY(${tx.array(ips)}::text[]) ORDER BY ip FOR UPDATE`
    : Promise.resolve([] as LeaseRow[]);
  const [rows, lockedRows] = await Promise.all([inserted, locked]);

  const registered = new Map(rows.map((r) => [r.mac, r.name]));
  const unregistered = [...regs.filter((r) => !registered.has(r.mac)).map((r) => r.mac), ...[...nameHeld].filter((m) => !busy.has(m))];

  // Decide each claim against the locked rows, in order.
  const byMac = new Map<string, Lease>();
  const existed = new Set<string>();
  for (const row of lockedRows) {
    const l = leaseFromRow(row);
    byMac.set(l.mac, l);
    existed.add(l.mac);
  }
  const holderOf = (ip: string) => {
    for (const l of byMac.values()) if (l.ip === ip) return l;
    return undefined;
  };
  const evicted = new Set<string>();
  const dirty = new Set<string>();
  const outcomes: (ClaimOutcome | undefined)[] = [];
  for (const c of claims) {
    const own = byMac.get(c.mac);
    if (c.kind === 'release' || c.kind === 'decline') {
      outcomes.push(undefined);
      // As releaseLease / declineLease: only the client's own record of that address changes.
      if (own && own.ip === c.ip && (c.kind === 'decline' || own.state === 'offered' || own.state === 'bound')) {
        byMac.set(c.mac, { ...own, state: c.kind === 'release' ? 'released' : 'declined', expiresAt: now, updatedAt: now });
        dirty.add(c.mac);
      }
      continue;
    }
    const atIp = holderOf(c.ip);
    const d = decideClaim(own, atIp, { mac: c.mac, ip: c.ip, expiresAt: c.expiresAt, hostname: c.hostname, subnet: c.subnet, now }, c.kind, now);
    if (d.do === 'keep-own') {
      outcomes.push({ ok: true, lease: d.lease });
      continue;
    }
    if (d.do === 'taken') {
      outcomes.push({ ok: false, holder: d.holder });
      continue;
    }
    if (d.evict) {
      byMac.delete(d.evict);
      dirty.delete(d.evict);
      evicted.add(d.evict);
    }
    const lease: Lease = { mac: c.mac, ip: c.ip, expiresAt: c.expiresAt, hostname: c.hostname ?? '', state: c.kind === 'offer' ? 'offered' : 'bound', subnet: c.subnet ?? '', updatedAt: now };
    byMac.set(c.mac, lease);
    dirty.add(c.mac);
    outcomes.push({ ok: true, lease });
  }

  // Second round trip (pipelined): the writes, evictions first (an address moves to its new client).
  const writes: Promise<unknown>[] = [];
  const gone = [...evicted].filter((m) => !byMac.has(m));
  if (gone.length) writes.push(tx`DELETE FROM leases WHERE mac = ANY(${tx.array(gone)}::text[])`);
  // (An address moving from one row to another within one slice can hit the unique key on ip
  // mid-way: that retries, and after the last attempt the caller falls back to one claim at a time.)
  // One statement for the rows that existed and one for the new ones, whatever the slice's size
  // (a statement per row made PostgreSQL's CPU per slice grow with it).
  const changed = [...dirty].sort().map((m) => byMac.get(m)!);
  const cols = (ls: Lease[]) => [
    tx.array(ls.map((l) => l.mac)),
    tx.array(ls.map((l) => l.ip)),
    tx.array(ls.map((l) => l.expiresAt)),
    tx.array(ls.map((l) => l.hostname)),
    tx.array(ls.map((l) => l.state)),
    tx.array(ls.map((l) => l.subnet)),
  ];
  const updated = changed.filter((l) => existed.has(l.mac));
  const created = changed.filter((l) => !existed.has(l.mac));
  if (updated.length) {
    const [m, ip, exp, host, st, sub] = cols(updated);
    writes.push(tx`UPDATE leases SET ip = t.ip, expires_at = t.exp, hostname = t.host, state = t.st, subnet = t.sub, updated_at = ${now}, server_id = ${serverId}
                   FROM unnest(${m}::text[], ${ip}::text[], ${exp}::bigint[], ${host}::text[], ${st}::text[], ${sub}::text[]) AS t(mac, ip, exp, host, st, sub)
                   WHERE leases.mac = t.mac`);
  }
  if (created.length) {
    const [m, ip, exp, host, st, sub] = cols(created);
    writes.push(
      tx<{ mac: string }[]>`INSERT INTO leases (mac, ip, expires_at, hostname, state, subnet, updated_at, server_id)
         SELECT mac, ip, exp, host, st, sub, ${now}, ${serverId}
         FROM unnest(${m}::text[], ${ip}::text[], ${exp}::bigint[], ${host}::text[], ${st}::text[], ${sub}::text[]) AS t(mac, ip, exp, host, st, sub)
         ON CONFLICT DO NOTHING RETURNING mac`.then((r) => {
        // Another server created a client's or an address's row meanwhile: decide again.
        if (r.length !== created.length) {
          const got = new Set(r.map((x) => x.mac));
          const l = created.find((x) => !got.has(x.mac))!;
          throw new LostRace(`lease row of ${l.mac} (${l.ip}) created concurrently`);
        }
      }),
    );
  }
  if (registered.size) {
    // No lock (see PostgresBackend.readEvents): the xid first (the nodes INSERT above assigned it
    // already; explicit, as readEvents relies on it), then the ids.
    writes.push(tx`SELECT pg_current_xact_id()`);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const evs: Record<string, any>[] = [...registered].map(([mac, name]) => ({ time: now, mac, node: name, kind: 'node.register', detail: JSON.stringify({ server: serverId }), server_id: serverId }));
    writes.push(
      tx<{ id: number }[]>`INSERT INTO events ${tx(evs, ['time', 'mac', 'node', 'kind', 'detail', 'server_id'])} RETURNING id`.then((ids: { id: number }[]) =>
        tx`SELECT pg_notify(${EVENTS_CHANNEL}, ${String(Math.max(...ids.map((i) => i.id)))})`,
      ),
    );
  }
  // Every write settles before the first failure is rethrown: the transaction ends cleanly.
  const settled = await Promise.allSettled(writes);
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  // The outcomes in the caller's order; a busy client's claims lost their race.
  let i = 0;
  const all = allClaims.map((c) => (busy.has(c.mac) ? (c.kind === 'offer' || c.kind === 'allocate' ? { ok: false as const, holder: c.mac } : undefined) : outcomes[i++]));
  return { registered, unregistered, outcomes: all, busy };
}

/** Claims whose client is retried when another server's slice holds it: no other server answers them. */
const FINISHING: ReadonlySet<SliceClaim['kind']> = new Set(['allocate', 'release', 'decline']);

/**
 * claimSlice, then the clients it left out as `busy` that only this server can finish — a
 * REQUEST naming this server (allocate), a RELEASE, a DECLINE — again in later transactions
 * (up to `attempts` more, `waitMs` × attempt apart: the other server's slice holds their keys
 * for its transaction only). Without it a busy client's RELEASE or DECLINE was lost (the lease
 * waited for its expiry) and its ACK waited for the client's retransmission. A busy client with
 * an offer only stays busy: the server holding it answers its DISCOVER.
 */
export async function claimSliceFinishingBusy(
  sql: Sql,
  serverId: string,
  policy: { defaultGroup: string; defaultVnfs: string },
  regs: SliceRegistration[],
  claims: SliceClaim[],
  now: number,
  o: { attempts?: number; waitMs?: number } = {},
): Promise<SliceResult & { busyRetried: number }> {
  const res = await claimSlice(sql, serverId, policy, regs, claims, now);
  const out = { ...res, registered: new Map(res.registered), busy: new Set(res.busy), outcomes: [...res.outcomes], busyRetried: 0 };
  const attempts = o.attempts ?? 3;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const again = new Set(claims.filter((c) => out.busy.has(c.mac) && FINISHING.has(c.kind)).map((c) => c.mac));
    if (!again.size) break;
    await new Promise((r) => setTimeout(r, (o.waitMs ?? 50) * attempt));
    out.busyRetried += again.size;
    const idx = claims.flatMap((c, i) => (again.has(c.mac) ? [i] : []));
    const r = await claimSlice(sql, serverId, policy, regs.filter((x) => again.has(x.mac)), idx.map((i) => claims[i]!), now);
    out.retries += r.retries;
    for (const [mac, name] of r.registered) out.registered.set(mac, name);
    out.unregistered = [...out.unregistered.filter((m) => !again.has(m)), ...r.unregistered];
    for (const mac of again) if (!r.busy.has(mac)) out.busy.delete(mac);
    idx.forEach((i, j) => (out.outcomes[i] = r.outcomes[j]));
  }
  return out;
}

/**
 * The addresses and last contact of ACKed nodes, in one statement (as
 * PostgresBackend.touchAddress, one per ACK): an address another node holds as its own leaves
 * the node's previous one. Each touch carries its own time (a later one never goes back).
 * `whileBound`: only where the node's lease in the database is still that address, bound (a
 * touch held through an outage and written afterwards: the lease may have moved meanwhile).
 */
export async function touchAddresses(sql: Sql, touches: { mac: string; ip: string; now: number }[], o: { whileBound?: boolean } = {}): Promise<void> {
  if (!touches.length) return;
  await sql`
    UPDATE nodes SET
      ip = CASE WHEN NOT EXISTS (SELECT 1 FROM nodes o WHERE o.ip = t.ip AND o.mac <> nodes.mac) THEN t.ip ELSE nodes.ip END,
      last_contact = GREATEST(COALESCE(nodes.last_contact, 0), t.now), updated_at = GREATEST(nodes.updated_at, t.now)
    FROM unnest(${sql.array(touches.map((b) => b.mac))}::text[], ${sql.array(touches.map((b) => b.ip))}::text[], ${sql.array(touches.map((b) => b.now))}::bigint[]) AS t(mac, ip, now)
    WHERE nodes.mac = t.mac
      AND (${!!o.whileBound}::boolean IS FALSE OR EXISTS (SELECT 1 FROM leases l WHERE l.mac = t.mac AND l.ip = t.ip AND l.state = 'bound'))`;
}
