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
 *        image.verify, image.unpack, image.switch_root, node.checkin (an event on its timeline)
 * Only the node itself gets them. Anything else is 403 and a `security.denied` event. Secrets
 * never reach a log or an event: refusals and events name files, never their contents.
 *
 * Who "the node itself" is:
 * - security.node_tokens on: a valid token for its MAC AND a request from its address (its
 *   DHCP lease, its static `address` attribute, or the address it last booted from).
 * - security.node_tokens off: the source address alone, so it is strict: the node's active
 *   DHCP lease from pxeherd, or its static `address` attribute — never the address it last
 *   claimed in a request (any host can claim a MAC with /provision?mac=). When the master's
 *   neighbour table knows the address, its MAC must be the node's. identity.tar (the host's
 *   PRIVATE keys, the password hash) is refused without a token unless the admin opted in
 *   with security.identity_without_token: anyone on the node's layer-2 segment who can take
 *   its address (ARP/DHCP spoofing, or the node switched off) could fetch its keys and
 *   impersonate it. Without them the node makes its own host keys at each boot.
 */
export interface NodeFilesDeps extends OverlaySources {
  byMac(mac: string): Node | undefined;
  events: EventSink;
  tokens: NodeTokens;
  /** security.node_tokens */
  tokensRequired: boolean;
  /** security.identity_without_token: serve identity.tar on the address check alone (tokens off). */
  identityWithoutToken?: boolean;
  /** The node's active (bound, unexpired) DHCP lease address, if pxeherd's DHCP gave one. */
  leaseIp?(mac: string): string | undefined;
  /** The MAC the master's neighbour table has for an address (same link only), if any. */
  neighbourMac?(ip: string): string | undefined;
  /** A report was recorded (install.done: the master records the install and boots the disk from now on). */
  onReport?: (node: Node, kind: string, detail: Record<string, unknown>) => void;
}

function single(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

type CheckDeps = Pick<NodeFilesDeps, 'byMac' | 'events' | 'tokens' | 'tokensRequired' | 'identityWithoutToken' | 'leaseIp' | 'neighbourMac' | 'attrsFor'>;

/**
 * The addresses a node's per-node files may go to. With a token, the address it booted from
 * (node.ip) is one; without, only what the master itself assigned or the admin configured.
 */
export function nodeAddresses(deps: Pick<CheckDeps, 'leaseIp' | 'attrsFor'>, node: Node, tokenChecked: boolean): string[] {
  const out = new Set<string>();
  const lease = deps.leaseIp?.(node.mac);
  if (lease) out.add(lease);
  const stat = deps.attrsFor?.(node).address;
  if (stat) out.add(stat);
  if (tokenChecked && node.ip) out.add(node.ip);
  return [...out];
}

/** Only the node itself: its token (when tokens are on) and its address (see above). */
export function checkNodeRequest(deps: CheckDeps, what: string, query: Record<string, unknown>, remote: string | undefined): { ok: true; node: Node } | { ok: false; status: number; reason: string } {
  const ip = peerIp(remote);
  const m = parseMac(single(query.mac) ?? '');
  const denied = (reason: string, node?: Node) => {
    deps.events.record({ mac: node?.mac ?? (m.ok ? m.mac : undefined), node: node?.name, kind: 'security.denied', detail: { what, reason, ip: ip ?? null } });
    return { ok: false as const, status: 403, reason: `${what}: ${reason}` };
  };
  if (!m.ok) return denied('give mac= (the node\'s MAC)');
  const node = deps.byMac(m.mac);
  if (!node) return denied(`unknown node ${m.mac}`);
  const token = single(query.token);
  let tokenOk = false;
  if (deps.tokensRequired) {
    const v = deps.tokens.verifyToken(node.mac, token);
    if (!v.ok) return denied(`node ${node.name}: ${v.reason}`, node);
    tokenOk = true;
  } else if (token) {
    tokenOk = deps.tokens.verifyToken(node.mac, token).ok;
  }
  if (what === 'identity' && !tokenOk && !deps.identityWithoutToken) {
    return denied(`node ${node.name}: host keys and the password hash are served only with a node token (security.node_tokens: true); to serve them on the source address alone, set security.identity_without_token: true`, node);
  }
  const allowed = nodeAddresses(deps, node, tokenOk);
  if (allowed.length === 0) {
    return denied(
      tokenOk
        ? `node ${node.name} has no known address yet: per-node files go only to the node's own address`
        : `node ${node.name} has no DHCP lease from this master and no static address attribute: without a node token, per-node files go only to one of those (set "address", or turn security.node_tokens on)`,
      node,
    );
  }
  if (!ip || !allowed.includes(ip)) return denied(`node ${node.name}: request came from ${ip ?? 'an unknown address'}, but the node's address is ${allowed.join(' or ')}`, node);
  const seen = deps.neighbourMac?.(ip);
  if (seen && seen !== node.mac) return denied(`node ${node.name}: request came from ${ip}, which the master's neighbour table has at MAC ${seen}, not the node's ${node.mac}`, node);
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
  'image.unpack': { rev: /^\d{1,9}$/, bytes: /^\d{1,15}$/, ms: /^\d{1,12}$/ },
  'image.switch_root': { rev: /^\d{1,9}$/, root: /^[\w/.-]{1,64}$/, init: /^[\w/.-]{1,64}$/ },
  'node.checkin': { rev: /^\d{0,9}$/, first: /^[01]$/, overlay: /^(same|updated|failed)$/, changed: /^\d{1,6}$/ },
  // Install to disk (nodescripts 08-disk-plan, 20-disk-install, 85-disk-boot).
  'install.start': { rev: /^\d{1,9}$/, disk: /^[a-z][a-z0-9]{0,31}$/, firmware: /^(bios|uefi)$/ },
  'install.write': { rev: /^\d{1,9}$/, bytes: /^\d{1,15}$/, ms: /^\d{1,12}$/ },
  'install.done': { rev: /^\d{1,9}$/, vnfs: /^[\w.-]{1,64}$/, disk: /^[a-z][a-z0-9]{0,31}$/, firmware: /^(bios|uefi)$/, ms: /^\d{1,12}$/ },
  'install.fail': { stage: /^[a-z]{1,16}$/, attr: /^[\w]{0,32}$/, error: /^[\x20-\x7e]{0,600}$/ },
  // Erasing the disks (nodescript 07-disk-wipe, attribute wipe_on_boot from `node release --wipe`).
  'wipe.done': { mode: /^(quick|full)$/, disks: /^[a-z0-9,]{0,200}$/, bytes: /^\d{1,15}$/, ms: /^\d{1,12}$/ },
  'wipe.fail': { disk: /^[a-z0-9]{1,32}$/, error: /^[\x20-\x7e]{0,600}$/ },
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
