import express, { type Express, type Request, type Response, type NextFunction } from 'express';
import { CONTENT_TYPE } from '../metrics/registry.js';
import { AdminAuth } from './auth.js';
import { createApiRouter, sendError } from './api.js';
import { createUiRouter } from './ui.js';
import type { AdminDeps, AdminWriteThrough } from './deps.js';
import { WriteTag } from '../store/pg/writer.js';
import { HttpError } from './errors.js';

export interface AdminApp {
  /** The request handler for the admin listener (admin.listen:admin.port). */
  handler: Express;
  /** End open event streams so the listener can close. */
  close(): void;
}

/**
 * The admin listener: REST API under /api/v1, the web UI at / and /ui/..., and /metrics.
 * Separate from the node-facing HTTP server so it can stay on loopback.
 */
export function createAdminApp(deps: AdminDeps): AdminApp {
  const auth = new AdminAuth(deps.tokens);
  const streams = new Set<() => void>();
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok\n');
  });

  app.get('/metrics', async (req: Request, res: Response) => {
    if (deps.metricsPublic === false) {
      const who = auth.identify(req, { cookie: false });
      if (!who.role) return sendError(res, new HttpError(401, who.problem));
    }
    if (!deps.metrics) return sendError(res, new HttpError(404, 'metrics are not enabled in this server'));
    try {
      const text = await deps.metrics.render();
      res.set('Cache-Control', 'no-store').type(CONTENT_TYPE).send(text);
    } catch (e) {
      sendError(res, new HttpError(500, `metrics: ${(e as Error).message}`));
    }
  });

  if (deps.writeThrough) app.use(writeThroughMiddleware(deps.writeThrough));
  app.use('/api/v1', createApiRouter(deps, auth, streams));
  app.use('/api', (req, res) => sendError(res, new HttpError(404, `no API at ${req.originalUrl}: the API is under /api/v1`)));
  app.use(createUiRouter(deps, auth, streams));
  app.use((req: Request, res: Response) => {
    res.status(404).type('text/plain').send(`pxeherd admin: nothing at ${req.path}\n`);
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => sendError(res, err));

  return {
    handler: app,
    close() {
      for (const end of [...streams]) end();
    },
  };
}

/**
 * On PostgreSQL, a request that may change something runs the same handlers as on SQLite, over
 * the server's replica after it caught up with the change log (so validation sees every other
 * server's changes); the rows it writes go to PostgreSQL, each synchronous stretch of the
 * handler as one transaction, and the answer waits for them. Refused there (a unique key another
 * server took meanwhile: 409; the database unreachable: 503), the change is undone in the
 * replica and the answer says so instead of claiming it. A request that writes nothing (a power
 * action, a logout) works with the database unreachable.
 */
function writeThroughMiddleware(wt: AdminWriteThrough) {
  return async (req: Request, res: Response, next: NextFunction) => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
    await wt.catchUp();
    const tag = new WriteTag();
    const end = res.end.bind(res) as (...a: unknown[]) => Response;
    let held = false;
    res.end = ((...args: unknown[]) => {
      if (held) return end(...args);
      held = true;
      wt.writer.settle(tag).then(
        () => end(...args),
        (e: Error & { status?: number }) => {
          res.removeHeader('Location');
          res.removeHeader('Content-Length');
          sendError(res, new HttpError(e.status ?? 500, e.message));
        },
      );
      return res;
    }) as typeof res.end;
    wt.writer.tagged(tag, () => next());
  };
}
