import { Router, type Request, type Response } from 'express';
import type { EventSink, Node } from '../nodes/types.js';
import { parseMac } from '../nodes/mac.js';
import { MAX_INVENTORY_BYTES, parseInventory, type Inventory } from './inventory.js';
import type { SaveResult } from '../store/inventory.js';

/** What the route needs from the node store (the SQLite store in production, a fake in tests). */
export interface InventoryBackend {
  byMac(mac: string): Node | undefined;
  save(mac: string, inv: Inventory): SaveResult;
  events: EventSink;
}

export type InventoryAuthorize = (
  node: Node,
  req: Request,
  ctx: { registered: boolean; state: string },
) => { ok: true } | { ok: false; status: number; reason: string } | Promise<{ ok: true } | { ok: false; status: number; reason: string }>;

export interface InventoryRouterOptions {
  /** The node-token check /provision uses (bootParts().authorize); default allows all. */
  authorize?: InventoryAuthorize;
  maxBytes?: number;
}

function refuse(res: Response, status: number, reason: string): void {
  res.status(status).type('text/plain; charset=utf-8').set('Cache-Control', 'no-store').send(`pxeherd: ${reason.replace(/[\r\n]+/g, ' ')}\n`);
}

/** Read the body up to `max` bytes; beyond that, stop collecting and say so. */
function readBody(req: Request, max: number): Promise<{ ok: true; body: Buffer } | { ok: false; tooLarge: true; bytes: number } | { ok: false; tooLarge: false; error: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      if (bytes > max) {
        over = true;
        chunks.length = 0;
        // Drain what a misbehaving client keeps sending, but not forever.
        if (bytes > max * 8) req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(over ? { ok: false, tooLarge: true, bytes } : { ok: true, body: Buffer.concat(chunks) }));
    req.on('error', (e) => resolve(over ? { ok: false, tooLarge: true, bytes } : { ok: false, tooLarge: false, error: e.message }));
    req.on('close', () => {
      if (over) resolve({ ok: false, tooLarge: true, bytes });
    });
  });
}

/**
 * POST /inventory?mac=<MAC>&token=<token>: the stage-one image's hardware report (JSON).
 * Stored per node with the previous version kept; `inventory.first` the first time,
 * `inventory.changed` (with the diff) when the hardware differs. Refusals store nothing:
 * 400 malformed, 403 no/wrong token, 404 unknown node, 413 over the size limit.
 */
export function inventoryRouter(backend: InventoryBackend, opts: InventoryRouterOptions = {}): Router {
  const router = Router();
  const authorize: InventoryAuthorize = opts.authorize ?? (() => ({ ok: true }));
  const max = opts.maxBytes ?? MAX_INVENTORY_BYTES;

  router.post('/inventory', async (req: Request, res: Response) => {
    const macParam = req.query.mac ?? req.query.nodeid;
    if (typeof macParam !== 'string' || macParam === '') {
      refuse(res, 400, 'give mac=<MAC> (once) on the query string');
      return;
    }
    const m = parseMac(macParam);
    if (!m.ok) {
      refuse(res, 400, m.error);
      return;
    }
    const node = backend.byMac(m.mac);
    if (!node) {
      refuse(res, 404, `unknown node ${m.mac}: it registers by asking for "init" (or: pxeherd node add ${m.mac})`);
      return;
    }
    const auth = await authorize(node, req, { registered: false, state: 'inventory' });
    if (!auth.ok) {
      refuse(res, auth.status, auth.reason);
      return;
    }
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) {
      res.set('Connection', 'close');
      refuse(res, 413, `the report is ${declared} bytes, more than the ${max} bytes accepted`);
      return;
    }
    const body = await readBody(req, max);
    if (!body.ok) {
      if (body.tooLarge) {
        res.set('Connection', 'close');
        refuse(res, 413, `the report is more than the ${max} bytes accepted`);
      } else refuse(res, 400, `cannot read the report: ${body.error}`);
      return;
    }
    if (body.body.length === 0) {
      refuse(res, 400, 'the report is empty: POST the JSON from the stage-one collector');
      return;
    }
    const parsed = parseInventory(body.body);
    if (!parsed.ok) {
      refuse(res, 400, parsed.error);
      return;
    }
    let saved: SaveResult;
    try {
      saved = backend.save(node.mac, parsed.inventory);
    } catch (e) {
      refuse(res, 500, `cannot store the report: ${(e as Error).message}`);
      return;
    }
    const base = { mac: node.mac, node: node.name };
    if (saved.result === 'first') {
      backend.events.record({ ...base, kind: 'inventory.first', detail: { version: 1, facts: saved.current.facts } });
    } else if (saved.result === 'changed') {
      const d = saved.diff;
      backend.events.record({
        ...base,
        kind: 'inventory.changed',
        detail: { version: saved.current.version, previous: saved.previous.version, changes: d.changes, added: d.added, removed: d.removed, changed: d.changed },
      });
    }
    res
      .status(200)
      .set('Cache-Control', 'no-store')
      .json({ ok: true, node: node.name, result: saved.result, version: saved.current.version, changes: saved.result === 'changed' ? saved.diff.changes : [] });
  });

  return router;
}

/** The store seen through InventoryBackend. */
export function storeInventoryBackend(store: { nodes: { byMac(mac: string): Node | undefined }; inventory: { save(mac: string, inv: Inventory): SaveResult } }, events: EventSink): InventoryBackend {
  return { byMac: (mac) => store.nodes.byMac(mac), save: (mac, inv) => store.inventory.save(mac, inv), events };
}
