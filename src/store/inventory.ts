import type { DB } from './db.js';
import { diffInventory, hardwareFacts, type Health, type HardwareFacts, type Inventory, type InventoryDiff } from '../inventory/inventory.js';

export interface StoredInventory {
  mac: string;
  /** 1 for the first report, +1 for each report that differed from the one before. */
  version: number;
  /** ms since epoch: when this version was first reported. */
  time: number;
  /** ms since epoch: when the machine last reported exactly this. */
  seen: number;
  data: Inventory;
  facts: HardwareFacts;
}

export type SaveResult =
  | { result: 'first'; current: StoredInventory }
  | { result: 'unchanged'; current: StoredInventory }
  | { result: 'changed'; current: StoredInventory; previous: StoredInventory; diff: InventoryDiff };

export interface StoredHealth extends Health {
  time: number;
}

interface Row {
  mac: string;
  version: number;
  time: number;
  seen: number;
  data: string;
  facts: string;
}

const fromRow = (r: Row): StoredInventory => ({ mac: r.mac, version: r.version, time: r.time, seen: r.seen, data: JSON.parse(r.data) as Inventory, facts: JSON.parse(r.facts) as HardwareFacts });

/**
 * Hardware reports per node: the current one and the one before it (enough to say what
 * changed), plus the latest check-in health. Facts are stored precomputed so a `hw:` query
 * over many nodes is one indexed lookup per node, no re-derivation.
 */
export class InventoryRepo {
  private readonly q;

  constructor(private readonly db: DB) {
    this.q = {
      get: db.prepare<[string, string], Row>('SELECT mac, version, time, seen, data, facts FROM inventory WHERE mac = ? AND slot = ?'),
      facts: db.prepare<[string], { facts: string }>("SELECT facts FROM inventory WHERE mac = ? AND slot = 'current'"),
      del: db.prepare<[string, string]>('DELETE FROM inventory WHERE mac = ? AND slot = ?'),
      put: db.prepare<[string, string, number, number, number, string, string]>(
        'INSERT OR REPLACE INTO inventory (mac, slot, version, time, seen, data, facts) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      seen: db.prepare<[number, string]>("UPDATE inventory SET seen = ? WHERE mac = ? AND slot = 'current'"),
      health: db.prepare<[string], StoredHealth & { uptime: number | null; load: number | null; memfree_kb: number | null }>('SELECT time, uptime, load, memfree_kb FROM health WHERE mac = ?'),
      putHealth: db.prepare<[string, number, number | null, number | null, number | null]>('INSERT OR REPLACE INTO health (mac, time, uptime, load, memfree_kb) VALUES (?, ?, ?, ?, ?)'),
    };
  }

  current(mac: string): StoredInventory | undefined {
    const r = this.q.get.get(mac, 'current');
    return r ? fromRow(r) : undefined;
  }

  previous(mac: string): StoredInventory | undefined {
    const r = this.q.get.get(mac, 'previous');
    return r ? fromRow(r) : undefined;
  }

  /** The current report's `hw:` facts, undefined when the node never reported. */
  facts(mac: string): HardwareFacts | undefined {
    const r = this.q.facts.get(mac);
    return r ? (JSON.parse(r.facts) as HardwareFacts) : undefined;
  }

  /**
   * Store a report. Identical to the current one: only `seen` moves. Different: the current
   * becomes the previous (the older previous is dropped) and the diff says what changed.
   * The node must exist (the foreign key refuses otherwise).
   */
  save(mac: string, inv: Inventory, now = Date.now()): SaveResult {
    return this.db
      .transaction((): SaveResult => {
        const cur = this.current(mac);
        const data = JSON.stringify(inv);
        const facts = hardwareFacts(inv);
        if (!cur) {
          this.q.put.run(mac, 'current', 1, now, now, data, JSON.stringify(facts));
          return { result: 'first', current: { mac, version: 1, time: now, seen: now, data: inv, facts } };
        }
        const diff = diffInventory(cur.data, inv);
        if (JSON.stringify(cur.data) === data || diff.changes.length === 0) {
          // Same hardware (link speed or MemTotal drift aside): keep the version, refresh the data.
          this.q.put.run(mac, 'current', cur.version, cur.time, now, data, JSON.stringify(facts));
          return { result: 'unchanged', current: { ...cur, seen: now, data: inv, facts } };
        }
        this.q.put.run(mac, 'previous', cur.version, cur.time, cur.seen, JSON.stringify(cur.data), JSON.stringify(cur.facts));
        const version = cur.version + 1;
        this.q.put.run(mac, 'current', version, now, now, data, JSON.stringify(facts));
        return { result: 'changed', current: { mac, version, time: now, seen: now, data: inv, facts }, previous: cur, diff };
      })
      .immediate();
  }

  health(mac: string): StoredHealth | undefined {
    const r = this.q.health.get(mac);
    if (!r) return undefined;
    const h: StoredHealth = { time: r.time };
    if (r.uptime !== null) h.uptime = r.uptime;
    if (r.load !== null) h.load = r.load;
    if (r.memfree_kb !== null) h.memfree_kb = r.memfree_kb;
    return h;
  }

  recordHealth(mac: string, h: Health, now = Date.now()): void {
    this.q.putHealth.run(mac, now, h.uptime ?? null, h.load ?? null, h.memfree_kb ?? null);
  }
}
