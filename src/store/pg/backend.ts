/**
 * StoreBackend on PostgreSQL, shared by any number of `pxeherd serve` processes. Each method is
 * one transaction (postgres.js `begin`), retried a bounded number of times when PostgreSQL
 * reports a lost race (unique violation, deadlock, serialization failure): the retry re-reads
 * and sees the winner. How each operation coordinates:
 * - registration: no lock. A new MAC goes in with INSERT ... ON CONFLICT DO NOTHING under the
 *   name the caller proposes or the next name of the pattern; the unique keys on mac, name and ip
 *   decide between servers. A row that did not go in (the MAC, the name or the address was taken
 *   meanwhile: PostgreSQL makes the insert wait for the other transaction's commit) is retried in
 *   a new transaction, which reads the winner or the next free name (registerNodes: a slice's
 *   registrations in one transaction). Until session 5 a REGISTER_LOCK advisory lock serialized
 *   them, held through each durable commit: two servers in a storm queued behind each other's
 *   fsyncs.
 * - leases: the client's row and the address's row are locked FOR UPDATE; a new row goes in with
 *   ON CONFLICT DO NOTHING, so two servers creating the same client's or the same address's row
 *   cannot both succeed; renewals and releases are conditional UPDATEs.
 * - events: appended without a lock (EVENTS_LOCK is no longer taken): ids come from the identity
 *   sequence, so a transaction may commit after another that got a larger id. The writer takes its
 *   transaction id (pg_current_xact_id()) BEFORE drawing ids, and readers (readEvents) deliver in
 *   id order only what no open transaction can still fill in: see readEvents. NOTIFY
 *   pxeherd_events carries the highest id as a hint.
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
import { decideClaim, isBootOnceFlip, isHashFill, sqlIdent as ident, type LeaseRequest, type LeaseResult, type RowChange, type RowChangesResult, type StoreBackend, type StoredEvent } from '../backend.js';

export type { RowChange };
import { connectPostgres, type Sql, type TxSql } from './connect.js';
import { SLICE_LOCK_CLASS } from './schema.js';
import { REPLICATED } from './replica.js';


export const EVENTS_CHANNEL = 'pxeherd_events';

/** Lost races PostgreSQL reports: unique violation, serialization failure, deadlock. */
const RETRYABLE = new Set(['23505', '40001', '40P01']);
const MAX_ATTEMPTS = 5;
/** Registration rounds (each one transaction) before giving up: each round lost means another server won a row. */
const REGISTER_ROUNDS = 20;
/** How long readEvents waits for the transactions that may still fill a gap in the ids before returning what precedes it. */
const GAP_WAIT_MS = 250;

/** A node row with its attributes as one JSON object (NODE_COLUMNS). */
type NodeRowWithAttrs = NodeRow & { attrs_json?: string | null };
const nodeFrom = (r: NodeRowWithAttrs): Node => nodeFromRow(r, r.attrs_json ? (JSON.parse(r.attrs_json) as Record<string, string>) : {});

const NODE_COLUMNS = `nodes.*, (SELECT json_object_agg(a.key, a.value)::text FROM node_attrs a WHERE a.mac = nodes.mac) AS attrs_json`;

