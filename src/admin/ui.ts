import express, { type Request, type Response, type NextFunction, type Router } from 'express';
import { eventJson } from '../nodes/json.js';
import { BOOT_MODES, type Node } from '../nodes/types.js';
import type { AdminAuth, Role } from './auth.js';
import { imagesOf, startRollback, type AdminDeps } from './deps.js';
import { errorResponse, HttpError } from './errors.js';
import { buildTimeline, nodeEvents, summarize, isFailure } from './timeline.js';
import { Views } from './views.js';
import { sseStream } from './sse.js';
import { eventFilter } from './api.js';
import { nodeExtras } from '../inventory/context.js';
import { shownValue } from '../security/secrets.js';

/** The UI loads nothing from elsewhere and runs no inline script. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.set({
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    // The one-click link carries the token: never send a URL to another site. (Not
    // no-referrer: with it Chromium sends "Origin: null" on same-origin form posts.)
    'Referrer-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  });
  next();
}

/** Boot modes an admin picks in the UI (disabled is the enable/disable switch's job). */
const UI_BOOT_MODES = BOOT_MODES.filter((m) => m !== 'disabled');

function nodeRow(n: Node, stale = false) {
  return { name: n.name, mac: n.mac, state: n.state, ip: n.ip, group: n.group, vnfs: n.vnfs, lastContact: n.lastContact, boot: n.boot, enabled: n.enabled, stale };
}

const gb = (bytes: number) => Math.round(bytes / 1e8) / 10;

/** The node page's hardware section: the current report, flattened for the template. */
function hardwareView(x: ReturnType<typeof nodeExtras>) {
  if (!('hardware' in x) || !x.hardware) return undefined;
  const hw = x.hardware;
  const r = hw.report;
  return {
    version: hw.version,
    reported: hw.reported,
    previous: hw.previous,
    cpu: `${r.cpu.count} × ${r.cpu.model || '?'}`,
    memGb: hw.facts.mem_gb,
    firmware: r.firmware,
    system: [r.dmi.vendor, r.dmi.product].filter(Boolean).join(' '),
    serial: r.dmi.serial,
    uuid: r.dmi.uuid,
    disks: r.disks.map((d) => ({ ...d, gb: gb(d.size_bytes) })),
    nics: r.nics,
  };
}

function eventRow(e: ReturnType<typeof eventJson>, failed: boolean, summary: string) {
  return { ...e, summary, failed };
}

