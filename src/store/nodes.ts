import type { DB } from './db.js';
import type { Statement, Transaction } from 'better-sqlite3';
import type { BootMode, Node } from '../nodes/types.js';
import { BOOT_MODES } from '../nodes/types.js';
import { InvalidInput, normalizeMac } from '../nodes/mac.js';
import { validateAttrKey, validateName } from '../nodes/names.js';
import { validateInstallAttr } from '../install/plan.js';
import { firstFreeNumber, formatName, numberOf as numberOfName, parseNamePattern, type NamePattern } from '../nodes/naming.js';
import { NotFound } from '../nodes/select.js';
import { IPV4_RE } from '../util/net.js';
import { vnfsRefError } from '../images/resolve.js';

/** A node's vnfs field: NAME, or NAME@REV to pin a revision. */
function validateVnfsRef(ref: string): void {
  const err = vnfsRefError(ref);
  if (err) throw new InvalidInput(err, 'vnfs');
}

/** A row of `nodes`, on SQLite and PostgreSQL alike. */
export interface NodeRow {
  mac: string;
  name: string;
  grp: string;
  vnfs: string;
  enabled: number;
  debug: number;
  state: string;
  ip: string;
  last_contact: number | null;
  boot: BootMode;
  created_at: number;
  updated_at: number;
}

/** The columns NodeRepo.where reads, in the order of WhereRow. */
const WHERE_COLUMNS = ['mac', 'name', 'grp', 'vnfs', 'enabled', 'debug', 'state', 'ip', 'last_contact', 'boot', 'created_at', 'updated_at'];
type WhereRow = [string, string, string, string, number, number, string, string, number | null, BootMode, number, number, Record<string, string>];

