/**
 * StoreBackend on PostgreSQL, shared by any number of `pxeherd serve` processes. Each method is
 * one transaction (postgres.js `begin`), retried a bounded number of times when PostgreSQL
 * reports a lost race (unique violation, deadlock, serialization failure): the retry re-reads
 * and sees the winner. How each operation coordinates:
 * - registration: a transaction-scoped advisory lock serializes the registration of new MACs
 *   (rare: once per node's life), so the MAC check, the next name of the pattern and the insert
 *   see every other server's committed registrations; the unique keys on mac and name back it up.
 * - leases: the client's row and the address's row are locked FOR UPDATE; a new row goes in with
 *   ON CONFLICT DO NOTHING, so two servers creating the same client's or the same address's row
 *   cannot both succeed; renewals and releases are conditional UPDATEs.
 * - events: appends take an advisory lock so ids become visible in id order, which lets a reader
 *   page by id (eventsAfter) without missing a late commit; NOTIFY pxeherd_events carries the
 *   highest id as a hint.
 * - boot once: a conditional UPDATE (WHERE boot = 'once'): one server flips it.
 */
import type { BootEvent, Lease, Node } from '../../nodes/types.js';
import { InvalidInput, normalizeMac } from '../../nodes/mac.js';
import { nameError } from '../../nodes/names.js';
import { firstFreeNumber, formatName, numberOf, parseNamePattern, type NamePattern } from '../../nodes/naming.js';
import { evalQuery, parseQuery } from '../../nodes/query.js';
import { compileQuery, POSTGRES_DIALECT } from '../../nodes/query-sql.js';
import { IPV4_RE } from '../../util/net.js';
import { nodeFromRow, type NamingPolicy, type NodeRow } from '../nodes.js';
import { leaseFromRow, type LeaseRow } from '../leases.js';
import { decideClaim, isBootOnceFlip, sqlIdent as ident, type LeaseRequest, type LeaseResult, type RowChange, type RowChangesResult, type StoreBackend, type StoredEvent } from '../backend.js';

export type { RowChange };
import { connectPostgres, type Sql, type TxSql } from './connect.js';
import { EVENTS_LOCK, REGISTER_LOCK } from './schema.js';

export const EVENTS_CHANNEL = 'pxeherd_events';

/** Lost races PostgreSQL reports: unique violation, serialization failure, deadlock. */
const RETRYABLE = new Set(['23505', '40001', '40P01']);
const MAX_ATTEMPTS = 5;

/** A node row with its attributes as one JSON object (NODE_COLUMNS). */
type NodeRowWithAttrs = NodeRow & { attrs_json?: string | null };
const nodeFrom = (r: NodeRowWithAttrs): Node => nodeFromRow(r, r.attrs_json ? (JSON.parse(r.attrs_json) as Record<string, string>) : {});

const NODE_COLUMNS = `nodes.*, (SELECT json_object_agg(a.key, a.value)::text FROM node_attrs a WHERE a.mac = nodes.mac) AS attrs_json`;

export class PostgresBackend implements StoreBackend {
  readonly kind = 'postgres' as const;
  /** Lost races retried (for tests and metrics). */
  retries = 0;

  constructor(
    readonly sql: Sql,
    readonly serverId: string,
  ) {}

  static connect(url: string, serverId: string, o: { max?: number } = {}): PostgresBackend {
    return new PostgresBackend(connectPostgres(url, { max: o.max ?? 10, applicationName: `pxeherd ${serverId}` }), serverId);
  }

