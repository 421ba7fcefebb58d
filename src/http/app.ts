import express, { type Express, type Router } from 'express';

export interface HttpAppParts {
  /** Routers mounted at / in order (provision, boot scripts, vnfs, loaders ...). */
  routers: Router[];
}

/** The node-facing HTTP app. Each concern brings its own router; this only assembles them. */
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
  return app;
}