const byName = (a: Node, b: Node) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** A node from its row and its attributes. */
export function nodeFromRow(r: NodeRow, attrs: Record<string, string>): Node {
  return {
    mac: r.mac,
    name: r.name,
    group: r.grp,
    vnfs: r.vnfs,
    enabled: r.enabled === 1,
    debug: r.debug === 1,
    state: r.state,
    ip: r.ip,
    lastContact: r.last_contact,
    boot: r.boot,
    attrs,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export interface NewNode {
  mac: string;
  name?: string;
  group?: string;
  vnfs?: string;
  ip?: string;
  enabled?: boolean;
  debug?: boolean;
  boot?: BootMode;
  attrs?: Record<string, string>;
}

export interface NamingPolicy {
  pattern: string;
  firstNumber: number;
  defaultGroup: string;
  defaultVnfs: string;
}

/** Fields `node set` may change; anything else is an attribute written as attr.KEY. */
export const NODE_FIELDS = ['name', 'group', 'vnfs', 'ip', 'enabled', 'debug', 'boot', 'state'] as const;
export type NodeField = (typeof NODE_FIELDS)[number];

/** meta key: names of the pattern have no gaps (see nextName). */
const GAPLESS = 'naming_gapless';


export function validateIp(ip: string): string {
  if (ip !== '' && !IPV4_RE.test(ip)) throw new InvalidInput(`invalid IPv4 address "${ip}"`, 'ip');
  return ip;
}

export function parseBool(field: string, v: string | boolean): boolean {
  if (typeof v === 'boolean') return v;
  const s = v.toLowerCase();
  if (['1', 'yes', 'true', 'on'].includes(s)) return true;
  if (['0', 'no', 'false', 'off'].includes(s)) return false;
  throw new InvalidInput(`${field} must be yes/no (or 1/0, true/false), not "${v}"`, field);
}

export function parseBootMode(v: string): BootMode {
  if (!(BOOT_MODES as readonly string[]).includes(v)) {
    throw new InvalidInput(`boot mode must be one of ${BOOT_MODES.join(', ')}, not "${v}"`, 'boot');
  }
  return v as BootMode;
}

/**
 * Nodes and their attributes. Every multi-row change runs in one transaction; name
 * allocation runs in an IMMEDIATE transaction so two processes registering at the same
 * moment serialize on SQLite's write lock and can never pick the same name.
 */
export class NodeRepo {
  private readonly q;
  constructor(private readonly db: DB) {
    this.q = {
      byMac: db.prepare<[string], NodeRow>('SELECT * FROM nodes WHERE mac = ?'),
      byName: db.prepare<[string], NodeRow>('SELECT * FROM nodes WHERE name = ?'),
      nameByMac: db.prepare<[string], string>('SELECT name FROM nodes WHERE mac = ?').pluck(),
      nameAndIpByMac: db.prepare<[string], { name: string; ip: string }>('SELECT name, ip FROM nodes WHERE mac = ?'),
      macByIp: db.prepare<[string], string>("SELECT mac FROM nodes WHERE ip = ? AND ip <> ''").pluck(),
      byIp: db.prepare<[string], NodeRow>("SELECT * FROM nodes WHERE ip = ? AND ip <> ''"),
      attrsOf: db.prepare<[string], { key: string; value: string }>('SELECT key, value FROM node_attrs WHERE mac = ? ORDER BY key'),
      insert: db.prepare(
        `INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at)
         VALUES (@mac, @name, @grp, @vnfs, @enabled, @debug, '', @ip, NULL, @boot, @now, @now)`,
      ),
      // Registration's insert: a MAC that is a node already changes nothing (0 changes). Only
      // the MAC's conflict is absorbed; a taken name or address still fails.
      insertNew: db.prepare(
        `INSERT INTO nodes (mac, name, grp, vnfs, enabled, debug, state, ip, last_contact, boot, created_at, updated_at)
         VALUES (@mac, @name, @grp, @vnfs, @enabled, @debug, '', @ip, NULL, @boot, @now, @now) ON CONFLICT (mac) DO NOTHING`,
      ),
      setAttr: db.prepare('INSERT INTO node_attrs (mac, key, value) VALUES (?, ?, ?) ON CONFLICT (mac, key) DO UPDATE SET value = excluded.value'),
      delAttr: db.prepare('DELETE FROM node_attrs WHERE mac = ? AND key = ?'),
      names: db.prepare<[], { name: string }>('SELECT name FROM nodes'),
      namesLike: db.prepare<[string, string], { name: string }>('SELECT name FROM nodes WHERE name >= ? AND name < ?'),
      del: db.prepare('DELETE FROM nodes WHERE mac = ?'),
      touch: db.prepare('UPDATE nodes SET state = ?, ip = CASE WHEN ? <> \'\' THEN ? ELSE ip END, last_contact = ?, updated_at = ? WHERE mac = ?'),
      touchAddress: db.prepare('UPDATE nodes SET ip = CASE WHEN ? <> \'\' THEN ? ELSE ip END, last_contact = ?, updated_at = ? WHERE mac = ?'),
      count: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM nodes'),
      // Zero-padded names of one width sort like their numbers: the index gives the highest.
      // Names of the pattern have one length: the first such row read backwards through the
      // name index is the answer. (Not GLOB: SQLite re-prepares a statement whose GLOB pattern
      // is a parameter each time it runs, which cost more than the registration.)
      // With the gapless marker, in one statement (one per registration).
      markerAndHighest: db.prepare<[string, string, string, number], { marker: string | null; top: string | null }>(
        'SELECT (SELECT value FROM meta WHERE key = ?) AS marker, (SELECT name FROM nodes WHERE name >= ? AND name <= ? AND length(name) = ? ORDER BY name DESC LIMIT 1) AS top',
      ),
      getMeta: db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      delMeta: db.prepare('DELETE FROM meta WHERE key = ?'),
    };
  }

  private fromRow(r: NodeRow, attrs: Record<string, string>): Node {
    return nodeFromRow(r, attrs);
  }

  private attrsOf(mac: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const a of this.q.attrsOf.all(mac)) out[a.key] = a.value;
    return out;
  }

  /** Just the name (events name their node; a whole node with attributes costs a second query). */
  nameByMac(mac: string): string | undefined {
    return this.q.nameByMac.get(mac);
  }
  /** Just the name and address (the DHCP hot path: no attributes). */
  nameAndIpByMac(mac: string): { name: string; ip: string } | undefined {
    return this.q.nameAndIpByMac.get(mac);
  }
  /** Just the MAC of the node holding this fixed address. */
  macByIp(ip: string): string | undefined {
    return this.q.macByIp.get(ip);
  }

  byMac(mac: string): Node | undefined {
    const r = this.q.byMac.get(mac);
    return r && this.fromRow(r, this.attrsOf(r.mac));
  }
  byName(name: string): Node | undefined {
    const r = this.q.byName.get(name);
    return r && this.fromRow(r, this.attrsOf(r.mac));
  }
  byIp(ip: string): Node | undefined {
    const r = this.q.byIp.get(ip);
    return r && this.fromRow(r, this.attrsOf(r.mac));
  }
  count(): number {
    return this.q.count.get()!.n;
  }

  /** All nodes, attributes included, sorted by name: one statement (see where; 100 000 nodes: a third of the time of reading rows and attributes apart). */
  all(): Node[] {
    return this.where('1 = 1', []);
  }

  /**
   * Nodes matching a SQL condition on `nodes` (from compileQuery), attributes included, sorted
   * by name. SQLite hands the whole answer over as one JSON text — an array of rows, each with
   * its attributes as an object — which JSON.parse turns into values far faster than
   * better-sqlite3 makes them column by column (8 000 nodes: about half the time). With
   * `attrKeys`, each node carries only those attributes.
   */
  where(condition: string, params: (string | number)[], opts: { attrKeys?: readonly string[] } = {}): Node[] {
    // attrKeys: only these attributes (`node list` as a table needs checkin_interval alone).
    const keys = opts.attrKeys;
    const cacheKey = keys ? `${keys.length}\u0000${condition}` : condition;
    let stmt = this.whereCache.get(cacheKey);
    if (!stmt) {
      const only = keys ? (keys.length ? ` AND a.key IN (${keys.map(() => '?').join(', ')})` : ' AND 0') : '';
      stmt = this.db
        .prepare<(string | number)[], string>(
          `SELECT json_group_array(json_array(${WHERE_COLUMNS.join(', ')},
             (SELECT json_group_object(a.key, a.value) FROM node_attrs a WHERE a.mac = nodes.mac${only})))
           FROM nodes WHERE ${condition}`,
        )
        .pluck();
      if (this.whereCache.size >= 64) this.whereCache.clear();
      this.whereCache.set(cacheKey, stmt);
    }
    const rows = JSON.parse(stmt.get(...(keys ?? []), ...params) ?? '[]') as WhereRow[];
    const out: Node[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      out[i] = {
        mac: r[0], name: r[1], group: r[2], vnfs: r[3], enabled: r[4] === 1, debug: r[5] === 1, state: r[6], ip: r[7],
        lastContact: r[8], boot: r[9], attrs: r[12], createdAt: r[10], updatedAt: r[11],
      };
    }
    // Sorted here rather than by the statement's ORDER BY name: SQLite sorts every row's JSON
    // text (100 000 nodes, 10 000 rows: 8 of the statement's 45 ms), while the rows come in
    // insertion order, mostly name order already, which this sort passes through in one run.
    // Names are ASCII (validName), so code-unit order is SQLite's BINARY order; they are unique.
    return out.sort(byName);
  }
  private readonly whereCache = new Map<string, Statement<(string | number)[], string>>();

  /**
   * Next free name under the pattern. Call inside the write transaction that inserts it.
   * Names are handed out in order, so gaps appear only when a node is deleted or renamed or
   * given an explicit name of the pattern. Those changes clear a marker in `meta`; while it
   * holds for this pattern, the next name is the highest one plus one, found through the
   * index in O(log n) — a registration storm does not rescan every name. Otherwise the
   * names are scanned for the first gap, and the marker is set again once there is none.
   */
  private nextName(p: NamePattern, first: number): string {
    const marker = `${formatName(p, 0)}|${p.width}|${first}`;
    const top = 10 ** p.width - 1;
    if (first <= top) {
      const topName = formatName(p, top);
      const r = this.q.markerAndHighest.get(GAPLESS, formatName(p, first), topName, topName.length)!;
      if (r.marker !== marker) return this.scanForName(p, first, marker);
      const name = r.top;
      if (name === null) return formatName(p, first);
      // Not of the pattern (e.g. "n0:00" sorts among them): the scan below decides.
      const n = numberOfName(p, name);
      if (n !== undefined && n >= first && n < top) return formatName(p, n + 1);
    }
    return this.scanForName(p, first, marker);
  }

  private scanForName(p: NamePattern, first: number, marker: string): string {
    // Only names that start with the prefix can carry a number; a range scan keeps this cheap.
    const rows = p.prefix ? this.q.namesLike.all(p.prefix, p.prefix + '\uffff') : this.q.names.all();
    const names = rows.map((r) => r.name);
    const n = firstFreeNumber(p, first, names);
    const used = names.map((x) => numberOfName(p, x)).filter((x): x is number => x !== undefined && x >= first);
    const max = used.length ? Math.max(...used) : first - 1;
    if (n === max + 1) this.q.setMeta.run(GAPLESS, marker);
    return formatName(p, n);
  }

  /** A change that may open a gap among pattern names: the next registration rescans. */
  private namesChanged(): void {
    this.q.delMeta.run(GAPLESS);
  }

  private validateNew(n: NewNode, policy: NamingPolicy): Required<Omit<NewNode, 'name'>> & { name?: string } {
    const mac = normalizeMac(n.mac);
    if (n.name !== undefined) validateName('node', n.name);
    const group = n.group ?? policy.defaultGroup;
    if (group !== '') validateName('group', group);
    const vnfs = n.vnfs ?? policy.defaultVnfs;
    if (vnfs !== '') validateVnfsRef(vnfs);
    const attrs = n.attrs ?? {};
    for (const [k, val] of Object.entries(attrs)) validateInstallAttr(validateAttrKey(k), val);
    return {
      mac,
      name: n.name,
      group,
      vnfs,
      ip: validateIp(n.ip ?? ''),
      enabled: n.enabled ?? true,
      debug: n.debug ?? false,
      boot: n.boot === undefined ? 'provision' : parseBootMode(n.boot),
      attrs,
    };
  }

  private insertOne(v: ReturnType<NodeRepo['validateNew']>, policy: NamingPolicy, pattern: NamePattern, now: number): Node {
    const taken = this.q.byMac.get(v.mac);
    if (taken) throw new InvalidInput(`a node with MAC ${v.mac} exists already (${taken.name})`, 'mac');
    const name = v.name ?? this.nextName(pattern, policy.firstNumber);
    if (v.name !== undefined) this.namesChanged();
    if (this.q.byName.get(name)) throw new InvalidInput(`node name "${name}" is taken`, 'name');
    if (v.ip !== '') {
      const holder = this.q.byIp.get(v.ip);
      if (holder) throw new InvalidInput(`address ${v.ip} is already node ${holder.name}'s`, 'ip');
    }
    this.q.insert.run({
      mac: v.mac,
      name,
      grp: v.group,
      vnfs: v.vnfs,
      enabled: v.enabled ? 1 : 0,
      debug: v.debug ? 1 : 0,
      ip: v.ip,
      boot: v.boot,
      now,
    });
    for (const [k, val] of Object.entries(v.attrs)) this.q.setAttr.run(v.mac, k, val);
    // The row just written, without reading it back (registration sits in the DHCP answer path).
    const row: NodeRow = { mac: v.mac, name, grp: v.group, vnfs: v.vnfs, enabled: v.enabled ? 1 : 0, debug: v.debug ? 1 : 0, state: '', ip: v.ip, last_contact: null, boot: v.boot, created_at: now, updated_at: now };
    return this.fromRow(row, { ...v.attrs });
  }

  /** Add nodes all-or-nothing: the first invalid record aborts the whole batch. */
  addMany(nodes: NewNode[], policy: NamingPolicy, onRecordError?: (index: number, e: Error) => Error): Node[] {
    const pattern = parseNamePattern(policy.pattern);
    const validated = nodes.map((n, i) => {
      try {
        return this.validateNew(n, policy);
      } catch (e) {
        throw onRecordError ? onRecordError(i, e as Error) : e;
      }
    });
    const now = Date.now();
    return this.db
      .transaction(() =>
        validated.map((v, i) => {
          try {
            return this.insertOne(v, policy, pattern, now);
          } catch (e) {
            throw onRecordError ? onRecordError(i, e as Error) : e;
          }
        }),
      )
      .immediate();
  }

  add(n: NewNode, policy: NamingPolicy): Node {
    return this.addMany([n], policy)[0]!;
  }

  /**
   * Auto-registration for a booting MAC: returns the existing node, or creates one.
   * `preferredName` is used only when valid and free.
   */
  register(mac: string, policy: NamingPolicy, opts: { preferredName?: string; ip?: string } = {}): { node: Node; created: boolean } {
    const m = normalizeMac(mac);
    if (this.lastPattern?.text !== policy.pattern) this.lastPattern = { text: policy.pattern, parsed: parseNamePattern(policy.pattern) };
    // Built once: a DHCP storm registers thousands of MACs a second, and better-sqlite3 makes
    // a new wrapper function on every db.transaction() call.
    this.registerIn ??= (m: string, policy: NamingPolicy, pattern: NamePattern, opts: { preferredName?: string; ip?: string }) => {
      // No read of the MAC first: the INSERT's ON CONFLICT (mac) is that check, inside this
      // IMMEDIATE transaction, so of concurrent callers exactly one creates the node. (A DHCP
      // slice has already found the MAC new; two more reads of it were 14 % of a DORA.)
      let name: string | undefined;
      if (opts.preferredName && !validateNameSafe(opts.preferredName) && !this.q.byName.get(opts.preferredName)) name = opts.preferredName;
      const v = this.validateNew({ mac: m, name }, policy);
      // An address already someone else's is not taken over by registration.
      if (opts.ip && IPV4_RE.test(opts.ip) && !this.q.byIp.get(opts.ip)) v.ip = opts.ip;
      // Explicit names are checked free above, generated ones are free by construction
      // (nextName), and the UNIQUE name column stands behind both.
      const now = Date.now();
      const row: NodeRow = { mac: m, name: v.name ?? this.nextName(pattern, policy.firstNumber), grp: v.group, vnfs: v.vnfs, enabled: 1, debug: 0, state: '', ip: v.ip, last_contact: null, boot: v.boot, created_at: now, updated_at: now };
      if (this.q.insertNew.run({ mac: m, name: row.name, grp: row.grp, vnfs: row.vnfs, enabled: 1, debug: 0, ip: row.ip, boot: row.boot, now }).changes === 0) {
        return { node: this.byMac(m)!, created: false };
      }
      if (v.name !== undefined) this.namesChanged();
      return { node: this.fromRow(row, {}), created: true };
    };
    // Inside a caller's write transaction (a DHCP slice): no savepoint of its own. Its one
    // write is the INSERT, which SQLite applies or undoes whole, and a savepoint is two more
    // statements per new MAC (with the changes of 9fd44b4: 33-40 -> 22 µs per registration).
    if (this.db.inTransaction) return this.registerIn(m, policy, this.lastPattern.parsed, opts);
    this.registerTx ??= this.db.transaction(this.registerIn);
    return this.registerTx.immediate(m, policy, this.lastPattern.parsed, opts);
  }
  private registerIn?: (m: string, policy: NamingPolicy, pattern: NamePattern, opts: { preferredName?: string; ip?: string }) => { node: Node; created: boolean };
  private registerTx?: Transaction<(m: string, policy: NamingPolicy, pattern: NamePattern, opts: { preferredName?: string; ip?: string }) => { node: Node; created: boolean }>;
  private lastPattern?: { text: string; parsed: NamePattern };

  /** Apply one field or attribute change to nodes, in one transaction. */
  set(macs: string[], key: string, value: string): Node[] {
    const now = Date.now();
    let column: string | undefined;
    let v: string | number = value;
    if (key.startsWith('attr.')) {
      const k = validateInstallAttr(validateAttrKey(key.slice(5)), value);
      this.db.transaction(() => {
        for (const mac of macs) {
          if (value === '') this.q.delAttr.run(mac, k);
          else this.q.setAttr.run(mac, k, value);
          this.db.prepare('UPDATE nodes SET updated_at = ? WHERE mac = ?').run(now, mac);
        }
      })();
      return macs.map((m) => this.byMac(m)!);
    }
    switch (key as NodeField) {
      case 'name':
        if (macs.length !== 1) throw new InvalidInput(`name can be set on one node at a time, not ${macs.length}`, 'name');
        validateName('node', value);
        column = 'name';
        break;
      case 'group':
        if (value !== '') validateName('group', value);
        column = 'grp';
        break;
      case 'vnfs':
        if (value !== '') validateVnfsRef(value);
        column = 'vnfs';
        break;
      case 'ip':
        validateIp(value);
        if (value !== '' && macs.length !== 1) throw new InvalidInput(`ip can be set on one node at a time, not ${macs.length}`, 'ip');
        column = 'ip';
        break;
      case 'enabled':
      case 'debug':
        v = parseBool(key, value) ? 1 : 0;
        column = key;
        break;
      case 'boot':
        parseBootMode(value);
        column = 'boot';
        break;
      case 'state':
        column = 'state';
        break;
      default:
        throw new InvalidInput(
          `unknown node field "${key}": use one of ${NODE_FIELDS.join(', ')}, or attr.KEY for an attribute`,
          'key',
        );
    }
    const stmt = this.db.prepare(`UPDATE nodes SET ${column} = ?, updated_at = ? WHERE mac = ?`);
    this.db.transaction(() => {
      if (column === 'name') this.namesChanged();
      for (const mac of macs) {
        try {
          stmt.run(v, now, mac);
        } catch (e) {
          if (/UNIQUE/.test((e as Error).message)) {
            const holder = column === 'name' ? this.q.byName.get(String(v)) : this.q.byIp.get(String(v));
            throw new InvalidInput(`${key} "${value}" is already taken by node ${holder?.name ?? '?'}`, key);
          }
          throw e;
        }
      }
    })();
    return macs.map((m) => this.byMac(m)!);
  }

  delete(macs: string[]): number {
    return this.db.transaction(() => {
      this.namesChanged();
      return macs.reduce((n, mac) => n + this.q.del.run(mac).changes, 0);
    })();
  }

  /** New hardware for an existing node: same name, group, attributes; new MAC. */
  replace(oldMac: string, newMacInput: string): Node {
    const newMac = normalizeMac(newMacInput);
    return this.db
      .transaction(() => {
        if (!this.q.byMac.get(oldMac)) throw new NotFound(`no node with MAC ${oldMac}`);
        const taken = this.q.byMac.get(newMac);
        if (taken) throw new InvalidInput(`MAC ${newMac} already belongs to node ${taken.name}`, 'mac');
        // ON UPDATE CASCADE carries the attributes along.
        this.db.prepare("UPDATE nodes SET mac = ?, state = '', last_contact = NULL, updated_at = ? WHERE mac = ?").run(newMac, Date.now(), oldMac);
        this.db.prepare('DELETE FROM leases WHERE mac = ?').run(oldMac);
        return this.byMac(newMac)!;
      })
      .immediate();
  }

  /** A request from the node: its state word, address and time of contact. */
  /** A contact that carries an address but no state (a DHCP ACK): the state stays as it is. */
  touchAddress(mac: string, ip: string, now = Date.now()): void {
    const addr = IPV4_RE.test(ip) ? ip : '';
    try {
      this.q.touchAddress.run(addr, addr, now, now, mac);
    } catch (e) {
      if (/UNIQUE/.test((e as Error).message)) this.q.touchAddress.run('', '', now, now, mac);
      else throw e;
    }
  }

  touch(mac: string, state: string, ip: string | undefined, now = Date.now()): void {
    const addr = ip && IPV4_RE.test(ip) ? ip : '';
    try {
      this.q.touch.run(state, addr, addr, now, now, mac);
    } catch (e) {
      // The address belongs to another node's reservation: record the contact, keep the addresses.
      if (/UNIQUE/.test((e as Error).message)) this.q.touch.run(state, '', '', now, now, mac);
      else throw e;
    }
  }
}

function validateNameSafe(name: string): string | undefined {
  try {
    validateName('node', name);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

export { BOOT_MODES };
