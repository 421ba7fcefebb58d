/**
 * StoreBackend over the synchronous SQLite store: each method is one IMMEDIATE transaction on
 * the same connection the rest of the server uses, answered at once (no thread, no pool). The
 * synchronous API stays the fast path for `serve`; this exists so code written against
 * StoreBackend runs on SQLite unchanged.
 */
import type { BootEvent, Lease } from '../nodes/types.js';
import { normalizeMac } from '../nodes/mac.js';
import { evalQuery, parseQuery } from '../nodes/query.js';
import { compileQuery } from '../nodes/query-sql.js';
import type { Store } from './store.js';
import { leaseFromRow, type LeaseRow } from './leases.js';
import type { NamingPolicy } from './nodes.js';
import { decideClaim, isBootOnceFlip, sqlIdent as ident, type LeaseRequest, type LeaseResult, type RowChange, type RowChangesResult, type StoreBackend, type StoredEvent } from './backend.js';

export class SqliteBackend implements StoreBackend {
  readonly kind = 'sqlite' as const;
  readonly serverId: string;
  private readonly q;

  constructor(private readonly store: Store) {
    this.serverId = store.serverId;
    const db = store.db;
    this.q = {
      leaseByMac: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE mac = ?'),
      leaseByIp: db.prepare<[string], LeaseRow>('SELECT * FROM leases WHERE ip = ?'),
      delLease: db.prepare('DELETE FROM leases WHERE mac = ?'),
      upsertLease: db.prepare(
        `INSERT INTO leases (mac, ip, expires_at, hostname, state, subnet, updated_at, server_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, expires_at = excluded.expires_at, hostname = excluded.hostname,
           state = excluded.state, subnet = excluded.subnet, updated_at = excluded.updated_at, server_id = excluded.server_id`,
      ),
      renew: db.prepare("UPDATE leases SET expires_at = ?, updated_at = ?, server_id = ? WHERE mac = ? AND ip = ? AND state = 'bound'"),
      release: db.prepare("UPDATE leases SET state = 'released', expires_at = ?, updated_at = ?, server_id = ? WHERE mac = ? AND ip = ? AND state IN ('offered', 'bound')"),
      insertEvent: db.prepare('INSERT INTO events (time, mac, node, kind, detail, server_id) VALUES (?, ?, ?, ?, ?, ?)'),
      after: db.prepare<[number, number], { id: number; time: number; mac: string | null; node: string | null; kind: string; detail: string; server_id: string }>(
        'SELECT id, time, mac, node, kind, detail, server_id FROM events WHERE id > ? ORDER BY id LIMIT ?',
      ),
      flip: db.prepare("UPDATE nodes SET boot = 'local', updated_at = ? WHERE mac = ? AND boot = 'once'"),
    };
  }

  async registerNode(mac: string, policy: NamingPolicy, opts: { preferredName?: string; ip?: string } = {}) {
    return this.store.db
      .transaction(() => {
        const r = this.store.nodes.register(mac, policy, opts);
        if (r.created) this.insertEvents([{ kind: 'node.register', mac: r.node.mac, node: r.node.name, detail: { server: this.serverId } }]);
        return r;
      })
      .immediate();
  }

  async nodeByMac(mac: string) {
    return this.store.nodes.byMac(normalizeMac(mac));
  }

  async listNodes(query?: string) {
    if (!query) return this.store.nodes.all();
    const q = parseQuery(query);
    const c = compileQuery(q);
    const rows = this.store.nodes.where(c.sql, c.params);
    return c.exact ? rows : rows.filter((n) => evalQuery(q, n));
  }

  async leaseByMac(mac: string) {
    const r = this.q.leaseByMac.get(normalizeMac(mac));
    return r && leaseFromRow(r);
  }

  private claim(req: LeaseRequest, mode: 'offer' | 'allocate'): LeaseResult {
    const now = req.now ?? Date.now();
    const mac = normalizeMac(req.mac);
    return this.store.db
      .transaction((): LeaseResult => {
        const ownRow = this.q.leaseByMac.get(mac);
        const ipRow = this.q.leaseByIp.get(req.ip);
        const d = decideClaim(ownRow && leaseFromRow(ownRow), ipRow && leaseFromRow(ipRow), { ...req, mac }, mode, now);
        if (d.do === 'keep-own') return { ok: true, lease: d.lease };
        if (d.do === 'taken') return { ok: false, reason: 'taken', holder: d.holder };
        if (d.evict) this.q.delLease.run(d.evict);
        const lease: Lease = { mac, ip: req.ip, expiresAt: req.expiresAt, hostname: req.hostname ?? '', state: mode === 'offer' ? 'offered' : 'bound', subnet: req.subnet ?? '', updatedAt: now };
        this.q.upsertLease.run(lease.mac, lease.ip, lease.expiresAt, lease.hostname, lease.state, lease.subnet, lease.updatedAt, this.serverId);
        return { ok: true, lease };
      })
      .immediate();
  }

