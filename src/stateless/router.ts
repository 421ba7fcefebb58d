import { Router, type Request, type Response } from 'express';
import type { EventSink, Node } from '../nodes/types.js';
import { parseMac } from '../nodes/mac.js';
import type { NodeTokens } from '../security/tokens.js';
import { peerIp } from '../util/net.js';
import { identityEntries, IdentityError } from './identity.js';
import { OverlayError, overlayTar } from './overlay.js';
import { nodeOverlay, type OverlaySources } from './context.js';
import { writeTar } from './tar.js';

/**
 * Per-node files of a stateless node, on the node-facing HTTP port:
 *   GET /node/identity.tar?mac=M&token=T      host keys, machine-id, root password hash
 *   GET /node/overlay.tar?mac=M&token=T[&have=HASH]
 *        the node's overlay bundle; an empty 200 when HASH is the current one (one request)
 *   GET /node/report/<kind>?mac=M&token=T&...  the node reports a step: image.download,
 *        image.verify, image.switch_root, node.checkin (an event on its timeline)
 * Only the node itself gets them: a valid token for its MAC (security.node_tokens) AND a
 * request from its address. Anything else is 403 and a `security.denied` event. Secrets
 * never reach a log or an event: refusals and events name files, never their contents.
 */
export interface NodeFilesDeps extends OverlaySources {
  byMac(mac: string): Node | undefined;
  events: EventSink;
  tokens: NodeTokens;
  /** security.node_tokens */
  tokensRequired: boolean;
  /** A report was recorded (install.done: the master records the install and boots the disk from now on). */
  onReport?: (node: Node, kind: string, detail: Record<string, unknown>) => void;
}

type Check = { ok: true; node: Node } | { ok: false };

