import type { DB } from './db.js';
import type { Lease } from '../nodes/types.js';

/** A row of `leases`, on SQLite and PostgreSQL alike. */
export interface LeaseRow {
  mac: string;
  ip: string;
  expires_at: number;
  hostname: string;
  state: Lease['state'];
  subnet: string;
  updated_at: number;
}

export const leaseFromRow = (r: LeaseRow): Lease => ({
  mac: r.mac,
  ip: r.ip,
  expiresAt: r.expires_at,
  hostname: r.hostname,
  state: r.state,
  subnet: r.subnet,
  updatedAt: r.updated_at,
});

/** DHCP leases. putMany is one transaction: the DHCP server batches the ACKs of one turn into it. */
export class LeaseRepo {
  private readonly q;
  constructor(
    private readonly db: DB,
    /** Written on every lease (migration 6): which server handed it out. */
    readonly serverId = '',
  ) {
    this.q = {
      byMac: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE mac = ?'),
      byIp: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE ip = ?'),
      active: db.prepare<[number], LeaseRow>("SELECT * FROM leases WHERE expires_at > ? AND state IN ('offered', 'bound') ORDER BY ip"),
      all: db.prepare<[], LeaseRow>('SELECT * FROM leases ORDER BY ip'),
      // An address belongs to one MAC: a new holder evicts the old row for that address.
      evictIp: db.prepare('DELETE FROM leases WHERE ip = ? AND mac <> ?'),
      upsert: db.prepare(
        `INSERT INTO leases (mac, ip, expires_at, hostname, state, subnet, updated_at, server_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, expires_at = excluded.expires_at, hostname = excluded.hostname,
           state = excluded.state, subnet = excluded.subnet, updated_at = excluded.updated_at, server_id = excluded.server_id`,
      ),
    };
    this.writeMany = db.transaction((leases: Lease[]) => {
      for (const l of leases) {
        this.q.evictIp.run(l.ip, l.mac);
        this.q.upsert.run(l.mac, l.ip, l.expiresAt, l.hostname, l.state, l.subnet, l.updatedAt, this.serverId);
      }
    });
  }

  byMac(mac: string): Lease | undefined {
    const r = this.q.byMac.get(mac);
    return r && leaseFromRow(r);
  }
  byIp(ip: string): Lease | undefined {
    const r = this.q.byIp.get(ip);
    return r && leaseFromRow(r);
  }
  active(now: number): Lease[] {
    return this.q.active.all(now).map(leaseFromRow);
  }
  all(): Lease[] {
    return this.q.all.all().map(leaseFromRow);
  }
  putMany(leases: Lease[]): void {
    if (leases.length === 0) return;
    this.writeMany(leases);
  }
  /** Built once (the DHCP server calls putMany for every slice of ACKs). */
  private readonly writeMany;
}
