import { z } from 'zod';
import { parseMac } from '../nodes/mac.js';

/**
 * A node's hardware report, as the stage-one collector (templates/stage1/inventory.sh) posts it.
 * Pure: parsing, the facts `hw:` queries see, and the diff between two reports.
 */

/** Largest report accepted: a big server's report is a few KiB; anything near this is not one. */
export const MAX_INVENTORY_BYTES = 256 * 1024;

const str = z.string().max(1024);
const count = z.number().int().nonnegative();
const flag = z.number().int().min(0).max(1).nullable().optional();

const DiskSchema = z.object({
  name: z.string().min(1).max(64),
  size_bytes: count,
  model: str.default(''),
  serial: str.default(''),
  rotational: flag,
  removable: flag,
});

const NicSchema = z.object({
  name: z.string().min(1).max(64),
  mac: z.string().refine((s) => parseMac(s).ok, 'not a MAC address'),
  driver: str.default(''),
  speed_mbps: count.nullable().optional(),
  carrier: flag,
});

export const InventorySchema = z.object({
  version: z.literal(1),
  cpu: z.object({ model: str.default(''), count }),
  memory_kb: count,
  memory_phys_bytes: count.nullable().optional(),
  disks: z.array(DiskSchema).max(1024),
  nics: z.array(NicSchema).max(1024),
  dmi: z.object({ vendor: str.default(''), product: str.default(''), serial: str.default(''), uuid: str.default('') }).prefault({}),
  firmware: z.enum(['bios', 'uefi']),
});

export type Inventory = z.infer<typeof InventorySchema>;
export type Disk = Inventory['disks'][number];
export type Nic = Inventory['nics'][number];

export type ParseResult = { ok: true; inventory: Inventory } | { ok: false; error: string };

