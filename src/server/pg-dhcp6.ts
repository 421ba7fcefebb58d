/**
 * DHCPv6 when several `pxeherd serve` share one PostgreSQL (issue 19), the counterpart of
 * pg-serve.ts' confirmedDhcpBackend for DHCPv4, with the same pieces:
 * - The handler decides against the local replica as on a single server; every reply that hands
 *   out or gives back an address (Advertise, Reply to Request/Renew/Rebind/rapid commit, Release,
 *   Decline) carries its claims, and a slice's claims go to PostgreSQL in one transaction
 *   (src/store/pg/leases6.ts) before its replies leave. A claim that lost a race (the client
 *   holds another address in the database, the address is another client's, or another server is
 *   writing that client right now) drops that client's reply; its rows are re-read into the
 *   replica and the handler's memory, and the client's retransmission gets the database's answer.
 *   So an address is never handed to two clients, and a client gets the same address from every
 *   server.
 * - Registration of an unknown MAC: the replica registers it as on one server; PostgreSQL's
 *   registerNodes (insert-or-read, the same as DHCPv4's) confirms it before the reply leaves and
 *   records node.register once, for the server that won; a name the database chose otherwise
 *   comes back into the replica.
 * - Every replica follows leases6 through the change log (migration 10); the handler's memory
 *   follows the replica (Dhcp6Handler.reloadMacs), so a server knows the other servers' bindings.
 * - Server identity (RFC 8415): each server keeps its own DUID. A Request, Renew, Release or
 *   Decline naming another server's DUID is ignored (§16: the server MUST discard it), even
 *   though the binding is in the shared database: the client's Renew to a dead server goes
 *   unanswered until T2, then its Rebind (no server identifier) is answered by any server from
 *   the binding in PostgreSQL, and that server's DUID is the one the client renews with next.
 * - Events carry the server id (the event shipper of pg-serve.ts writes them with it).
 * - PostgreSQL unreachable (the replica's last round failed, or a claim times out): a known node
 *   keeps its own bound binding (Advertise, Renew, Rebind of the address it holds), releases and
 *   declines go out; a new registration or a new address waits for the database (counted in
 *   pxeherd_database_paused_total; the replica logs the outage once and reconnects). Renewals
 *   answered meanwhile are held and written with the first slice after it is back.
 */
import type { Dhcp6Backend, Lease6 } from '../dhcp6/backend.js';
import type { Reply6 } from '../dhcp6/handler.js';
import type { Node } from '../nodes/types.js';
import { claimSlice6, lease6Key, type Claim6 } from '../store/pg/leases6.js';
import type { Logger } from '../util/log.js';
import { inTime, isConnectionError, REGISTRATION_WAITS, type PgServe } from './pg-serve.js';
import type { NamingPolicy } from '../store/nodes.js';

export interface PgDhcp6 {
  backend: Dhcp6Backend;
  /** The handler's memory follows what the replica learns of these MACs' DHCPv6 leases. */
  follow(reload: (macs: Set<string>) => void): void;
}

