import { Router, type NextFunction, type Request, type Response } from 'express';
import type { EventSink } from '../nodes/types.js';
import { parseMac } from '../nodes/mac.js';
import { BootError, type BootService } from '../boot/service.js';
import { refuse } from './files.js';
import { peerIp } from '../util/net.js';

export interface BootRouterDeps {
  boot: BootService;
  events: EventSink;
  /**
   * The registered node at a peer address (as peerIp gives it), when known (lease or
   * neighbour table). Set when node tokens are on: a script carries its node's token, so one node must not fetch
   * another's (its token would then work for that node wherever the address is unknown).
   */
  nodeAt?: (ip: string) => { mac: string; name: string } | undefined;
}

/**
 * iPXE boot scripts:
 *   GET /boot/<mac>.ipxe        the script for that machine (any MAC spelling)
 *   GET /boot.ipxe?mac=<mac>    the same, for chaining from a generic script
 *   GET /boot.ipxe              a two-line script that chains to /boot/<its own MAC>.ipxe
 * A script that cannot be made is a 500 whose text names the template, the node and the
 * missing value (iPXE prints it), and an `http.error` event.
 */
export function bootRouter(deps: BootRouterDeps): Router {
  const router = Router();

  const serve = (req: Request, res: Response, macIn: string) => {
    const m = parseMac(macIn);
    if (!m.ok) {
      refuse(res, 400, m.error);
      return;
    }
    const ip = req.socket.remoteAddress;
    const peer = peerIp(ip);
    const asker = peer !== undefined ? deps.nodeAt?.(peer) : undefined;
    if (asker && asker.mac !== m.mac) {
      const reason = `the boot script of ${m.mac} was asked for from ${peer}, which is node ${asker.name} (${asker.mac}): a node gets only its own script (and token)`;
      deps.events.record({ mac: m.mac, kind: 'security.denied', detail: { reason, ip: peer ?? null, path: req.path, asker: asker.name } });
      refuse(res, 403, reason);
      return;
    }
    try {
      // Asked over IPv6: the script's URLs (kernel, initrd, provision) must be IPv6 too.
      const r = deps.boot.render('ipxe', m.mac, { serverAddress: ipv6Host(req.socket.localAddress) });
      const sw = deps.boot.served(r);
      deps.events.record({
        mac: m.mac,
        node: r.node?.name,
        kind: 'http.ipxe',
        detail: { mode: r.mode, template: r.template, vnfs: r.vnfs ?? null, ip: peer ?? null, ...(sw.switchedTo ? { switchedTo: sw.switchedTo } : {}) },
      });
      res.status(200).type('text/plain; charset=utf-8').set('Cache-Control', 'no-store').send(r.text);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const be = e instanceof BootError ? e : undefined;
      deps.events.record({ mac: m.mac, node: be?.node?.name, kind: 'http.error', detail: { path: req.path, status: 500, error: msg, template: be?.template ?? null } });
      refuse(res, 500, msg);
    }
  };

  router.get('/boot/:file', (req, res) => {
    const file = String(req.params.file);
    if (!file.endsWith('.ipxe')) {
      refuse(res, 404, `nothing at ${req.path}: boot scripts are /boot/<MAC>.ipxe`);
      return;
    }
    serve(req, res, file.slice(0, -'.ipxe'.length));
  });

  router.get('/boot.ipxe', (req, res) => {
    const mac = req.query.mac;
    if (mac === undefined) {
      // iPXE fills in its own MAC; hexhyp keeps ':' out of the URL path.
      res.status(200).type('text/plain; charset=utf-8').set('Cache-Control', 'no-store').send('#!ipxe\nchain /boot/${net0/mac:hexhyp}.ipxe\n');
      return;
    }
    if (typeof mac !== 'string') {
      refuse(res, 400, 'give mac= once');
      return;
    }
    serve(req, res, mac);
  });

  router.use((err: Error & { status?: number }, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    refuse(res, err.status && err.status < 500 ? err.status : 500, err.status && err.status < 500 ? 'bad request' : err.message);
  });
  return router;
}

/** `[addr]` when the connection came in over IPv6 (not IPv4-mapped), else undefined. */
export function ipv6Host(local: string | undefined): string | undefined {
  if (!local || !local.includes(':') || (local.startsWith('::ffff:') && local.includes('.'))) return undefined;
  return `[${local.replace(/%.*$/, '')}]`;
}