/** Decode a posted body. Never throws: the HTTP layer turns `error` into a 400. */
export function parseInventory(body: string | Buffer): ParseResult {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (e) {
    return { ok: false, error: `the report is not JSON: ${(e as Error).message}` };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, error: 'the report must be a JSON object' };
  const r = InventorySchema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.length ? i.path.join('.') : '(report)'}: ${i.message}`);
    return { ok: false, error: `the report is malformed: ${issues.join('; ')}${r.error.issues.length > 5 ? ` (and ${r.error.issues.length - 5} more)` : ''}` };
  }
  // MACs in one spelling, so diffs and queries compare like with like.
  const inv = r.data;
  for (const n of inv.nics) n.mac = (parseMac(n.mac) as { ok: true; mac: string }).mac;
  return { ok: true, inventory: inv };
}

export type HardwareFacts = Record<string, string | number>;

const GIB = 1024 ** 3;
const round1 = (x: number) => Math.round(x * 10) / 10;

/**
 * What `hw:KEY` terms compare against. Memory is in GiB (memory is sold in powers of two) from
 * the online memory blocks when known, else MemTotal; disk sizes are decimal GB (disks are sold
 * that way: a "1 TB" disk is hw:disk_gb>=1000).
 */
export function hardwareFacts(inv: Inventory): HardwareFacts {
  const memBytes = inv.memory_phys_bytes ?? inv.memory_kb * 1024;
  const diskBytes = inv.disks.reduce((s, d) => s + d.size_bytes, 0);
  return {
    cpus: inv.cpu.count,
    cpu_model: inv.cpu.model,
    mem_gb: round1(memBytes / GIB),
    mem_mb: Math.round(memBytes / 1024 ** 2),
    memtotal_kb: inv.memory_kb,
    disks: inv.disks.length,
    disk_gb: round1(diskBytes / 1e9),
    nics: inv.nics.length,
    vendor: inv.dmi.vendor,
    product: inv.dmi.product,
    serial: inv.dmi.serial,
    uuid: inv.dmi.uuid,
    firmware: inv.firmware,
  };
}

export interface InventoryDiff {
  /** One human line per change: "disk sdb (serial X, 500.1 GB) gone". */
  changes: string[];
  added: { kind: 'disk' | 'nic'; item: Disk | Nic }[];
  removed: { kind: 'disk' | 'nic'; item: Disk | Nic }[];
  changed: { field: string; from: string | number | null; to: string | number | null }[];
}

const diskKey = (d: Disk) => (d.serial ? `serial:${d.serial}` : `name:${d.name}`);
const diskText = (d: Disk) => `disk ${d.name} (${d.serial ? `serial ${d.serial}, ` : ''}${round1(d.size_bytes / 1e9)} GB)`;
const nicText = (n: Nic) => `NIC ${n.mac} (${n.name}${n.driver ? `, ${n.driver}` : ''})`;

/**
 * What changed between two reports of one machine. Link speed and carrier are state, not
 * hardware, and are ignored; so is MemTotal's drift between kernels (memory compares as mem_gb).
 */
export function diffInventory(before: Inventory, after: Inventory): InventoryDiff {
  const out: InventoryDiff = { changes: [], added: [], removed: [], changed: [] };
  const field = (name: string, from: string | number | null, to: string | number | null) => {
    if (from === to) return;
    out.changed.push({ field: name, from, to });
    out.changes.push(`${name} changed from ${JSON.stringify(from)} to ${JSON.stringify(to)}`);
  };
  const fb = hardwareFacts(before);
  const fa = hardwareFacts(after);
  field('cpu.count', before.cpu.count, after.cpu.count);
  field('cpu.model', before.cpu.model, after.cpu.model);
  field('mem_gb', fb.mem_gb!, fa.mem_gb!);
  field('firmware', before.firmware, after.firmware);
  for (const k of ['vendor', 'product', 'serial', 'uuid'] as const) field(`dmi.${k}`, before.dmi[k], after.dmi[k]);

  const oldDisks = new Map(before.disks.map((d) => [diskKey(d), d]));
  const newDisks = new Map(after.disks.map((d) => [diskKey(d), d]));
  for (const [k, d] of oldDisks) {
    const now = newDisks.get(k);
    if (!now) {
      out.removed.push({ kind: 'disk', item: d });
      out.changes.push(`${diskText(d)} gone`);
    } else {
      field(`disk ${d.serial || d.name} size_bytes`, d.size_bytes, now.size_bytes);
      if (d.serial) field(`disk ${d.serial} name`, d.name, now.name);
    }
  }
  for (const [k, d] of newDisks) {
    if (!oldDisks.has(k)) {
      out.added.push({ kind: 'disk', item: d });
      out.changes.push(`${diskText(d)} added`);
    }
  }

  const oldNics = new Map(before.nics.map((n) => [n.mac, n]));
  const newNics = new Map(after.nics.map((n) => [n.mac, n]));
  for (const [mac, n] of oldNics) {
    const now = newNics.get(mac);
    if (!now) {
      out.removed.push({ kind: 'nic', item: n });
      out.changes.push(`${nicText(n)} gone`);
    } else field(`nic ${mac} driver`, n.driver, now.driver);
  }
  for (const [mac, n] of newNics) {
    if (!oldNics.has(mac)) {
      out.added.push({ kind: 'nic', item: n });
      out.changes.push(`${nicText(n)} added`);
    }
  }
  return out;
}

/** Seconds between check-ins: the merged `checkin_interval` attribute, default 300. */
export const DEFAULT_CHECKIN_INTERVAL = 300;

export function checkinInterval(attrs: Record<string, string>): number {
  const v = Number(attrs.checkin_interval);
  return Number.isFinite(v) && v > 0 ? v : DEFAULT_CHECKIN_INTERVAL;
}

/**
 * A node is stale when its last contact is older than three check-in intervals. A node that
 * never made contact is not stale: nothing was expected of it yet.
 */
export function isStale(lastContact: number | null, attrs: Record<string, string>, now: number): boolean {
  if (lastContact === null) return false;
  return now - lastContact > 3 * checkinInterval(attrs) * 1000;
}

/** The health values a check-in carries (query parameters of /provision/ready). */
export interface Health {
  uptime?: number;
  load?: number;
  memfree_kb?: number;
}

/**
 * Health from query parameters. Absent or malformed values are left out (a check-in is never
 * refused over its health report); `invalid` names the malformed ones for the event log.
 */
export function parseHealth(q: Record<string, unknown>): { health: Health | undefined; invalid: string[] } {
  const h: Health = {};
  const invalid: string[] = [];
  const take = (key: 'uptime' | 'load' | 'memfree_kb', re: RegExp) => {
    const v = q[key];
    if (v === undefined) return;
    if (typeof v === 'string' && re.test(v) && Number.isFinite(Number(v))) h[key] = Number(v);
    else invalid.push(key);
  };
  take('uptime', /^\d{1,12}(\.\d+)?$/);
  take('load', /^\d{1,6}(\.\d+)?$/);
  take('memfree_kb', /^\d{1,15}$/);
  if (h.uptime !== undefined) h.uptime = Math.floor(h.uptime);
  return { health: Object.keys(h).length ? h : undefined, invalid };
}