export function coordinatedDhcp6Backend(base: Dhcp6Backend, pgs: Pick<PgServe, 'store' | 'pg' | 'replica' | 'writer' | 'database'>, policy: NamingPolicy, log: Logger): PgDhcp6 {
  const { store, pg, replica } = pgs;
  const isUp = () => pgs.database.up();
  const quiet = <T>(fn: () => T): T => pgs.writer.suspended(fn);
  const reloaders: ((macs: Set<string>) => void)[] = [];
  replica.lease6Listeners.push((macs) => reloaders.forEach((fn) => fn(macs)));
  /** This slice's registrations (MAC -> the node as the replica named it). */
  let registered = new Map<string, Node>();
  /** Each client's DHCPv6 rows and whether it was known, as the replica had them before this slice. */
  let prior = new Map<string, { leases: Lease6[]; known: boolean }>();
  const count = (what: Record<string, number>, k: string) => (what[k] = (what[k] ?? 0) + 1);
  /**
   * Bindings renewed from the replica while the database was away (the latest per identity):
   * written with the next slice once it is back, so PostgreSQL does not let an address the
   * client still holds expire and go to another client.
   */
  const held = new Map<string, Claim6>();

  const backend: Dhcp6Backend = {
    ...base,
    lookupNode(mac, hint) {
      let had = prior.get(mac);
      if (!had) prior.set(mac, (had = { leases: store.leases6.forMac(mac), known: !!store.nodes.nameAndIpByMac(mac) }));
      if (!isUp() && !had.known && !registered.has(mac)) {
        count(pgs.database.paused, 'registration');
        return undefined; // a new MAC waits for the database (its client retransmits)
      }
      const r = quiet(() => base.lookupNode(mac, hint));
      if (r?.registered) registered.set(mac, r.node);
      return r;
    },
    unknownReason: (mac) => (isUp() || prior.get(mac)?.known ? undefined : REGISTRATION_WAITS),
    bound: (mac, ip) => base.bound(mac, ip),
    async confirm(replies: Reply6[]): Promise<Reply6[]> {
      const reg = registered;
      const before = prior;
      registered = new Map();
      prior = new Map();
      const now = Date.now();
      const refused = new Set<string>();
      const nodeKeys = new Set<string>();
      const leaseKeys = new Set<string>();
      const confirmed = new Set<string>();
      let offline: Error | undefined;
      const claims: { mac: string; claim: Claim6 }[] = [];
      for (const r of replies) if (r.mac) for (const c of r.claims ?? []) claims.push({ mac: r.mac, claim: c });

      /** While the database is away: only what the client already holds, and giving back. */
      const ownOffline = (mac: string, c: Claim6) =>
        c.kind === 'release' ||
        c.kind === 'decline' ||
        (before.get(mac)?.leases ?? []).some((l) => lease6Key(l) === lease6Key(c.lease) && l.ip === c.lease.ip && l.state === 'bound' && l.expiresAt > now);
      const goneOffline = (e: Error) => {
        offline = e;
        for (const [mac] of reg) {
          refused.add(mac);
          count(pgs.database.paused, 'registration');
        }
        const byMac = new Map<string, Claim6[]>();
        for (const { mac, claim } of claims) (byMac.get(mac) ?? byMac.set(mac, []).get(mac)!).push(claim);
        for (const [mac, cs] of byMac) {
          if (!reg.has(mac) && cs.every((c) => ownOffline(mac, c))) {
            for (const c of cs) if (c.kind === 'bind') held.set(lease6Key(c.lease), c);
            continue;
          }
          refused.add(mac);
          count(pgs.database.paused, 'lease');
        }
      };

      try {
        if (!isUp()) throw Object.assign(new Error('the database is unreachable'), { code: 'ECONNREFUSED' });
        if (reg.size) {
          const got = await inTime(pg.registerNodes([...reg].map(([mac, n]) => ({ mac, preferredName: n.name })), policy));
          for (const [mac, r] of got) {
            confirmed.add(mac);
            if (r.node.name !== reg.get(mac)?.name) {
              nodeKeys.add(mac); // another server named it first: the database's name wins
              count(pgs.database.races, 'name');
            }
          }
        }
        // Renewals made while the database was away go first (this slice's own claims, later in
        // the same transaction, see them); one that lost meanwhile only re-reads its client.
        const late = [...held.values()].filter((h) => !claims.some((c) => lease6Key(c.claim.lease) === lease6Key(h.lease)));
        if (claims.length || late.length) {
          const res = await inTime(claimSlice6(pg.sql, pg.serverId, [...late, ...claims.map((c) => c.claim)], now));
          held.clear();
          if (res.retries) pgs.database.races.slice6_retry = (pgs.database.races.slice6_retry ?? 0) + res.retries;
          res.outcomes.forEach((o, j) => {
            if (o.ok) return;
            if (j < late.length) {
              if (o.why !== 'busy') leaseKeys.add(late[j]!.lease.mac);
              else held.set(lease6Key(late[j]!.lease), late[j]!); // another server is writing it: next slice
              return;
            }
            const { mac, claim } = claims[j - late.length]!;
            count(pgs.database.races, `dhcp6_${o.why}`);
            log.debug({ mac, ip: claim.lease.ip, why: o.why, holder: o.holder?.mac }, `DHCPv6: ${claim.kind} of ${claim.lease.ip} to ${mac} lost a race in the database (${o.why}): not sent`);
            refused.add(mac);
            leaseKeys.add(mac);
            if (o.holder) leaseKeys.add(o.holder.mac);
          });
        }
      } catch (e) {
        if (isConnectionError(e)) goneOffline(e as Error);
        else {
          log.warn(`DHCPv6: the database refused a slice of ${replies.length} replies, they are not sent: ${(e as Error).message}`);
          for (const r of replies) if (r.mac) refused.add(r.mac);
          for (const mac of [...reg.keys(), ...refused]) {
            nodeKeys.add(mac);
            leaseKeys.add(mac);
          }
        }
      }
      if (offline) void replica.kick(); // notices the outage (its one log line) and reconnects
      // A registration the database did not confirm leaves the replica (else that MAC would look
      // known and never be registered in PostgreSQL); its row comes back from PostgreSQL if another
      // server has it.
      for (const mac of reg.keys()) {
        if (confirmed.has(mac)) continue;
        refused.add(mac);
        quiet(() => store.db.prepare('DELETE FROM nodes WHERE mac = ?').run(mac));
        nodeKeys.add(mac);
      }
      // A refused client's rows go back to what the replica had before this slice (the slice
      // wrote its Reply's binding there): left in place, the next retransmission while the
      // database is away would pass it for a binding PostgreSQL has.
      if (refused.size) {
        quiet(() =>
          store.db.transaction(() => {
            for (const mac of refused) {
              const was = before.get(mac);
              if (!was) continue;
              store.db.prepare('DELETE FROM leases6 WHERE mac = ?').run(mac);
              store.leases6.putMany(was.leases);
            }
          })(),
        );
        reloaders.forEach((fn) => fn(refused));
      }
      if (!offline && (nodeKeys.size || leaseKeys.size)) {
        // The database's rows of the clients that lost a race, into the replica and the handler.
        await inTime(
          replica.refresh(
            new Map([
              ['nodes', nodeKeys],
              ['node_attrs', nodeKeys],
              ['leases6', leaseKeys],
            ]),
          ),
        ).catch(() => undefined); // unreachable now: the next round reloads
      }
      return refused.size ? replies.filter((r) => !r.mac || !refused.has(r.mac)) : replies;
    },
  };
  return { backend, follow: (fn) => reloaders.push(fn) };
}
