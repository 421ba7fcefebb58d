import express, { type Request, type Response, type NextFunction, type Router } from 'express';
import { groupJson, leaseJson, nodeJson, vnfsJson, eventJson } from '../nodes/json.js';
import { parseMac } from '../nodes/mac.js';
import { stateError } from '../nodes/names.js';
import { NotFound } from '../nodes/select.js';
import { NODE_FIELDS } from '../store/nodes.js';
import type { EventFilter } from '../store/events.js';
import type { NodeFormat } from '../nodes/io.js';
import type { Node } from '../nodes/types.js';
import { HttpError, errorResponse } from './errors.js';
import type { AdminAuth, Role } from './auth.js';
import { imagesOf, powerOf, reinstallBackendOf, startRollback, type AdminDeps } from './deps.js';
import { POWER_ACTIONS, type PowerAction } from '../power/types.js';
import { reinstall } from '../lifecycle/reinstall.js';
import { markForRelease, releaseNodes } from '../install/release.js';
import { revisionJson } from '../images/json.js';
import { sseStream } from './sse.js';
import { nodeExtras } from '../inventory/context.js';
import { planForNode } from '../install/node-plan.js';
import { PlanError } from '../install/plan.js';
import { ImageService } from '../images/service.js';
import { CaptureError, excludePattern, splitExcludes } from '../images/capture.js';
import { SshError } from '../remote/ssh.js';

type Obj = Record<string, unknown>;

const FORMATS: readonly NodeFormat[] = ['csv', 'json', 'ethers'];
const FORMAT_TYPES: Record<NodeFormat, string> = { csv: 'text/csv; charset=utf-8', json: 'application/json; charset=utf-8', ethers: 'text/plain; charset=utf-8' };

// ---- request helpers: every rejection names the field -----------------------------------

/** The JSON object body of a write; anything else is a 400 naming "body". */
export function bodyObject(req: Request): Obj {
  const b: unknown = req.body;
  if (b === undefined) {
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (!hasBody) return {};
    throw new HttpError(400, 'request body must be a JSON object: send Content-Type: application/json', 'body');
  }
  if (typeof b === 'string') throw new HttpError(400, 'request body must be a JSON object: send Content-Type: application/json', 'body');
  if (b === null || typeof b !== 'object' || Array.isArray(b)) {
    throw new HttpError(400, `request body must be a JSON object, not ${Array.isArray(b) ? 'an array' : b === null ? 'null' : typeof b}`, 'body');
  }
  return b as Obj;
}

function onlyKeys(o: Obj, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new HttpError(400, `unknown field "${k}": use ${allowed.join(', ')}`, k);
  }
}

function optString(o: Obj, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new HttpError(400, `"${key}" must be a string`, key);
  return v;
}

function reqString(o: Obj, key: string): string {
  const v = optString(o, key);
  if (v === undefined) throw new HttpError(400, `"${key}" is required`, key);
  return v;
}

const BOOL_FIELDS = ['enabled', 'debug'];

/**
 * Node fields are words as on the CLI; enabled/debug also take a JSON boolean. `loose` (the
 * bulk set's value, which may be an attribute) also takes numbers and booleans as text.
 */
function wordOf(o: Obj, key: string, loose = false): string {
  const v = o[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean' && (loose || BOOL_FIELDS.includes(key))) return v ? 'yes' : 'no';
  if (typeof v === 'number' && loose && Number.isFinite(v)) return String(v);
  throw new HttpError(400, `"${key}" must be a string${BOOL_FIELDS.includes(key) ? ' or a boolean' : ''}`, key);
}

/** attrs: {KEY: "value"}; with `allowDelete`, null or "" removes the attribute. */
function attrsOf(o: Obj, allowDelete: boolean): Record<string, string> | undefined {
  const a = o.attrs;
  if (a === undefined) return undefined;
  if (!a || typeof a !== 'object' || Array.isArray(a)) throw new HttpError(400, '"attrs" must be an object of KEY: "value"', 'attrs');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(a as Obj)) {
    if (v === null && allowDelete) out[k] = '';
    else if (typeof v === 'string') out[k] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
    else throw new HttpError(400, `attribute "${k}" must be a string${allowDelete ? ' (null removes it)' : ''}`, `attrs.${k}`);
  }
  return out;
}