export function createUiRouter(deps: AdminDeps, auth: AdminAuth, streams: Set<() => void>): Router {
  const { store, service } = deps;
  const dir = deps.templatesDir ?? undefined;
  const views = new Views(dir, deps.now);
  const assets = { js: Views.asset(views.dir, 'app.js'), css: Views.asset(views.dir, 'style.css') };
  const r = express.Router();
  r.use(securityHeaders);

  // Static assets hold no data: served without a session so even the 401 page is styled.
  r.get('/ui/static/app.js', (_req, res) => {
    res.type('text/javascript; charset=utf-8').send(assets.js);
  });
  r.get('/ui/static/style.css', (_req, res) => {
    res.type('text/css; charset=utf-8').send(assets.css);
  });

  const page = (res: Response, status: number, name: Parameters<Views['render']>[0], title: string, data: Record<string, unknown>) => {
    const role = res.locals.role as Role | undefined;
    const session = { canWrite: role === 'admin', csrf: res.locals.csrf as string | undefined };
    res
      .status(status)
      .type('text/html; charset=utf-8')
      .send(views.render(name, { ...data, ...session }, { ...session, title, role, signedIn: role !== undefined, nav: { [name]: true } }));
  };
  const message = (res: Response, status: number, title: string, text: string) => page(res, status, 'message', title, { title, message: text, status });

  // -- authentication: ?token= once (sets the session cookie), then the cookie
  r.use((req, res, next) => {
    const token = req.query.token;
    if (token !== undefined) {
      const role = typeof token === 'string' ? auth.roleOfToken(token) : undefined;
      if (!role) return message(res, 401, 'Wrong token', 'The token in this link is not valid. Open the link printed by "pxeherd serve", or use the token in <statedir>/admin.token.');
      res.set('Set-Cookie', auth.sessionCookie(role));
      // Drop the token from the address bar and history.
      const u = new URL(req.originalUrl, 'http://admin.invalid');
      u.searchParams.delete('token');
      return res.redirect(303, u.pathname + u.search);
    }
    const who = auth.identify(req, { cookie: true });
    if (!who.role) return message(res, 401, 'Sign in', `${who.problem}. Open the link printed by "pxeherd serve" (http://HOST:PORT/?token=...).`);
    res.locals.role = who.role;
    res.locals.csrf = auth.csrfToken(who.role);
    next();
  });

  // -- pages
  r.get('/', (req, res) => {
    const q = typeof req.query.q === 'string' ? req.query.q.trim() : '';
    let nodes: Node[] = [];
    let error: string | undefined;
    try {
      nodes = service.list(q.split(/\s+/).filter(Boolean));
    } catch (e) {
      error = errorResponse(e).body.error;
    }
    page(res, error ? 400 : 200, 'nodes', 'Nodes', { q, error, nodes: nodes.map((n) => nodeRow(n, nodeExtras(store, n, { now: deps.now?.() }).stale)), count: nodes.length, total: store.nodes.count() });
  });

  r.get('/ui/nodes/:node', (req, res) => {
    let n: Node;
    try {
      n = service.get(req.params.node as string);
    } catch (e) {
      const { status, body } = errorResponse(e);
      return message(res, status, 'No such node', body.error);
    }
    const groupAttrs = store.groups.attrsOf(n.group);
    const attrs = Object.keys({ ...groupAttrs, ...n.attrs })
      .sort()
      // A password hash is a secret: the page says one is set, never what it is.
      .map((key) => ({ key, value: shownValue(key, n.attrs[key] ?? groupAttrs[key]!), from: key in n.attrs ? 'node' : `group ${n.group}` }));
    const events = nodeEvents((f) => (deps.events ?? store.events).query(f), n, 500);
    // The root-filesystem revision the node runs: the last one stage one switched into.
    const sw = (deps.events ?? store.events).query({ mac: n.mac, kind: 'image.switch_root', limit: 1 })[0];
    const running = sw ? `${n.vnfs.replace(/@[0-9]+$/, '')} r${(sw.detail as { rev?: number }).rev ?? '?'}` : undefined;
    const changed = typeof req.query.changed === 'string' ? req.query.changed : undefined;
    const x = nodeExtras(store, n, { detail: true, now: deps.now?.() });
    // A disk node with an earlier install recorded can be rolled back to it (src/install/rollback.ts).
    const install = store.installs.get(n.mac);
    page(res, 200, 'node', n.name, {
      node: nodeRow(n, x.stale),
      running,
      hardware: hardwareView(x),
      health: 'health' in x ? x.health : undefined,
      checkinInterval: 'checkinInterval' in x ? x.checkinInterval : undefined,
      debug: n.debug,
      attrs,
      boots: buildTimeline(events),
      eventCount: events.length,
      modes: UI_BOOT_MODES.map((m) => ({ mode: m, current: m === n.boot })),
      rollback: install?.previous ? { now: `${install.vnfs} r${install.rev}`, to: `${install.previous.vnfs} r${install.previous.rev}` } : undefined,
      changed:
        changed === 'enabled'
          ? `node ${n.enabled ? 'enabled' : 'disabled'}`
          : changed === 'boot'
            ? `boot mode set to ${n.boot}`
            : changed === 'rollback'
              ? `rolling back: pinned to ${n.vnfs}, boot once, next boot from the network, power cycled (the timeline below follows it)`
              : undefined,
    });
  });

  r.get('/ui/groups', (_req, res) => {
    const groups = store.groups.list().map((g) => ({ name: g.name, nodes: g.nodes, attrs: Object.entries(g.attrs).map(([key, value]) => ({ key, value: shownValue(key, value) })) }));
    page(res, 200, 'groups', 'Groups', { groups });
  });

  r.get('/ui/vnfs', (req, res) => {
    const images = imagesOf(deps);
    const mib = (b: number | undefined) => (b === undefined ? '-' : `${(b / 1048576).toFixed(1)} MiB`);
    const vnfs = store.vnfs.list().map((v) => ({
      ...v,
      rooted: v.currentRev !== null && v.currentRev !== undefined,
      attrs: Object.entries(v.attrs).map(([key, value]) => ({ key, value: shownValue(key, value) })),
      revisions: images
        .revisions(v.name)
        .reverse()
        .map((r) => ({
          rev: r.rev,
          parent: r.parent ?? '-',
          current: r.current,
          source: r.source,
          comment: r.comment,
          created: new Date(r.createdAt).toISOString().replace('T', ' ').slice(0, 19),
          kernel: r.manifest.kernel || '-',
          squashfs: mib(r.manifest.artifacts['rootfs.squashfs']?.size),
          nodes: r.nodes.join(', ') || '-',
        })),
    }));
    const changed = typeof req.query.changed === 'string' ? req.query.changed : undefined;
    page(res, 200, 'vnfs', 'VNFS', { vnfs, changed });
  });

  r.post('/ui/vnfs/:vnfs', express.urlencoded({ extended: false, limit: '4kb' }), async (req, res) => {
    const role = res.locals.role as Role;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}`) return message(res, 403, 'Refused', `cross-origin form post from ${origin} refused`);
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') return message(res, 403, 'Refused', `form post from a ${site} page refused`);
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (!auth.checkCsrf(role, body.csrf)) return message(res, 403, 'Refused', 'the form is stale or did not come from this page (CSRF check failed): reload the page and try again');
    if (role !== 'admin') return message(res, 403, 'Read-only', 'this session uses the read-only token: changes need the admin token');
    try {
      if (body.action !== 'rollback') throw new HttpError(400, `unknown action "${String(body.action)}": use rollback`, 'action');
      if (typeof body.rev !== 'string' || !/^[1-9][0-9]*$/.test(body.rev)) throw new HttpError(400, 'rev must be a revision number', 'rev');
      const r = await imagesOf(deps).rollback(req.params.vnfs as string, Number(body.rev));
      res.redirect(303, `/ui/vnfs?changed=${encodeURIComponent(`${r.vnfs}: revision ${r.to} is current (was ${r.from})`)}`);
    } catch (e) {
      const { status, body: b } = errorResponse(e);
      message(res, status, 'Not changed', b.error);
    }
  });

  r.get('/ui/events', (_req, res) => {
    const events = (deps.events ?? store.events).query({ limit: 200 }).map((e) => eventRow(eventJson(e), isFailure(e), summarize(e)));
    page(res, 200, 'events', 'Live boot events', { events });
  });

  r.get('/ui/events/stream', (req, res) => {
    let filter;
    try {
      filter = eventFilter(req);
    } catch (e) {
      const { status, body } = errorResponse(e);
      return res.status(status).json(body);
    }
    const end = sseStream(req, res, deps.events ?? store.events, filter, deps.heartbeatMs, () => streams.delete(end));
    streams.add(end);
  });

  // -- actions: POST forms, guarded against cross-site requests twice over
  r.post('/ui/nodes/:node', express.urlencoded({ extended: false, limit: '16kb' }), async (req, res) => {
    const role = res.locals.role as Role;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${req.headers.host}`) return message(res, 403, 'Refused', `cross-origin form post from ${origin} refused`);
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') return message(res, 403, 'Refused', `form post from a ${site} page refused`);
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (!auth.checkCsrf(role, body.csrf)) return message(res, 403, 'Refused', 'the form is stale or did not come from this page (CSRF check failed): reload the page and try again');
    if (role !== 'admin') return message(res, 403, 'Read-only', 'this session uses the read-only token: changes need the admin token');
    try {
      const n = service.get(req.params.node as string);
      let changed: string;
      switch (body.action) {
        case 'enable':
        case 'disable':
          service.set('enabled', body.action === 'enable' ? 'yes' : 'no', [n.mac]);
          changed = 'enabled';
          break;
        case 'boot':
          if (typeof body.mode !== 'string' || !(UI_BOOT_MODES as readonly string[]).includes(body.mode)) {
            throw new HttpError(400, `boot mode must be one of ${UI_BOOT_MODES.join(', ')}, not "${String(body.mode)}"`, 'mode');
          }
          service.set('boot', body.mode, [n.mac]);
          changed = 'boot';
          break;
        case 'rollback': {
          const out = await startRollback(deps, n);
          if (out.result === 'failed') return message(res, 502, 'Power cycle failed', `${out.message}. ${n.name} is pinned to ${out.vnfsAfter} and set to boot once: fix its power driver, or power it on by hand.`);
          changed = 'rollback';
          break;
        }
        default:
          throw new HttpError(400, `unknown action "${String(body.action)}": use enable, disable, boot or rollback`, 'action');
      }
      res.redirect(303, `/ui/nodes/${encodeURIComponent(n.name)}?changed=${changed}`);
    } catch (e) {
      const { status, body: b } = errorResponse(e);
      message(res, status, 'Not changed', b.error);
    }
  });

  r.post('/ui/logout', express.urlencoded({ extended: false, limit: '4kb' }), (req, res) => {
    const role = res.locals.role as Role;
    if (!auth.checkCsrf(role, (req.body as Record<string, unknown> | undefined)?.csrf)) return message(res, 403, 'Refused', 'CSRF check failed: reload the page and try again');
    res.set('Set-Cookie', 'pxeherd_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0');
    message(res, 200, 'Signed out', 'The session cookie is removed. Open the link printed by "pxeherd serve" to sign in again.');
  });

  r.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const { status, body } = errorResponse(err);
    message(res, status, 'Error', body.error);
  });
  return r;
}