  async offerLease(req: LeaseRequest) {
    return this.claim(req, 'offer');
  }
  async allocateLease(req: LeaseRequest) {
    return this.claim(req, 'allocate');
  }
  async renewLease(mac: string, ip: string, expiresAt: number, now = Date.now()) {
    return this.q.renew.run(expiresAt, now, this.serverId, normalizeMac(mac), ip).changes === 1;
  }
  async releaseLease(mac: string, ip: string, now = Date.now()) {
    return this.q.release.run(now, now, this.serverId, normalizeMac(mac), ip).changes === 1;
  }
  async activeLeases(now = Date.now()) {
    return this.store.leases.active(now);
  }

  private insertEvents(events: BootEvent[]): number[] {
    return events.map((e) => Number(this.q.insertEvent.run(e.time ?? Date.now(), e.mac ?? null, e.node ?? null, e.kind, JSON.stringify(e.detail ?? {}), this.serverId).lastInsertRowid));
  }

  async appendEvents(events: BootEvent[]) {
    this.store.events.flush(); // queued events first: ids follow the order they happened in
    return this.store.db.transaction(() => this.insertEvents(events))();
  }

  async eventsAfter(afterId: number, limit = 1000): Promise<StoredEvent[]> {
    this.store.events.flush();
    return this.q.after.all(afterId, limit).map((r) => ({ id: r.id, time: r.time, mac: r.mac ?? undefined, node: r.node ?? undefined, kind: r.kind, detail: JSON.parse(r.detail), serverId: r.server_id }));
  }

  async flipBootOnce(mac: string) {
    return this.q.flip.run(Date.now(), normalizeMac(mac)).changes === 1;
  }

  async applyRowChanges(changes: RowChange[], o: { strict: boolean }): Promise<RowChangesResult> {
    const db = this.store.db;
    const out: RowChangesResult = { written: 0, dropped: 0, flipsWon: [], flipsLost: 0 };
    const one = (c: RowChange): boolean => {
      const where = c.pk.map((k) => `${ident(k)} = ?`).join(' AND ');
      const pkOld = c.pk.map((k) => c.old?.[k]);
      if (!c.new) {
        db.prepare(`DELETE FROM ${ident(c.table)} WHERE ${where}`).run(...pkOld);
        return true;
      }
      if (c.old) {
        let changed = Object.keys(c.new).filter((k) => c.new![k] !== c.old![k]);
        if (changed.length === 0) return true;
        if (!o.strict && isBootOnceFlip(c)) {
          const hit = db.prepare<[number, string], { name: string }>(`UPDATE nodes SET boot = 'local', updated_at = ? WHERE mac = ? AND boot = 'once' RETURNING name`).get(Number(c.new.updated_at ?? Date.now()), String(c.new.mac));
          if (hit) out.flipsWon.push({ mac: String(c.new.mac), name: hit.name });
          else out.flipsLost++;
          changed = changed.filter((k) => k !== 'boot' && k !== 'updated_at');
          if (changed.length === 0) return true;
        }
        const r = db.prepare(`UPDATE ${ident(c.table)} SET ${changed.map((k) => `${ident(k)} = ?`).join(', ')} WHERE ${where}`).run(...changed.map((k) => c.new![k]), ...pkOld);
        if (r.changes === 1 || !o.strict) {
          if (r.changes === 0) out.dropped++;
          return r.changes === 1;
        }
      }
      const cols = Object.keys(c.new);
      const rest = cols.filter((k) => !c.pk.includes(k));
      db.prepare(
        `INSERT INTO ${ident(c.table)} (${cols.map(ident).join(', ')}) VALUES (${cols.map(() => '?').join(', ')}) ON CONFLICT (${c.pk.map(ident).join(', ')}) ` +
          (rest.length ? `DO UPDATE SET ${rest.map((k) => `${ident(k)} = excluded.${ident(k)}`).join(', ')}` : 'DO NOTHING'),
      ).run(...cols.map((k) => c.new![k] as never));
      return true;
    };
    db.transaction(() => {
      for (const c of changes) {
        if (o.strict) {
          if (one(c)) out.written++;
          continue;
        }
        try {
          if (db.transaction(() => one(c))()) out.written++; // a savepoint: a refused row goes alone
        } catch (e) {
          if (!/^SQLITE_CONSTRAINT/.test((e as { code?: string }).code ?? '')) throw e;
          out.dropped++;
        }
      }
    }).immediate();
    return out;
  }

  async close() {
    this.store.close();
  }
}