type EventRow = { id: number; time: number; mac: string | null; node: string | null; kind: string; detail: string; server_id: string };
const eventFromRow = (r: EventRow): StoredEvent => ({ id: r.id, time: r.time, mac: r.mac ?? undefined, node: r.node ?? undefined, kind: r.kind, detail: JSON.parse(r.detail), serverId: r.server_id });

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
    // A known MAC (every boot but the first): one read, no transaction.
    const known = await this.nodeByMac(mac);
    if (known) return { node: known, created: false };
    const r = await this.registerNodes([{ mac, preferredName: opts.preferredName, ip: opts.ip }], policy);
    return r.get(mac)!;
  }

  /**
   * Registers these MACs (each known MAC is read back as it is), in as few transactions as the
   * races allow: each round is ONE transaction that reads the MACs PostgreSQL has, names the others
   * (the proposed name when it is free, else the next names of the pattern) and inserts them with
   * ON CONFLICT DO NOTHING. A row that did not go in lost a race to another server (its MAC, its
   * name or its address went in first, and PostgreSQL made this insert wait for that commit
   * rather than holding a lock through it): the next round re-reads and re-names. No advisory
   * lock: two servers registering at once wait only on the rows they both want.
   */
  async registerNodes(items: { mac: string; preferredName?: string; ip?: string }[], policy: NamingPolicy): Promise<Map<string, { node: Node; created: boolean }>> {
    const pattern = parseNamePattern(policy.pattern);
    const out = new Map<string, { node: Node; created: boolean }>();
    let todo = [...new Map(items.map((i) => [normalizeMac(i.mac), { ...i, mac: normalizeMac(i.mac) }])).values()].sort((a, b) => (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0));
    for (let round = 1; todo.length; round++) {
      if (round > REGISTER_ROUNDS) throw Object.assign(new Error(`registration of ${todo.map((t) => t.mac).join(', ')} lost ${REGISTER_ROUNDS} races in a row`), { code: '40001' });
      if (round > 1) this.retries++;
      const done = await this.tx(async (tx) => {
        const got = new Map<string, { node: Node; created: boolean }>();
        const known = await tx.unsafe<NodeRowWithAttrs[]>(`SELECT ${NODE_COLUMNS} FROM nodes WHERE mac = ANY($1::text[])`, [todo.map((t) => t.mac)] as never[]);
        for (const k of known) got.set(k.mac, { node: nodeFrom(k), created: false });
        const fresh = todo.filter((t) => !got.has(t.mac));
        if (!fresh.length) return got;
        const proposed = fresh.map((t) => (t.preferredName && !nameError('node', t.preferredName) ? t.preferredName : undefined));
        const proposedIps = fresh.map((t) => (t.ip && IPV4_RE.test(t.ip) ? t.ip : ''));
        const [takenNames, takenIps] = await Promise.all([
          tx<{ name: string }[]>`SELECT name FROM nodes WHERE name = ANY(${tx.array(proposed.filter((n): n is string => !!n))}::text[])`,
          tx<{ ip: string }[]>`SELECT ip FROM nodes WHERE ip = ANY(${tx.array(proposedIps.filter(Boolean))}::text[])`,
        ]);
        const nameTaken = new Set(takenNames.map((r) => r.name));
        const ipTaken = new Set(takenIps.map((r) => r.ip));
        const unnamed = proposed.filter((n, i) => !n || nameTaken.has(n) || proposed.indexOf(n) !== i).length;
        const names = unnamed ? await this.nextNames(tx, pattern, policy.firstNumber, unnamed, new Set(proposed.filter((n): n is string => !!n))) : [];
        const now = Date.now();
        const rows = fresh.map((t, i) => {
          const p = proposed[i];
          const name = p && !nameTaken.has(p) && proposed.indexOf(p) === i ? p : names.shift()!;
          const ip = proposedIps[i] && !ipTaken.has(proposedIps[i]!) ? proposedIps[i]! : '';
          return { mac: t.mac, name, ip };
        });
        // The advisory locks DHCP slices try (claims.ts) on these MACs and names, taken here in
        // one order, waiting: a slice never waits for them (it leaves its client out), so this
        // insert waits only for rows whose writer is finishing, never in a cycle.
        const keys = [...new Set(rows.flatMap((r) => [`m:${r.mac}`, `n:${r.name}`]))];
        await tx`SELECT pg_advisory_xact_lock(${SLICE_LOCK_CLASS}, h) FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(${tx.array(keys)}::text[]) AS k ORDER BY 1) AS s`;
        const inserted = await tx<NodeRowWithAttrs[]>`
          INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at)
          SELECT m, n, ${policy.defaultGroup}, ${policy.defaultVnfs}, 1, 0, '', a, NULL, 'provision', ${now}, ${now}
          FROM unnest(${tx.array(rows.map((r) => r.mac))}::text[], ${tx.array(rows.map((r) => r.name))}::text[], ${tx.array(rows.map((r) => r.ip))}::text[]) AS t(m, n, a)
          ON CONFLICT DO NOTHING RETURNING *`;
        for (const row of inserted) got.set(row.mac, { node: nodeFrom(row), created: true });
        await this.insertEvents(tx, inserted.map((row) => ({ kind: 'node.register', mac: row.mac, node: row.name, time: now, detail: { server: this.serverId } })));
        return got;
      });
      for (const [m, r] of done) out.set(m, r);
      todo = todo.filter((t) => !out.has(t.mac));
    }
    return out;
  }

  /** `count` names of the pattern after the highest one (see nextName), none of them in `avoid`. */
  private async nextNames(tx: TxSql, p: NamePattern, first: number, count: number, avoid: Set<string>): Promise<string[]> {
    const top = 10 ** p.width - 1;
    const start = await this.nextName(tx, p, first);
    const out: string[] = [];
    for (let n = numberOf(p, start) ?? first; out.length < count; n++) {
      if (n > top) {
        // The end of the pattern: one at a time through the gaps (nextName's rescan).
        if (!out.length) out.push(start);
        break;
      }
      const name = formatName(p, n);
      if (!avoid.has(name)) out.push(name);
    }
    while (out.length < count) out.push(out[out.length - 1]!); // duplicates lose a round: re-named next time
    return out;
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
    // The transaction's id BEFORE the event ids are drawn: readEvents relies on every id being
    // drawn by a transaction whose xid was assigned earlier (a reader that later sees every xid
    // below its bound finished knows no open transaction can still commit a smaller id).
    // No lock: two servers' event appends no longer queue behind each other's durable commits.
    await tx`SELECT pg_current_xact_id()`;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const rows: Record<string, any>[] = events.map((e) => ({ time: e.time ?? Date.now(), mac: e.mac ?? null, node: e.node ?? null, kind: e.kind, detail: JSON.stringify(e.detail ?? {}), server_id: this.serverId }));
    const ids = (await tx<{ id: number }[]>`INSERT INTO events ${tx(rows, ['time', 'mac', 'node', 'kind', 'detail', 'server_id'])} RETURNING id`).map((r: { id: number }) => r.id).sort((a, b) => a - b);
    await tx`SELECT pg_notify(${EVENTS_CHANNEL}, ${String(ids[ids.length - 1])})`;
    return ids;
  }

  appendEvents(events: BootEvent[]) {
    return this.tx((tx) => this.insertEvents(tx, events));
  }

  /** Events after `afterId` in id order, only those no open transaction can still precede (readEvents). */
  async eventsAfter(afterId: number, limit = 1000): Promise<StoredEvent[]> {
    return (await this.readEvents(afterId, limit)).events;
  }

  /**
   * Events after `afterId`, in id order, exactly once across calls that pass the last id
   * delivered, although appends take no lock and may commit out of id order.
   *
   * Why it is safe: ids are drawn from a sequence, each by a transaction that took its xid first
   * (insertEvents). The ids right after `afterId` that are all visible are final: delivered at
   * once. A missing id g before a visible id h was drawn before h, so before this read, by a
   * transaction whose xid was assigned before this read: below R, an xid this reader takes AFTER
   * the read. Once the oldest running xid (pg_snapshot_xmin) is above R, every such transaction
   * has committed or rolled back, and a re-read up to the highest id of the first read is final:
   * what is still missing rolled back (a lost race, a failed statement) and is never delivered.
   * The wait is bounded (`gapWaitMs`): a transaction still open by then (a long one elsewhere)
   * holds back only what follows its gap (`heldBack`); the caller reads again later.
   * (The change log the replicas follow, src/store/pg/replica.ts, needs none of this: it is read
   * by snapshot, rows whose writing xid became visible since the previous snapshot.)
   * Considered and measured against: a column with the writer's xid and reading only below the
   * snapshot's xmin is not enough with an id cursor (a transaction with an older xid can draw a
   * larger id than a younger open one, and a cursor past it would skip the younger one's commit);
   * a commit-ordered outbox needs a second writer (a sequencer) per event and changes the ids
   * clients resume from (SSE Last-Event-ID). This reader costs one xid and a short wait per gap
   * seen, and nothing on the write path.
   */
  async readEvents(afterId: number, limit = 1000, o: { gapWaitMs?: number } = {}): Promise<{ events: StoredEvent[]; heldBack: boolean }> {
    const read = (upTo?: number) => this.sql<EventRow[]>`
      SELECT id, time, mac, node, kind, detail, server_id FROM events
      WHERE id > ${afterId} ${upTo === undefined ? this.sql`` : this.sql`AND id <= ${upTo}`} ORDER BY id LIMIT ${limit}`;
    const rows = await read();
    let n = 0;
    while (n < rows.length && rows[n]!.id === afterId + n + 1) n++;
    if (n === rows.length) return { events: rows.map(eventFromRow), heldBack: false };
    const top = rows[rows.length - 1]!.id;
    // An xid of our own, assigned after the read (asynchronous commit: nothing to make durable).
    const [b] = (await this.sql.begin(async (tx) => {
      await tx`SET LOCAL synchronous_commit TO off`;
      return tx<{ xid: string }[]>`SELECT pg_current_xact_id()::text AS xid`;
    })) as { xid: string }[];
    const deadline = Date.now() + (o.gapWaitMs ?? GAP_WAIT_MS);
    for (let delay = 1; ; delay = Math.min(delay * 2, 25)) {
      const [r] = await this.sql<{ done: boolean }[]>`SELECT pg_snapshot_xmin(pg_current_snapshot()) > ${b!.xid}::xid8 AS done`;
      if (r!.done) break;
      if (Date.now() >= deadline) return { events: rows.slice(0, n).map(eventFromRow), heldBack: true };
      await new Promise((res) => setTimeout(res, delay));
    }
    return { events: (await read(top)).map(eventFromRow), heldBack: false };
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
        if (!c.old || !c.new || isBootOnceFlip(c) || isHashFill(c)) continue;
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
    // An admin's unit (strict) that adds many rows (`node import` of thousands of nodes): each run
    // of new rows goes as one INSERT per table and column set, parents first, not one statement
    // per row; the same unique keys refuse it (the unit fails, 409) as they refuse a row.
    if (o.strict) {
      let run: RowChange[] = [];
      const flush = async () => {
        for (const part of await this.insertBatches(tx, run)) {
          if (part.length > 1) out.written += await this.insertBatch(tx, part);
          else if (await this.applyOne(tx, part[0]!, o, out)) out.written++;
        }
        run = [];
      };
      for (const c of changes) {
        if (c.new && !c.old) {
          run.push(c);
          continue;
        }
        await flush();
        if (await this.applyOne(tx, c, o, out)) out.written++;
      }
      await flush();
      return out;
    }
    for (const c of changes) {
      if (mode !== 'savepoints') {
        if (await this.applyOne(tx, c, o, out)) out.written++;
        continue;
      }
      try {
        if (await tx.savepoint((sp) => this.applyOne(sp as unknown as TxSql, c, o, out))) out.written++;
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

  /**
   * A run of new rows (strict) in statements: parents' tables first (the order of REPLICATED; a
   * run touching another table keeps its order, one row per statement), then per table and
   * column set. A part of one row, or with a primary key twice, or a value JSON cannot carry
   * as is, goes row by row.
   */
  private async insertBatches(tx: TxSql, run: RowChange[]): Promise<RowChange[][]> {
    const rank = new Map(REPLICATED.map((t, i) => [t.table, i]));
    if (run.length < 2 || run.some((c) => !rank.has(c.table))) return run.map((c) => [c]);
    const sorted = [...run].sort((a, b) => rank.get(a.table)! - rank.get(b.table)!); // stable
    const parts = new Map<string, RowChange[]>();
    for (const c of sorted) {
      const key = `${c.table}\0${Object.keys(c.new!).join(',')}`;
      (parts.get(key) ?? parts.set(key, []).get(key)!).push(c);
    }
    const out: RowChange[][] = [];
    for (const part of parts.values()) {
      const first = part[0]!;
      const types = await this.typesOf(tx, first.table);
      const cols = Object.keys(first.new!);
      const pks = new Set(part.map((c) => JSON.stringify(c.pk.map((k) => c.new![k]))));
      const plain = part.every((c) => Object.values(c.new!).every((v) => v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))));
      if (part.length > 1 && pks.size === part.length && plain && cols.every((k) => types.has(k))) out.push(part);
      else for (const c of part) out.push([c]);
    }
    return out;
  }

  /** One INSERT of new rows of one table and column set (see insertBatches); the rows written. */
  private async insertBatch(tx: TxSql, part: RowChange[]): Promise<number> {
    const first = part[0]!;
    const types = await this.typesOf(tx, first.table);
    const cols = Object.keys(first.new!);
    const rest = cols.filter((k) => !first.pk.includes(k));
    // As applyOne: a new node is new (a MAC taken meanwhile is a conflict, never an overwrite).
    const conflict =
      first.table === 'nodes' ? '' : `ON CONFLICT (${first.pk.map(ident).join(', ')}) ` + (rest.length ? `DO UPDATE SET ${rest.map((k) => `${ident(k)} = excluded.${ident(k)}`).join(', ')}` : 'DO NOTHING');
    await tx.unsafe(
      `INSERT INTO ${ident(first.table)} (${cols.map(ident).join(', ')})
       SELECT ${cols.map((k) => `v.${ident(k)}`).join(', ')} FROM json_to_recordset($1::text::json) AS v(${cols.map((k) => `${ident(k)} ${types.get(k)}`).join(', ')}) ${conflict}`,
      [JSON.stringify(part.map((c) => c.new))],
    );
    return part.length;
  }

  /** One row change; false when it changed nothing. */
  private async applyOne(t: TxSql, c: RowChange, o: { strict: boolean }, out: RowChangesResult): Promise<boolean> {
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
      if (!o.strict && isHashFill(c)) {
        // A server's first-use record: only where still unrecorded (see isHashFill); a hash
        // recorded meanwhile wins. (An admin's `vnfs add` is strict: it always writes its hashes.)
        const r = await t.unsafe(
          `UPDATE vnfs SET ${changed.map((k, i) => `${ident(k)} = $${i + 2}`).join(', ')} WHERE name = $1 AND kernel = $${changed.length + 2} AND initrd = $${changed.length + 3} AND ${changed.map((k) => `${ident(k)} IS NULL`).join(' AND ')}`,
          [c.old.name, ...changed.map((k) => c.new![k]), c.old.kernel, c.old.initrd] as never[],
        );
        if (r.count === 0) out.dropped++;
        return r.count === 1;
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
    // An admin's new node is new: a MAC another writer registered meanwhile is a conflict
    // (unique violation: the unit fails, 409), never an overwrite of that node.
    const newNode = o.strict && !c.old && c.table === 'nodes';
    await t.unsafe(
      `INSERT INTO ${ident(c.table)} (${cols.map(ident).join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) ` +
        (newNode ? '' : `ON CONFLICT (${c.pk.map(ident).join(', ')}) ` + (rest.length ? `DO UPDATE SET ${rest.map((k) => `${ident(k)} = excluded.${ident(k)}`).join(', ')}` : 'DO NOTHING')),
      cols.map((k) => c.new![k]) as never[],
    );
    return true;
  }

  async close() {
    await this.sql.end({ timeout: 5 });
  }
}
