import { Router, type Request, type Response } from 'express';
import type { Node } from '../nodes/types.js';
import type { ProvisionService } from './service.js';
import { oneLine, refusalLines } from '../nodescripts/stream.js';
import { parseHealth } from '../inventory/inventory.js';

export type AuthorizeResult = { ok: true } | { ok: false; status: number; reason: string };

export interface ProvisionRouterOptions {
  /**
   * Token check (security.node_tokens) plugged in by the security code; default allows all.
   * `ctx.registered` is true when this very request registered the node.
   */
  authorize?: (node: Node, req: Request, ctx: { registered: boolean; state: string }) => AuthorizeResult | Promise<AuthorizeResult>;
}

function single(v: unknown): string | undefined | null {
  if (v === undefined) return undefined;
  if (typeof v === 'string') return v;
  return null; // repeated or nested parameter: ambiguous, refuse
}

function refuse(res: Response, status: number, reason: string): void {
  res.status(status).type('text/plain; charset=utf-8').set('Cache-Control', 'no-store').send(`# pxeherd: ${oneLine(reason)}\n`);
}

/**
 * GET /provision/<state>?mac=<MAC> (or nodeid=<MAC>): the node's nodescripts for <state>,
 * streamed (chunked) as text/plain while they run. Refusals are 4xx with a one-line reason,
 * so `wget -O - URL | sh` fails instead of running a partial script.
 */
export function provisionRouter(service: ProvisionService, opts: ProvisionRouterOptions = {}): Router {
  const router = Router();
  const authorize = opts.authorize ?? (() => ({ ok: true }) as const);

  router.get('/provision/:state', async (req: Request, res: Response) => {
    if (req.method === 'HEAD') {
      // Express answers HEAD with the GET route; that must not run scripts or register nodes.
      res.status(405).set('Allow', 'GET').end();
      return;
    }
    const macParam = single(req.query.mac);
    const nodeidParam = single(req.query.nodeid);
    if (macParam === null || nodeidParam === null) {
      refuse(res, 400, 'give mac= (or nodeid=) once');
      return;
    }
    const mac = macParam ?? nodeidParam;
    const state = String(req.params.state);
    let r;
    try {
      r = service.resolve({ state, mac, ip: req.socket.remoteAddress, via: 'http' });
    } catch (e) {
      refuse(res, 500, `cannot look up the node: ${(e as Error).message}`);
      return;
    }
    if (!r.ok) {
      refuse(res, r.status, r.reason);
      return;
    }
    const auth = await authorize(r.node, req, { registered: r.registered, state });
    if (!auth.ok) {
      refuse(res, auth.status, auth.reason);
      return;
    }

    res.status(200);
    res.setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    // Each script's output should leave as soon as it is ready, not wait for Nagle.
    res.socket?.setNoDelay(true);
    const gone = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    const write = async (chunk: Buffer | string) => {
      if (gone.signal.aborted) return;
      if (!res.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            gone.signal.removeEventListener('abort', done);
            resolve();
          };
          res.on('drain', done);
          gone.signal.addEventListener('abort', done);
        });
      }
    };
    try {
      // A check-in (the ready loop) carries uptime=, load= and memfree_kb=: the node's latest health.
      const { health, invalid } = parseHealth(req.query as Record<string, unknown>);
      await service.provision(r, write, { via: 'http', signal: gone.signal, health, healthInvalid: invalid });
    } catch (e) {
      // Headers are out: all that can be done is to make the node's shell fail.
      await write(refusalLines(`internal error: ${(e as Error).message}`));
    }
    res.end();
  });

  return router;
}
