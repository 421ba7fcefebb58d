import type { DB } from './db.js';
import type { Lease6 } from '../dhcp6/backend.js';

export interface Lease6Row {
  duid: string;
  iaid: number;
  mac: string;
  ip: string;
  expires_at: number;
  state: Lease6['state'];
  updated_at: number;
}

export const lease6FromRow = (r: Lease6Row): Lease6 => ({ duid: r.duid, iaid: r.iaid, mac: r.mac, ip: r.ip, expiresAt: r.expires_at, state: r.state, updatedAt: r.updated_at });

/** DHCPv6 leases (migration 5), keyed by DUID, IAID and MAC. putMany is one transaction, as for DHCPv4. */
export class Lease6Repo {
  private readonly q;
  constructor(private readonly db: DB) {
    this.q = {
      byKey: db.prepare<[string, number, string], Lease6Row>('SELECT * FROM leases6 WHERE duid = ? AND iaid = ? AND mac = ?'),
      byIp: db.prepare<[string], Lease6Row>('SELECT * FROM leases6 WHERE ip = ?'),
      byDuid: db.prepare<[string], Lease6Row>('SELECT * FROM leases6 WHERE duid = ? ORDER BY updated_at DESC LIMIT 1'),
      byMac: db.prepare<[string], Lease6Row>('SELECT * FROM leases6 WHERE mac = ? ORDER BY updated_at DESC LIMIT 1'),
      forMac: db.prepare<[string], Lease6Row>('SELECT * FROM leases6 WHERE mac = ?'),
      active: db.prepare<[number], Lease6Row>("SELECT * FROM leases6 WHERE expires_at > ? AND state IN ('offered', 'bound') ORDER BY ip"),
      all: db.prepare<[], Lease6Row>('SELECT * FROM leases6 ORDER BY ip'),
      evictIp: db.prepare('DELETE FROM leases6 WHERE ip = ? AND NOT (duid = ? AND iaid = ? AND mac = ?)'),
      upsert: db.prepare(
        `INSERT INTO leases6 (duid, iaid, mac, ip, expires_at, state, updated_at)
         VALUES (@duid, @iaid, @mac, @ip, @expiresAt, @state, @updatedAt)
         ON CONFLICT (duid, iaid, mac) DO UPDATE SET ip = excluded.ip, expires_at = excluded.expires_at,
           state = excluded.state, updated_at = excluded.updated_at`,
      ),
    };
  }
  byKey(duid: string, iaid: number, mac: string): Lease6 | undefined {
    const r = this.q.byKey.get(duid, iaid, mac);
    return r && lease6FromRow(r);
  }
  byIp(ip: string): Lease6 | undefined {
    const r = this.q.byIp.get(ip);
    return r && lease6FromRow(r);
  }
  byDuid(duid: string): Lease6 | undefined {
    const r = this.q.byDuid.get(duid);
    return r && lease6FromRow(r);
  }
  /** The latest DHCPv6 lease of a node (explain, the event sink). */
  byMac(mac: string): Lease6 | undefined {
    const r = this.q.byMac.get(mac);
    return r && lease6FromRow(r);
  }
  forMac(mac: string): Lease6[] {
    return this.q.forMac.all(mac).map(lease6FromRow);
  }
  active(now: number): Lease6[] {
    return this.q.active.all(now).map(lease6FromRow);
  }
  all(): Lease6[] {
    return this.q.all.all().map(lease6FromRow);
  }
  putMany(leases: Lease6[]): void {
    if (leases.length === 0) return;
    this.db.transaction(() => {
      for (const l of leases) {
        this.q.evictIp.run(l.ip, l.duid, l.iaid, l.mac);
        this.q.upsert.run(l);
      }
    })();
  }
}