/** NODES as the CLI takes them: an array of arguments, or one string split on blanks. */
function nodesArg(o: Obj): string[] {
  const v = o.nodes;
  if (typeof v === 'string') return v.split(/\s+/).filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  throw new HttpError(400, '"nodes" must be an array of names, globs, ranges or MACs, or one query string', 'nodes');
}

function queryString(req: Request, key: string): string | undefined {
  const v = req.query[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new HttpError(400, `query parameter "${key}" must be given once`, key);
  return v;
}

function queryArgs(req: Request): string[] {
  return (queryString(req, 'q') ?? '').split(/\s+/).filter(Boolean);
}

function formatParam(v: string | undefined, field = 'format'): NodeFormat {
  if (v === undefined) throw new HttpError(400, `"${field}" is required: csv, json or ethers`, field);
  if (!(FORMATS as readonly string[]).includes(v)) throw new HttpError(400, `"${field}" must be csv, json or ethers, not "${v}"`, field);
  return v as NodeFormat;
}

/** Times as ms since the epoch or an ISO 8601 date. */
export function timeParam(v: string | undefined, field: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new HttpError(400, `"${field}" must be milliseconds since the epoch or an ISO 8601 time, not "${v}"`, field);
  return t;
}

function boolParam(v: string | undefined, field: string): boolean {
  if (v === undefined || v === '') return false;
  if (['1', 'yes', 'true', 'on'].includes(v.toLowerCase())) return true;
  if (['0', 'no', 'false', 'off'].includes(v.toLowerCase())) return false;
  throw new HttpError(400, `"${field}" must be yes/no (or 1/0, true/false), not "${v}"`, field);
}

export function stateParam(v: string | undefined): string {
  const state = v ?? 'init';
  const bad = stateError(state);
  if (bad) throw new HttpError(400, bad, 'state');
  return state;
}

/** The event filter of GET /events and the SSE feed. */
export function eventFilter(req: Request): EventFilter {
  const f: EventFilter = {};
  const mac = queryString(req, 'mac');
  if (mac !== undefined && mac !== '') {
    const m = parseMac(mac);
    if (!m.ok) throw new HttpError(400, m.error, 'mac');
    f.mac = m.mac;
  }
  const node = queryString(req, 'node');
  if (node) f.node = node;
  const kind = queryString(req, 'kind');
  if (kind) {
    if (!/^[a-z][a-z0-9_.-]{0,63}$/.test(kind)) throw new HttpError(400, `"kind" must be an event kind or prefix such as dhcp or tftp.done, not "${kind}"`, 'kind');
    f.kind = kind;
  }
  f.since = timeParam(queryString(req, 'since'), 'since');
  f.until = timeParam(queryString(req, 'until'), 'until');
  const limit = queryString(req, 'limit');
  if (limit !== undefined) {
    if (!/^\d+$/.test(limit) || Number(limit) < 1 || Number(limit) > 100000) throw new HttpError(400, `"limit" must be a whole number from 1 to 100000, not "${limit}"`, 'limit');
    f.limit = Number(limit);
  }
  const order = queryString(req, 'order');
  if (order !== undefined) {
    if (order !== 'asc' && order !== 'desc') throw new HttpError(400, `"order" must be asc or desc, not "${order}"`, 'order');
    f.order = order;
  }
  return f;
}

export function sendError(res: Response, e: unknown, defaultField?: string): void {
  const { status, body } = errorResponse(e, defaultField);
  if (status === 401) res.set('WWW-Authenticate', 'Bearer realm="pxeherd"');
  res.status(status).json(body);
}

/** Bearer token (or UI session) required; a read-only token may only read. */
export function requireRole(auth: AdminAuth, opts: { cookie: boolean }) {
  return (req: Request, res: Response, next: NextFunction) => {
    const who = auth.identify(req, opts);
    if (!who.role) return sendError(res, new HttpError(401, who.problem));
    if (who.role === 'readonly' && req.method !== 'GET' && req.method !== 'HEAD') {
      return sendError(res, new HttpError(403, 'this token is read-only: writes need the admin token (<statedir>/admin.token)'));
    }
    // A cookie-authenticated write would be open to cross-site requests: the API takes writes by bearer token only.
    if (who.via === 'cookie' && req.method !== 'GET' && req.method !== 'HEAD') {
      return sendError(res, new HttpError(403, 'API writes need "Authorization: Bearer <token>"; the UI session may only read'));
    }
    res.locals.role = who.role satisfies Role;
    next();
  };
}

// ---- the router --------------------------------------------------------------------------

/** REST API, mounted at /api/v1. Every operation goes through the same NodeService as the CLI. */
export function createApiRouter(deps: AdminDeps, auth: AdminAuth, streams: Set<() => void> = new Set()): Router {
  const { store, service } = deps;
  const r = express.Router();
  r.use(requireRole(auth, { cookie: true }));
  r.use(express.json({ limit: '1mb', strict: false }));
  r.use(express.text({ type: ['text/*', 'application/csv'], limit: '16mb' }));

  const inTransaction = <T>(fn: () => T): T => store.db.transaction(fn)();
  const nodeOr404 = (id: string): Node => service.get(id);
  const now = () => (deps.now ? deps.now() : Date.now());
  // Listings carry `stale`; a single node also its `hardware` and latest `health`.
  const listJson = (n: Node, t: number) => nodeJson(n, nodeExtras(store, n, { now: t }));

  // -- nodes
  r.get('/nodes', (req, res) => {
    const args = queryArgs(req);
    try {
      const t = now();
      res.json({ nodes: service.list(args).map((n) => listJson(n, t)) });
    } catch (e) {
      sendError(res, e, 'q');
    }
  });

  r.post('/nodes', (req, res) => {
    const b = bodyObject(req);
    onlyKeys(b, ['mac', 'name', 'group', 'vnfs', 'ip', 'boot', 'enabled', 'debug', 'attrs']);
    const mac = reqString(b, 'mac');
    // The store checks the MAC too; checked here first so the error names the field.
    const parsed = parseMac(mac);
    if (!parsed.ok) throw new HttpError(400, parsed.error, 'mac');
    const n = service.add({
      mac,
      name: optString(b, 'name'),
      group: optString(b, 'group'),
      vnfs: optString(b, 'vnfs'),
      ip: optString(b, 'ip'),
      boot: optString(b, 'boot') as never,
      enabled: b.enabled === undefined ? undefined : boolValue(b, 'enabled'),
      debug: b.debug === undefined ? undefined : boolValue(b, 'debug'),
      attrs: attrsOf(b, false),
    });
    res.status(201).json(nodeJson(n));
  });

  // Bulk operations take NODES like the CLI (names, globs, ranges, MACs or a query).
  r.post('/nodes/set', (req, res) => {
    const b = bodyObject(req);
    onlyKeys(b, ['key', 'value', 'nodes']);
    const key = reqString(b, 'key');
    if (b.value === undefined) throw new HttpError(400, '"value" is required', 'value');
    const value = wordOf(b, 'value', true);
    const nodes = service.set(key, value, nodesArg(b));
    res.json({ nodes: nodes.map((n) => nodeJson(n)) });
  });
  r.post('/nodes/delete', (req, res) => {
    const b = bodyObject(req);
    onlyKeys(b, ['nodes']);
    const nodes = service.delete(nodesArg(b));
    res.json({ deleted: nodes.map((n) => n.name) });
  });
  for (const [action, value] of [
    ['enable', 'yes'],
    ['disable', 'no'],
  ] as const) {
    r.post(`/nodes/${action}`, (req, res) => {
      const b = bodyObject(req);
      onlyKeys(b, ['nodes']);
      res.json({ nodes: service.set('enabled', value, nodesArg(b)).map((n) => nodeJson(n)) });
    });
    r.post(`/nodes/:node/${action}`, (req, res) => {
      const n = nodeOr404(req.params.node as string);
      res.json(nodeJson(service.set('enabled', value, [n.mac])[0]!));
    });
  }

  r.post('/nodes/import', (req, res) => {
    let text: string;
    let format: NodeFormat;
    if (typeof req.body === 'string') {
      text = req.body;
      format = formatParam(queryString(req, 'format'));
    } else {
      const b = bodyObject(req);
      onlyKeys(b, ['text', 'format']);
      text = reqString(b, 'text');
      format = formatParam(optString(b, 'format'));
    }
    const nodes = service.importText(text, format);
    res.status(201).json({ imported: nodes.length, nodes: nodes.map((n) => n.name) });
  });

  // A node literally named "export" is reached by its MAC (GET /nodes/<mac>).
  r.get('/nodes/export', (req, res) => {
    const format = formatParam(queryString(req, 'format'));
    let text: string;
    try {
      text = service.exportText(queryArgs(req), format);
    } catch (e) {
      return sendError(res, e, 'q');
    }
    res.type(FORMAT_TYPES[format]).send(text);
  });

  r.get('/nodes/:node', (req, res) => {
    const n = nodeOr404(req.params.node as string);
    res.json(nodeJson(n, nodeExtras(store, n, { detail: true, now: now() })));
  });

  r.patch('/nodes/:node', (req, res) => {
    const n = nodeOr404(req.params.node as string);
    const b = bodyObject(req);
    onlyKeys(b, [...NODE_FIELDS, 'attrs']);
    const changes: [string, string][] = [];
    for (const k of NODE_FIELDS) if (b[k] !== undefined) changes.push([k, wordOf(b, k)]);
    for (const [k, v] of Object.entries(attrsOf(b, true) ?? {})) changes.push([`attr.${k}`, v]);
    if (changes.length === 0) throw new HttpError(400, `nothing to change: send fields (${NODE_FIELDS.join(', ')}) or attrs`, 'body');
    // All changes or none: a bad second field must not leave the first applied.
    const updated = inTransaction(() => {
      for (const [k, v] of changes) {
        try {
          service.set(k, v, [n.mac]);
        } catch (e) {
          if (e instanceof Error && 'field' in e && (e as { field?: string }).field === 'key' && k.startsWith('attr.')) {
            throw new HttpError(400, e.message, k.replace(/^attr\./, 'attrs.'));
          }
          throw e;
        }
      }
      return store.nodes.byMac(n.mac)!;
    });
    res.json(nodeJson(updated));
  });

  r.delete('/nodes/:node', (req, res) => {
    const n = nodeOr404(req.params.node as string);
    service.delete([n.mac]);
    res.json({ deleted: [n.name] });
  });

  r.post('/nodes/:node/replace', (req, res) => {
    const b = bodyObject(req);
    onlyKeys(b, ['mac']);
    const n = service.replace(req.params.node as string, reqString(b, 'mac'));
    res.json(nodeJson(n));
  });

  // -- disk plan (src/install/plan.ts): what install=disk would write; changes nothing
  r.get('/nodes/:node/plan', (req, res) => {
    const n = nodeOr404(req.params.node as string);
    try {
      res.json(planForNode(store, n));
    } catch (e) {
      if (e instanceof PlanError) throw new HttpError(422, e.message, e.attr ? `attrs.${e.attr}` : undefined);
      throw e;
    }
  });

  // -- disk rollback (src/install/rollback.ts): pin the install before, reinstall; answers once
  // the node is power cycled (follow it on GET /events?node=NAME). Refusals change nothing (409).
  r.post('/nodes/:node/rollback', async (req, res) => {
    const n = nodeOr404(req.params.node as string);
    const extra = Object.keys(bodyObject(req))[0];
    if (extra !== undefined) throw new HttpError(400, `this call takes no fields ("${extra}"): it answers once ${n.name} is power cycled; follow the reinstall with GET /api/v1/events?node=${n.name}`, extra);
    const out = await startRollback(deps, n);
    if (out.result === 'failed') throw new HttpError(502, `${out.message} (${n.name} is pinned to ${out.vnfsAfter} and set to boot once: fix the power driver, or power it on by hand)`, 'attrs.power');
    res.json({ node: out.node, from: out.from, to: out.to, vnfs: { before: out.vnfsBefore, after: out.vnfsAfter }, result: out.result, message: out.message });
  });

  // -- the node lifecycle for a scheduler driving pxeherd over HTTP (Apache VCL's load and
  // reclaim, issue 18): what `pxeherd power`, `node reinstall` and `node release` do. A failure
  // answers with the outcome and an `error`: 502 when the BMC or power driver failed, 504 when a
  // reinstall with wait timed out, 422 when the node's boot failed (the stage and the failing
  // event are in the body).
  r.post('/nodes/:node/power', async (req, res) => {
    const n = nodeOr404(req.params.node as string);
    const b = bodyObject(req);
    onlyKeys(b, ['action']);
    const action = reqString(b, 'action');
    if (!(POWER_ACTIONS as readonly string[]).includes(action)) throw new HttpError(400, `"action" must be one of ${POWER_ACTIONS.join(', ')}, not "${action}"`, 'action');
    const out = await powerOf(deps).run(n, action as PowerAction);
    res.status(out.ok ? 200 : 502).json(out.ok ? out : { ...out, error: `power ${action} of ${n.name} failed: ${out.error ?? 'unknown error'}` });
  });
  r.post('/nodes/:node/reinstall', async (req, res) => {
    const n = nodeOr404(req.params.node as string);
    const b = bodyObject(req);
    onlyKeys(b, ['wait', 'timeout']);
    if (b.wait !== undefined && typeof b.wait !== 'boolean') throw new HttpError(400, '"wait" must be true or false', 'wait');
    const timeout = b.timeout ?? 900;
    if (typeof timeout !== 'number' || !(timeout > 0) || timeout > 86_400) throw new HttpError(400, '"timeout" must be a number of seconds > 0 (at most 86400)', 'timeout');
    if (!n.enabled) throw new HttpError(409, `${n.name} is disabled: enable it first (pxeherd node enable ${n.name})`, 'node');
    const [out] = await reinstall([n], reinstallBackendOf(deps), { wait: b.wait === true, timeoutMs: timeout * 1000, parallel: 1 });
    const status = out!.result === 'ready' || out!.result === 'started' ? 200 : out!.result === 'timeout' ? 504 : out!.stage === 'power' ? 502 : 422;
    res.status(status).json(status === 200 ? out : { ...out, error: `reinstall of ${n.name} ${out!.result === 'timeout' ? 'timed out' : 'failed'} at ${out!.stage}: ${out!.message}` });
  });
  r.post('/nodes/:node/release', async (req, res) => {
    const n = nodeOr404(req.params.node as string);
    const b = bodyObject(req);
    onlyKeys(b, ['wipe']);
    const w = b.wipe ?? false;
    if (w !== false && w !== true && w !== 'quick' && w !== 'full') throw new HttpError(400, '"wipe" must be false, true (quick), "quick" or "full"', 'wipe');
    const wipeMode = w === false ? null : w === 'full' ? 'full' : 'quick';
    const power = powerOf(deps);
    const [out] = await releaseNodes(
      [n],
      { mark: (ns) => markForRelease(store, ns, wipeMode), powerOff: (x) => power.run(x, 'off'), record: (ev) => store.events.record(ev), map: async (items, fn) => Promise.all(items.map(fn)) },
      { wipe: wipeMode !== null, wipeMode },
    );
    res.status(out!.power === 'off' ? 200 : 502).json(out!.power === 'off' ? out : { ...out, error: `${n.name} is marked to be provisioned on its next boot${wipeMode ? ` (wipe ${wipeMode})` : ''} but did not power off: ${out!.error ?? 'unknown error'}` });
  });

  // -- nodescripts (implemented by src/nodescripts, injected by the wiring)
  const needScripts = () => {
    if (!deps.scripts) throw new HttpError(501, 'nodescript listing is not available in this server (no script engine wired)');
    return deps.scripts;
  };
  r.get('/nodes/:node/scripts', async (req, res) => {
    const s = needScripts();
    const n = nodeOr404(req.params.node as string);
    const state = stateParam(queryString(req, 'state'));
    res.json(await s.list(n, state));
  });
  r.get('/nodes/:node/script', async (req, res) => {
    const s = needScripts();
    const n = nodeOr404(req.params.node as string);
    const state = stateParam(queryString(req, 'state'));
    const out = await s.render(n, state);
    if (typeof out === 'string') res.json({ node: n.name, state, text: out });
    else res.json(out);
  });

  // -- explain (src/dhcp/explain.ts, injected)
  r.get('/explain/:mac', async (req, res) => {
    if (!deps.explain) throw new HttpError(501, 'explain is not available in this server (no DHCP handler wired)');
    const m = parseMac(req.params.mac as string);
    if (!m.ok) throw new HttpError(400, m.error, 'mac');
    const archText = queryString(req, 'arch');
    let arch: number | undefined;
    if (archText !== undefined && archText !== '') {
      if (!/^\d+$/.test(archText) || Number(archText) > 65535) throw new HttpError(400, `"arch" must be a client architecture number 0-65535 (0 BIOS, 7 UEFI x64, 11 arm64, 16 HTTP), not "${archText}"`, 'arch');
      arch = Number(archText);
    }
    const opts = {
      arch,
      ipxe: boolParam(queryString(req, 'ipxe'), 'ipxe'),
      proxy: boolParam(queryString(req, 'proxy'), 'proxy'),
      httpClient: boolParam(queryString(req, 'http_client'), 'http_client'),
    };
    res.json(await deps.explain(m.mac, opts));
  });

  // -- groups
  r.get('/groups', (_req, res) => {
    res.json({ groups: store.groups.list().map(groupJson) });
  });
  r.get('/groups/:group', (req, res) => {
    const name = req.params.group as string;
    const g = store.groups.get(name);
    if (!g) throw new NotFound(`no group named "${name}"`);
    const members = store.nodes.all().filter((n) => n.group === name);
    res.json({ ...groupJson(g), members: members.map((n) => n.name) });
  });
  r.patch('/groups/:group', (req, res) => {
    const name = req.params.group as string;
    const b = bodyObject(req);
    onlyKeys(b, ['attrs']);
    const attrs = attrsOf(b, true);
    if (!attrs || Object.keys(attrs).length === 0) throw new HttpError(400, '"attrs" is required: {KEY: "value"} (null removes one)', 'attrs');
    inTransaction(() => {
      for (const [k, v] of Object.entries(attrs)) {
        try {
          store.groups.set(name, k, v);
        } catch (e) {
          if ((e as { field?: string }).field === 'key') throw new HttpError(400, (e as Error).message, `attrs.${k}`);
          throw e;
        }
      }
    });
    res.json(groupJson(store.groups.get(name)!));
  });
  r.delete('/groups/:group', (req, res) => {
    const name = req.params.group as string;
    const moveTo = queryString(req, 'move_to');
    store.groups.delete(name, moveTo === '' ? undefined : moveTo);
    res.json({ deleted: name });
  });

  // -- VNFS
  r.get('/vnfs', (_req, res) => {
    res.json({ vnfs: store.vnfs.list().map(vnfsJson) });
  });
  r.post('/vnfs', (req, res) => {
    const b = bodyObject(req);
    onlyKeys(b, ['name', 'kernel', 'initrd', 'cmdline', 'attrs']);
    const v = service.addVnfs({
      name: reqString(b, 'name'),
      kernel: reqString(b, 'kernel'),
      initrd: reqString(b, 'initrd'),
      cmdline: optString(b, 'cmdline'),
      attrs: attrsOf(b, false),
    });
    const withCount = store.vnfs.list().find((x) => x.name === v.name) ?? v;
    res.status(201).json(vnfsJson(withCount));
  });
  const vnfsOr404 = (name: string) => {
    const v = store.vnfs.list().find((x) => x.name === name);
    if (!v) throw new NotFound(`no VNFS named "${name}"`);
    return v;
  };
  r.get('/vnfs/:vnfs', (req, res) => {
    const v = vnfsOr404(req.params.vnfs as string);
    res.json({ ...vnfsJson(v), dir: service.vnfsDir(v.name) });
  });
  r.patch('/vnfs/:vnfs', (req, res) => {
    const v = vnfsOr404(req.params.vnfs as string);
    const b = bodyObject(req);
    onlyKeys(b, ['cmdline', 'kernel', 'initrd', 'attrs']);
    const changes: [string, string, string][] = [];
    for (const k of ['cmdline', 'kernel', 'initrd']) {
      const val = optString(b, k);
      if (val !== undefined) changes.push([k, val, k]);
    }
    for (const [k, val] of Object.entries(attrsOf(b, true) ?? {})) changes.push([k, val, `attrs.${k}`]);
    if (changes.length === 0) throw new HttpError(400, 'nothing to change: send cmdline, kernel, initrd or attrs', 'body');
    inTransaction(() => {
      for (const [k, val, field] of changes) {
        try {
          store.vnfs.set(v.name, k, val);
        } catch (e) {
          if ((e as { field?: string }).field === 'key') throw new HttpError(400, (e as Error).message, field);
          throw e;
        }
      }
    });
    res.json(vnfsJson(vnfsOr404(v.name)));
  });
  r.get('/vnfs/:vnfs/revisions', (req, res) => {
    const v = vnfsOr404(req.params.vnfs as string);
    const images = imagesOf(deps);
    const revs = images.revisions(v.name);
    const usage = revs.length ? new Map(images.usage(v.name).revisions.map((u) => [u.rev, u])) : new Map();
    res.json({ vnfs: v.name, current: v.currentRev ?? null, revisions: revs.map((x) => revisionJson(x, usage.get(x.rev))) });
  });
  r.post('/vnfs/:vnfs/rollback', async (req, res) => {
    const v = vnfsOr404(req.params.vnfs as string);
    const b = bodyObject(req);
    onlyKeys(b, ['rev']);
    if (b.rev !== undefined && !(Number.isInteger(b.rev) && (b.rev as number) > 0)) throw new HttpError(400, 'rev must be a revision number (1, 2, ...)', 'rev');
    res.json(await imagesOf(deps).rollback(v.name, b.rev as number | undefined));
  });
  // `pxeherd vnfs capture NODE NAME` over HTTP: answers when the revision is made (minutes for a
  // whole root filesystem); progress is in the server log, the outcome a vnfs.capture event.
  r.post('/vnfs/:vnfs/capture', async (req, res) => {
    const name = req.params.vnfs as string;
    const b = bodyObject(req);
    onlyKeys(b, ['node', 'comment', 'exclude']);
    const node = nodeOr404(reqString(b, 'node'));
    const exclude = b.exclude ?? [];
    if (!Array.isArray(exclude) || exclude.some((x) => typeof x !== 'string')) throw new HttpError(400, '"exclude" must be a list of absolute paths on the node', 'exclude');
    const attrs = store.attrsFor(node);
    const fromConfig = service.captureExcludes;
    for (const e of fromConfig) excludePattern(e, 'config vnfs.capture_exclude');
    for (const e of splitExcludes(attrs.capture_exclude)) excludePattern(e, `attribute capture_exclude of ${node.name}`);
    for (const e of exclude as string[]) {
      try {
        excludePattern(e, 'exclude');
      } catch (err) {
        throw new HttpError(400, (err as Error).message, 'exclude');
      }
    }
    const { ensureKey } = await import('../remote/keys.js');
    const { nodeTarget } = await import('../remote/target.js');
    const { defaultTemplateDirs } = await import('../boot/service.js');
    const target = nodeTarget(node, attrs, ensureKey(service.statedir), service.statedir);
    const images = new ImageService({ store, statedir: service.statedir, templatesDirs: defaultTemplateDirs(service.statedir), events: store.events });
    const from = node.vnfs.includes('@') ? node.vnfs.slice(0, node.vnfs.lastIndexOf('@')) : node.vnfs;
    try {
      const r = await images.capture({ name, node: { name: node.name, mac: node.mac }, target, excludes: [...fromConfig, ...splitExcludes(attrs.capture_exclude), ...(exclude as string[])], comment: optString(b, 'comment'), from: from || undefined });
      const c = r.capture!;
      res.status(201).json({ vnfs: r.vnfs, rev: r.rev, parent: r.parent, node: node.name, streamedBytes: c.bytes, streamMs: c.ms, entries: c.tar.entries, cleaned: c.clean, warnings: c.warnings, manifest: r.manifest ?? null });
    } catch (e) {
      // The node's side (unreachable, host key, tar, a refused archive): a bad gateway, not our fault.
      if (e instanceof CaptureError || e instanceof SshError) throw new HttpError(502, e.message, 'node');
      if (e instanceof Error && / filled up during the capture /.test(e.message)) throw new HttpError(507, e.message);
      throw e;
    }
  });
  r.delete('/vnfs/:vnfs', (req, res) => {
    const name = req.params.vnfs as string;
    service.deleteVnfs(name, boolParam(queryString(req, 'keep_files'), 'keep_files'));
    res.json({ deleted: name });
  });

  // -- leases
  r.get('/leases', (req, res) => {
    const active = boolParam(queryString(req, 'active'), 'active');
    const leases = active ? store.leases.active(deps.now?.() ?? Date.now()) : store.leases.all();
    res.json({ leases: leases.map(leaseJson) });
  });

  // -- events
  r.get('/events', (req, res) => {
    res.json({ events: (deps.events ?? store.events).query(eventFilter(req)).map(eventJson) });
  });
  r.get('/events/stream', (req, res) => {
    const filter = eventFilter(req);
    const end = sseStream(req, res, deps.events ?? store.events, filter, deps.heartbeatMs, () => streams.delete(end));
    streams.add(end);
  });

  r.use((req, _res) => {
    throw new HttpError(404, `no API route ${req.method} /api/v1${req.path}`);
  });
  r.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    sendError(res, err);
  });
  return r;
}

function boolValue(o: Obj, key: string): boolean {
  const w = wordOf(o, key).toLowerCase();
  if (['1', 'yes', 'true', 'on'].includes(w)) return true;
  if (['0', 'no', 'false', 'off'].includes(w)) return false;
  throw new HttpError(400, `${key} must be yes/no (or 1/0, true/false), not "${String(o[key])}"`, key);
}