  /** One transaction, retried when it lost a race; other errors go to the caller. */
  private async tx<T>(fn: (tx: TxSql) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.sql.begin(fn)) as T;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (!code || !RETRYABLE.has(code) || attempt >= MAX_ATTEMPTS) throw e;
        this.retries++;
      }
    }
  }

  async registerNode(macInput: string, policy: NamingPolicy, opts: { preferredName?: string; ip?: string } = {}) {
    const mac = normalizeMac(macInput);
    const pattern = parseNamePattern(policy.pattern);
    // A known MAC (every boot but the first) needs no lock: one read.
    const known = await this.nodeByMac(mac);
    if (known) return { node: known, created: false };
    if (opts.preferredName && !nameError('node', opts.preferredName)) {
      // A name is proposed (a client's hostname, or the name a server's replica chose): insert it
      // without the registration lock; the unique keys on mac, name and ip decide. Two servers
      // registering one MAC under the same name (the usual case: both saw the same DISCOVER) cost
      // no lock; any conflict falls through to the locked path below, which reads the winner or
      // picks the next free name.
      const fast = await this.tx(async (tx) => {
        const now = Date.now();
        const ip = opts.ip && IPV4_RE.test(opts.ip) ? opts.ip : '';
        const [row] = await tx<NodeRowWithAttrs[]>`
          INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at)
          VALUES (${mac}, ${opts.preferredName!}, ${policy.defaultGroup}, ${policy.defaultVnfs}, 1, 0, '', ${ip}, NULL, 'provision', ${now}, ${now})
          ON CONFLICT DO NOTHING RETURNING *`;
        if (!row) return undefined;
        await this.insertEvents(tx, [{ kind: 'node.register', mac, node: row.name, time: now, detail: { server: this.serverId } }]);
        return { node: nodeFrom(row), created: true };
      });
      if (fast) return fast;
    }
    return this.tx(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${REGISTER_LOCK})`;
      const [existing] = await tx.unsafe<NodeRowWithAttrs[]>(`SELECT ${NODE_COLUMNS} FROM nodes WHERE mac = $1`, [mac]);
      if (existing) return { node: nodeFrom(existing), created: false };
      let name: string | undefined;
      if (opts.preferredName && !nameError('node', opts.preferredName)) {
        const [taken] = await tx`SELECT 1 FROM nodes WHERE name = ${opts.preferredName}`;
        if (!taken) name = opts.preferredName;
      }
      name ??= await this.nextName(tx, pattern, policy.firstNumber);
      let ip = '';
      if (opts.ip && IPV4_RE.test(opts.ip)) {
        const [holder] = await tx`SELECT 1 FROM nodes WHERE ip = ${opts.ip}`;
        if (!holder) ip = opts.ip;
      }
      const now = Date.now();
      const [row] = await tx<NodeRowWithAttrs[]>`
        INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at)
        VALUES (${mac}, ${name}, ${policy.defaultGroup}, ${policy.defaultVnfs}, 1, 0, '', ${ip}, NULL, 'provision', ${now}, ${now})
        RETURNING *`;
      await this.insertEvents(tx, [{ kind: 'node.register', mac, node: name, time: now, detail: { server: this.serverId } }]);
      return { node: nodeFrom(row!), created: true };
    });
  }

  /**
   * The next name of the pattern: the highest one plus one, found through the index (names
   * of one width sort like their numbers); when the highest is the last of the pattern, the
   * first gap. SQLite fills gaps left by deleted nodes first; here names only grow until the
   * pattern is used up (a rescan per registration would not scale to 100 000 nodes).
   */
  private async nextName(tx: TxSql, p: NamePattern, first: number): Promise<string> {
    const top = 10 ** p.width - 1;
    const rows = await tx<{ name: string }[]>`
      SELECT name FROM nodes WHERE name COLLATE "C" >= ${formatName(p, first)} AND name COLLATE "C" <= ${formatName(p, top)}
      ORDER BY name COLLATE "C" DESC LIMIT 64`;
    for (const r of rows) {
      const n = numberOf(p, r.name);
      if (n !== undefined && n >= first) {
        if (n < top) return formatName(p, n + 1);
        break;
      }
    }
    if (rows.length === 0) return formatName(p, first);
    const all = await tx<{ name: string }[]>`SELECT name FROM nodes WHERE name COLLATE "C" >= ${p.prefix} AND name COLLATE "C" < ${p.prefix + '\uffff'}`;
    const n = firstFreeNumber(p, first, all.map((r) => r.name));
    if (n > top) throw new InvalidInput(`no free name left under the pattern (${formatName(p, first)}..${formatName(p, top)})`, 'name');
    return formatName(p, n);
  }

  async nodeByMac(mac: string) {
    const [r] = await this.sql.unsafe<NodeRowWithAttrs[]>(`SELECT ${NODE_COLUMNS} FROM nodes WHERE mac = $1`, [normalizeMac(mac)]);
    return r && nodeFrom(r);
  }

  async listNodes(query?: string) {
    if (!query) return (await this.sql.unsafe<NodeRowWithAttrs[]>(`SELECT ${NODE_COLUMNS} FROM nodes ORDER BY name COLLATE "C"`)).map(nodeFrom);
    const q = parseQuery(query);
    const c = compileQuery(q, POSTGRES_DIALECT);
    const rows = (await this.sql.unsafe<NodeRowWithAttrs[]>(`SELECT ${NODE_COLUMNS} FROM nodes WHERE ${c.sql} ORDER BY name COLLATE "C"`, c.params)).map(nodeFrom);
    return c.exact ? rows : rows.filter((n) => evalQuery(q, n));
  }

  async leaseByMac(mac: string) {
    const [r] = await this.sql<LeaseRow[]>`SELECT * FROM leases WHERE mac = ${normalizeMac(mac)}`;
    return r && leaseFromRow(r);
  }

  private claim(req: LeaseRequest, mode: 'offer' | 'allocate'): Promise<LeaseResult> {
    const mac = normalizeMac(req.mac);
    return this.tx(async (tx): Promise<LeaseResult> => {
      const now = req.now ?? Date.now();
      const [own] = await tx<LeaseRow[]>`SELECT * FROM leases WHERE mac = ${mac} FOR UPDATE`;
      const [atIp] = await tx<LeaseRow[]>`SELECT * FROM leases WHERE ip = ${req.ip} FOR UPDATE`;
      const d = decideClaim(own && leaseFromRow(own), atIp && leaseFromRow(atIp), { ...req, mac }, mode, now);
      if (d.do === 'keep-own') return { ok: true, lease: d.lease };
      if (d.do === 'taken') return { ok: false, reason: 'taken', holder: d.holder };
      if (d.evict) await tx`DELETE FROM leases WHERE mac = ${d.evict} AND ip = ${req.ip}`;
      const lease: Lease = { mac, ip: req.ip, expiresAt: req.expiresAt, hostname: req.hostname ?? '', state: mode === 'offer' ? 'offered' : 'bound', subnet: req.subnet ?? '', updatedAt: now };
      if (own) {
        await tx`UPDATE leases SET ip = ${lease.ip}, expires_at = ${lease.expiresAt}, hostname = ${lease.hostname}, state = ${lease.state},
                 subnet = ${lease.subnet}, updated_at = ${now}, server_id = ${this.serverId} WHERE mac = ${mac}`;
      } else {
        // Not locked (it did not exist): another server may be creating it right now. DO NOTHING
        // + retry: the retry reads the other server's row (and an offer then returns it).
        const ins = await tx`INSERT INTO leases (mac, ip, expires_at, hostname, state, subnet, updated_at, server_id)
          VALUES (${mac}, ${lease.ip}, ${lease.expiresAt}, ${lease.hostname}, ${lease.state}, ${lease.subnet}, ${now}, ${this.serverId})
          ON CONFLICT (mac) DO NOTHING RETURNING mac`;
        if (ins.length === 0) throw Object.assign(new Error('lease row created concurrently'), { code: '40001' });
      }
      return { ok: true, lease };
    });
  }

  offerLease(req: LeaseRequest) {
    return this.claim(req, 'offer');
  }
  allocateLease(req: LeaseRequest) {
    return this.claim(req, 'allocate');
  }

  async renewLease(mac: string, ip: string, expiresAt: number, now = Date.now()) {
    const r = await this.sql`UPDATE leases SET expires_at = ${expiresAt}, updated_at = ${now}, server_id = ${this.serverId}
      WHERE mac = ${normalizeMac(mac)} AND ip = ${ip} AND state = 'bound'`;
    return r.count === 1;
  }

  async releaseLease(mac: string, ip: string, now = Date.now()) {
    const r = await this.sql`UPDATE leases SET state = 'released', expires_at = ${now}, updated_at = ${now}, server_id = ${this.serverId}
      WHERE mac = ${normalizeMac(mac)} AND ip = ${ip} AND state IN ('offered', 'bound')`;
    return r.count === 1;
  }

  /** The client reports `ip` in use by someone else (DHCPDECLINE): the record stays, out of use. */
  async declineLease(mac: string, ip: string, now = Date.now()) {
    const r = await this.sql`UPDATE leases SET state = 'declined', expires_at = ${now}, updated_at = ${now}, server_id = ${this.serverId}
      WHERE mac = ${normalizeMac(mac)} AND ip = ${ip}`;
    return r.count === 1;
  }

  /**
   * A node got `ip` (DHCP ACK): record it and the contact, as NodeRepo.touchAddress does; an
   * address another node has as its own keeps the node's previous one.
   */
  async touchAddress(mac: string, ip: string, now = Date.now()): Promise<void> {
    const m = normalizeMac(mac);
    try {
      const addr = IPV4_RE.test(ip) ? ip : '';
      await this.sql`UPDATE nodes SET ip = CASE WHEN ${addr} <> '' THEN ${addr} ELSE ip END, last_contact = ${now}, updated_at = ${now} WHERE mac = ${m}`;
    } catch (e) {
      if ((e as { code?: string }).code !== '23505') throw e;
      await this.sql`UPDATE nodes SET last_contact = ${now}, updated_at = ${now} WHERE mac = ${m}`;
    }
  }

  async activeLeases(now = Date.now()) {
    const rows = await this.sql<LeaseRow[]>`SELECT * FROM leases WHERE expires_at > ${now} AND state IN ('offered', 'bound') ORDER BY ip`;
    return rows.map(leaseFromRow);
  }

  private async insertEvents(tx: TxSql, events: BootEvent[]): Promise<number[]> {
    if (events.length === 0) return [];
    await tx`SELECT pg_advisory_xact_lock(${EVENTS_LOCK})`;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const rows: Record<string, any>[] = events.map((e) => ({ time: e.time ?? Date.now(), mac: e.mac ?? null, node: e.node ?? null, kind: e.kind, detail: JSON.stringify(e.detail ?? {}), server_id: this.serverId }));
    const ids = (await tx<{ id: number }[]>`INSERT INTO events ${tx(rows, ['time', 'mac', 'node', 'kind', 'detail', 'server_id'])} RETURNING id`).map((r: { id: number }) => r.id).sort((a, b) => a - b);
    await tx`SELECT pg_notify(${EVENTS_CHANNEL}, ${String(ids[ids.length - 1])})`;
    return ids;
  }

  appendEvents(events: BootEvent[]) {
    return this.tx((tx) => this.insertEvents(tx, events));
  }

  async eventsAfter(afterId: number, limit = 1000): Promise<StoredEvent[]> {
    const rows = await this.sql<{ id: number; time: number; mac: string | null; node: string | null; kind: string; detail: string; server_id: string }[]>`
      SELECT id, time, mac, node, kind, detail, server_id FROM events WHERE id > ${afterId} ORDER BY id LIMIT ${limit}`;
    return rows.map((r) => ({ id: r.id, time: r.time, mac: r.mac ?? undefined, node: r.node ?? undefined, kind: r.kind, detail: JSON.parse(r.detail), serverId: r.server_id }));
  }

  async flipBootOnce(mac: string) {
    const r = await this.sql`UPDATE nodes SET boot = 'local', updated_at = ${Date.now()} WHERE mac = ${normalizeMac(mac)} AND boot = 'once'`;
    return r.count === 1;
  }

  /**
   * Rows a server's own code wrote into its replica (src/store/pg/writer.ts), as ONE transaction.
   * A new row is upserted; a changed row gets only its changed columns; a gone row is deleted.
   * `strict` (an admin operation): any refusal fails the whole unit, and a changed row PostgreSQL
   * no longer has is written whole (the operation was validated against it). Otherwise (what
   * nodes report): each row in its own savepoint, a refused one is dropped (its node was deleted
   * meanwhile), an update of a row PostgreSQL no longer has is dropped, and boot once -> local is
   * the boot-once flip: conditional, and reported only to the server whose UPDATE matched.
   */
  async applyRowChanges(changes: RowChange[], o: { strict: boolean }): Promise<RowChangesResult> {
    if (o.strict) return this.rowTx(changes, 'strict');
    // Node reports: one statement per row; only when one is refused (rare: its node was just
    // deleted) again with a savepoint per row, so the refused one alone is dropped.
    try {
      return await this.rowTx(changes, 'plain');
    } catch (e) {
      if (!/^2[23]/.test((e as { code?: string }).code ?? '')) throw e;
      return this.rowTx(changes, 'savepoints');
    }
  }

  /** One transaction of row changes; retried only for deadlocks and serialization failures (a refusal is final). */
  private async rowTx(changes: RowChange[], mode: 'strict' | 'plain' | 'savepoints'): Promise<RowChangesResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.sql.begin((tx) => this.applyRows(tx, changes, mode))) as RowChangesResult;
      } catch (e) {
        const code = (e as { code?: string }).code;
        if ((code !== '40001' && code !== '40P01') || attempt >= MAX_ATTEMPTS) throw e;
        this.retries++;
      }
    }
  }

  private readonly columnTypes = new Map<string, Map<string, string>>();

  /** A table's column types (for json_to_recordset), read once. */
  private async typesOf(tx: TxSql, table: string): Promise<Map<string, string>> {
    let m = this.columnTypes.get(table);
    if (!m) {
      const rows = await tx<{ column_name: string; data_type: string }[]>`
        SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ${table}`;
      m = new Map(rows.map((r) => [r.column_name, r.data_type]));
      this.columnTypes.set(table, m);
    }
    return m;
  }

  private async applyRows(tx: TxSql, changes: RowChange[], mode: 'strict' | 'plain' | 'savepoints'): Promise<RowChangesResult> {
    const o = { strict: mode === 'strict' };
    const out: RowChangesResult = { written: 0, dropped: 0, flipsWon: [], flipsLost: 0 };
    if (mode === 'plain') {
      // A storm's reports are mostly the same columns of many rows (state and contact of 1000
      // nodes): those go first, as one UPDATE per table and column set. A refusal (a row pointing
      // at a parent this batch creates, say) sends the batch to the per-row path with savepoints.
      const groups = new Map<string, RowChange[]>();
      for (const c of changes) {
        if (!c.old || !c.new || isBootOnceFlip(c)) continue;
        const changed = Object.keys(c.new).filter((k) => c.new![k] !== c.old![k]);
        if (changed.length === 0) continue;
        const key = `${c.table}\0${changed.join(',')}`;
        (groups.get(key) ?? groups.set(key, []).get(key)!).push(c);
      }
      const batched = new Set<RowChange>();
      for (const [key, cs] of groups) {
        if (cs.length < 2) continue;
        const [table, cols] = key.split('\0') as [string, string];
        const changed = cols.split(',');
        const pk = cs[0]!.pk;
        const types = await this.typesOf(tx, table);
        const all = [...pk, ...changed];
        if (!all.every((k) => types.has(k))) continue;
        const rows = cs.map((c) => Object.fromEntries([...pk.map((k) => [k, c.old![k]]), ...changed.map((k) => [k, c.new![k]])]));
        const hit = await tx.unsafe(
          `UPDATE ${ident(table)} AS t SET ${changed.map((k) => `${ident(k)} = v.${ident(k)}`).join(', ')}
           FROM json_to_recordset($1::text::json) AS v(${all.map((k) => `${ident(k)} ${types.get(k)}`).join(', ')})
           WHERE ${pk.map((k) => `t.${ident(k)} = v.${ident(k)}`).join(' AND ')} RETURNING 1`,
          [JSON.stringify(rows)],
        );
        out.written += hit.length;
        out.dropped += cs.length - hit.length;
        for (const c of cs) batched.add(c);
      }
      if (batched.size) changes = changes.filter((c) => !batched.has(c));
    }
    for (const c of changes) {
      const one = async (t: TxSql): Promise<boolean> => {
        const where = c.pk.map((k, i) => `${ident(k)} = $${i + 1}`).join(' AND ');
        if (!c.new) {
          await t.unsafe(`DELETE FROM ${ident(c.table)} WHERE ${where}`, c.pk.map((k) => c.old![k]) as never[]);
          return true;
        }
        if (c.old) {
          let changed = Object.keys(c.new).filter((k) => c.new![k] !== c.old![k]);
          if (changed.length === 0) return true;
          if (!o.strict && isBootOnceFlip(c)) {
            const [hit] = await t.unsafe<{ name: string }[]>(`UPDATE nodes SET boot = 'local', updated_at = $2 WHERE mac = $1 AND boot = 'once' RETURNING name`, [c.new.mac as string, Number(c.new.updated_at ?? Date.now())] as never[]);
            if (hit) out.flipsWon.push({ mac: String(c.new.mac), name: hit.name });
            else out.flipsLost++;
            changed = changed.filter((k) => k !== 'boot' && k !== 'updated_at');
            if (changed.length === 0) return true;
          }
          const params = [...c.pk.map((k) => c.old![k]), ...changed.map((k) => c.new![k])];
          const r = await t.unsafe(`UPDATE ${ident(c.table)} SET ${changed.map((k, i) => `${ident(k)} = $${c.pk.length + i + 1}`).join(', ')} WHERE ${where}`, params as never[]);
          if (r.count === 1 || !o.strict) {
            if (r.count === 0) out.dropped++;
            return r.count === 1;
          }
        }
        const cols = Object.keys(c.new);
        const rest = cols.filter((k) => !c.pk.includes(k));
        await t.unsafe(
          `INSERT INTO ${ident(c.table)} (${cols.map(ident).join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) ON CONFLICT (${c.pk.map(ident).join(', ')}) ` +
            (rest.length ? `DO UPDATE SET ${rest.map((k) => `${ident(k)} = excluded.${ident(k)}`).join(', ')}` : 'DO NOTHING'),
          cols.map((k) => c.new![k]) as never[],
        );
        return true;
      };
      if (mode !== 'savepoints') {
        if (await one(tx)) out.written++;
        continue;
      }
      try {
        if (await tx.savepoint((sp) => one(sp as unknown as TxSql))) out.written++;
      } catch (e) {
        const code = (e as { code?: string }).code ?? '';
        // Refused rows (a foreign key: the node is gone; a unique key) are dropped; anything
        // else (the connection) fails the unit, which is retried.
        if (!/^2[23]/.test(code)) throw e;
        out.dropped++;
      }
    }
    return out;
  }

  async close() {
    await this.sql.end({ timeout: 5 });
  }
}
