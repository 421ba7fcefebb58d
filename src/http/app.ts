import express, { type Express, type Router } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface HttpAppParts {
  /** Routers mounted at / in order (provision, boot scripts, vnfs, loaders ...). */
  routers: Router[];
}

/**
 * A router's handler for its hottest requests, run before express sees the request: it
 * returns false having touched neither req nor res, or true when it has taken the request
 * (it answers, or later calls toExpress, untouched, to let express answer after all).
 */
export type FastPath = (req: IncomingMessage, res: ServerResponse, toExpress: () => void) => boolean;

/** Where a router carries its FastPath (vnfsRouter). */
export const FAST_PATH = Symbol('pxeherd.http.fastPath');

/** The node-facing app. Each concern brings its own router; this only assembles them. */
export function createHttpApp(parts: HttpAppParts): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok\n');
  });
  for (const r of parts.routers) app.use(r);
  app.use((req, res) => {
    res.status(404).type('text/plain').send(`pxeherd: nothing at ${req.path}\n`);
  });
  // In a boot storm every node fetches the same kernel and initrd: those requests skip
  // express's per-request set-up and routing (a fresh process runs it all in the
  // interpreter), and the rest go through express as before.
  const fast = parts.routers.map((r) => (r as Router & { [FAST_PATH]?: FastPath })[FAST_PATH]).filter((f): f is FastPath => f !== undefined);
  if (fast.length) {
    type Handle = (req: IncomingMessage, res: ServerResponse, next?: unknown) => void;
    const inner = app as unknown as { handle: Handle };
    const handle = inner.handle.bind(app);
    inner.handle = (req, res, next) => {
      // Mounted inside another app, the request is already express's: leave it to the routes.
      if (next === undefined) for (const f of fast) if (f(req, res, () => handle(req, res))) return;
      handle(req, res, next);
    };
  }
  return app;
}
