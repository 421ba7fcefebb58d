/**
 * A real admin listener on loopback for the admin/ui tests: a fresh state directory, the
 * real Store, NodeService, tokens and metrics, and the admin app on 127.0.0.1:<port>.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { parseConfig } from '../../src/config/load.js';
import { Store } from '../../src/store/store.js';
import { NodeService } from '../../src/nodes/service.js';
import { createAdminApp, type AdminDeps } from '../../src/admin/index.js';
import { ensureAdminTokens } from '../../src/admin/tokens.js';
import { createMetrics } from '../../src/metrics/index.js';

export interface AdminFixture {
  dir: string;
  store: Store;
  service: NodeService;
  tokens: { admin: string; readonly: string };
  base: string;
  port: number;
  metrics: ReturnType<typeof createMetrics>;
  close(): Promise<void>;
}

/** Listen on the first free port of [from, to] (the tests' assigned range is 18200-18299). */
async function listenIn(server: http.Server, from: number, to: number): Promise<number> {
  for (let p = from; p <= to; p++) {
    const ok = await new Promise<boolean>((resolve) => {
      const onErr = (e: NodeJS.ErrnoException) => {
        server.off('listening', onOk);
        if (e.code === 'EADDRINUSE') resolve(false);
        else throw e;
      };
      const onOk = () => {
        server.off('error', onErr);
        resolve(true);
      };
      server.once('error', onErr);
      server.once('listening', onOk);
      server.listen(p, '127.0.0.1');
    });
    if (ok) return (server.address() as AddressInfo).port;
  }
  throw new Error(`no free port in 127.0.0.1:${from}-${to}`);
}

/**
 * Each fixture of a test file takes the next port of its range: fetch keeps idle keep-alive
 * sockets per origin, and a new server on the port of a just-closed one would see requests
 * fail on those stale sockets.
 */
let nextOffset = 0;

export async function startAdmin(ports: [number, number], extra: Partial<AdminDeps> = {}): Promise<AdminFixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-admin-'));
  const config = parseConfig({ statedir: dir }, dir);
  const store = Store.open(dir);
  const service = new NodeService(store, config);
  const tokens = ensureAdminTokens(dir);
  const metrics = createMetrics(store);
  const admin = createAdminApp({ store, service, tokens, metrics, heartbeatMs: 1000, ...extra });
  const server = http.createServer(admin.handler);
  const span = ports[1] - ports[0] + 1;
  const from = ports[0] + (nextOffset++ % span);
  const port = await listenIn(server, from, ports[1]).catch(() => listenIn(server, ports[0], ports[1]));
  return {
    dir,
    store,
    service,
    tokens,
    base: `http://127.0.0.1:${port}`,
    port,
    metrics,
    async close() {
      admin.close();
      metrics.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