function single(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** Only the node itself: its token (when tokens are on) and its address. */
export function checkNodeRequest(deps: Pick<NodeFilesDeps, 'byMac' | 'events' | 'tokens' | 'tokensRequired'>, what: string, query: Record<string, unknown>, remote: string | undefined): { ok: true; node: Node } | { ok: false; status: number; reason: string } {
  const ip = peerIp(remote);
  const m = parseMac(single(query.mac) ?? '');
  const denied = (reason: string, node?: Node) => {
    deps.events.record({ mac: node?.mac ?? (m.ok ? m.mac : undefined), node: node?.name, kind: 'security.denied', detail: { what, reason, ip: ip ?? null } });
    return { ok: false as const, status: 403, reason: `${what}: ${reason}` };
  };
  if (!m.ok) return denied('give mac= (the node\'s MAC)');
  const node = deps.byMac(m.mac);
  if (!node) return denied(`unknown node ${m.mac}`);
  if (deps.tokensRequired) {
    const v = deps.tokens.verifyToken(node.mac, single(query.token));
    if (!v.ok) return denied(`node ${node.name}: ${v.reason}`, node);
  }
  if (!node.ip) return denied(`node ${node.name} has no known address yet: per-node files go only to the node's own address`, node);
  if (ip !== node.ip) return denied(`node ${node.name}: request came from ${ip ?? 'an unknown address'}, but the node's address is ${node.ip}`, node);
  return { ok: true, node };
}

function refuse(res: Response, status: number, reason: string): void {
  res.status(status).type('text/plain; charset=utf-8').set('Cache-Control', 'no-store').send(`pxeherd: ${reason}\n`);
}

function sendTar(res: Response, body: Buffer, extra: Record<string, string> = {}): void {
  res.status(200).set({ 'Content-Type': 'application/x-tar', 'Cache-Control': 'no-store', ...extra });
  res.end(body);
}

/** Values a node may report: numbers, hex digests, revision numbers, short words. */
const REPORT_FIELDS: Record<string, Record<string, RegExp>> = {
  'image.download': { file: /^[\w.-]{1,64}$/, rev: /^\d{1,9}$/, bytes: /^\d{1,15}$/, ms: /^\d{1,12}$/, tries: /^\d{1,4}$/, ok: /^[01]$/ },
  'image.verify': { file: /^[\w.-]{1,64}$/, rev: /^\d{1,9}$/, expected: /^[0-9a-f]{64}$/, actual: /^[0-9a-f]{0,64}$/, ok: /^[01]$/ },
  'image.switch_root': { rev: /^\d{1,9}$/, root: /^[\w/.-]{1,64}$/, init: /^[\w/.-]{1,64}$/ },
  'node.checkin': { rev: /^\d{0,9}$/, first: /^[01]$/, overlay: /^(same|updated|failed)$/, changed: /^\d{1,6}$/ },
  // Install to disk (nodescripts 08-disk-plan, 20-disk-install, 85-disk-boot).
  'install.start': { rev: /^\d{1,9}$/, disk: /^[a-z][a-z0-9]{0,31}$/, firmware: /^(bios|uefi)$/ },
  'install.write': { rev: /^\d{1,9}$/, bytes: /^\d{1,15}$/, ms: /^\d{1,12}$/ },
  'install.done': { rev: /^\d{1,9}$/, vnfs: /^[\w.-]{1,64}$/, disk: /^[a-z][a-z0-9]{0,31}$/, firmware: /^(bios|uefi)$/, ms: /^\d{1,12}$/ },
  'install.fail': { stage: /^[a-z]{1,16}$/, attr: /^[\w]{0,32}$/, error: /^[\x20-\x7e]{0,600}$/ },
};
const NUMERIC = new Set(['rev', 'bytes', 'ms', 'tries', 'changed']);


export function nodeFilesRouter(deps: NodeFilesDeps): Router {
  const router = Router();

  router.get('/node/identity.tar', async (req: Request, res: Response) => {
    const c = checkNodeRequest(deps, 'identity', req.query as Record<string, unknown>, req.socket.remoteAddress);
    if (!c.ok) return refuse(res, c.status, c.reason);
    try {
      const body = writeTar(await identityEntries(deps.statedir, c.node.name, deps.attrsFor(c.node)));
      deps.events.record({ mac: c.node.mac, node: c.node.name, kind: 'node.identity', detail: { bytes: body.length } });
      sendTar(res, body);
    } catch (e) {
      const msg = (e as Error).message;
      deps.events.record({ mac: c.node.mac, node: c.node.name, kind: 'node.identity.error', detail: { error: msg } });
      refuse(res, e instanceof IdentityError ? 409 : 500, msg);
    }
  });

  router.get('/node/overlay.tar', (req: Request, res: Response) => {
    const c = checkNodeRequest(deps, 'overlay', req.query as Record<string, unknown>, req.socket.remoteAddress);
    if (!c.ok) return refuse(res, c.status, c.reason);
    try {
      const o = nodeOverlay(deps, c.node);
      const have = single(req.query.have);
      if (have && have === o.hash) {
        // Unchanged: one request, an empty answer.
        res.status(200).set({ 'Cache-Control': 'no-store', 'X-Pxeherd-Overlay': o.hash }).end();
        return;
      }
      const body = overlayTar(o);
      deps.events.record({ mac: c.node.mac, node: c.node.name, kind: 'overlay.send', detail: { hash: o.hash, files: o.files.length, deletes: o.deletes.length, bytes: body.length } });
      sendTar(res, body, { 'X-Pxeherd-Overlay': o.hash });
    } catch (e) {
      const msg = (e as Error).message;
      deps.events.record({ mac: c.node.mac, node: c.node.name, kind: 'overlay.error', detail: { error: msg } });
      refuse(res, e instanceof OverlayError ? 409 : 500, msg);
    }
  });

  router.get('/node/report/:kind', (req: Request, res: Response) => {
    const kind = String(req.params.kind);
    const fields = REPORT_FIELDS[kind];
    if (!fields) return refuse(res, 404, `unknown report ${kind}: one of ${Object.keys(REPORT_FIELDS).join(', ')}`);
    const c = checkNodeRequest(deps, `report ${kind}`, req.query as Record<string, unknown>, req.socket.remoteAddress);
    if (!c.ok) return refuse(res, c.status, c.reason);
    const detail: Record<string, unknown> = {};
    for (const [k, re] of Object.entries(fields)) {
      const v = single(req.query[k]);
      if (v === undefined) continue;
      if (!re.test(v)) return refuse(res, 400, `report ${kind}: ${k}="${v.slice(0, 80)}" is not valid`);
      detail[k] = NUMERIC.has(k) && v !== '' ? Number(v) : k === 'ok' || k === 'first' ? v === '1' : v;
    }
    if (kind === 'image.download' && typeof detail.bytes === 'number' && typeof detail.ms === 'number') {
      detail.mibPerSecond = detail.ms > 0 ? Math.round((detail.bytes / 1048576 / (detail.ms / 1000)) * 100) / 100 : null;
    }
    deps.events.record({ mac: c.node.mac, node: c.node.name, kind, detail });
    deps.onReport?.(c.node, kind, detail);
    res.status(200).type('text/plain').set('Cache-Control', 'no-store').send('ok\n');
  });

  return router;
}
