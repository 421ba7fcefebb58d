import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/schema.js';
import { Store } from '../store/store.js';
import type { Logger } from '../util/log.js';
import { resolveServerAddress } from '../util/net.js';
import { createHttpApp } from '../http/app.js';

/** One listening service. start() rejects with a one-line reason; the others keep running. */
export interface Service {
  name: string;
  start(): Promise<string>;
  stop(): Promise<void>;
}

export interface RunningServer {
  store: Store;
  address: string;
  services: { name: string; ok: boolean; detail: string }[];
  stop(): Promise<void>;
}

export function bindHint(e: NodeJS.ErrnoException, what: string): string {
  if (e.code === 'EACCES') return `${what}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`;
  if (e.code === 'EADDRINUSE') return `${what}: address already in use (another DHCP/TFTP/HTTP server running?)`;
  if (e.code === 'EADDRNOTAVAIL') return `${what}: address not available on this host`;
  return `${what}: ${e.message}`;
}

export function httpService(name: string, listen: string, port: number, handler: http.RequestListener): Service & { server: http.Server } {
  const server = http.createServer(handler);
  // Nodes on slow links stream large initrds: no idle cut-off mid-download.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 5000;
  return {
    name,
    server,
    start: () =>
      new Promise((resolve, reject) => {
        const onErr = (e: NodeJS.ErrnoException) => reject(new Error(bindHint(e, `${name} on tcp ${listen}:${port}`)));
        server.once('error', onErr);
        server.listen(port, listen, () => {
          server.off('error', onErr);
          const a = server.address() as AddressInfo;
          resolve(`tcp ${a.address}:${a.port}`);
        });
      }),
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * The one place that wires listeners to handlers to the store. Everything is built from the
 * configuration here and passed down explicitly.
 */
export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  fs.mkdirSync(config.statedir, { recursive: true });
  const store = Store.open(config.statedir);
  const { address, source } = resolveServerAddress(config.address, config.interface);
  log.info({ address, source, statedir: config.statedir }, 'pxeherd starting');

  const services: Service[] = [];
  if (config.http.port !== 0) {
    const app = createHttpApp({ routers: [] });
    services.push(httpService('http', config.http.listen, config.http.port, app));
  }

  const results: RunningServer['services'] = [];
  const started: Service[] = [];
  for (const s of services) {
    try {
      const where = await s.start();
      started.push(s);
      results.push({ name: s.name, ok: true, detail: where });
      log.info({ service: s.name, listen: where }, `${s.name} listening on ${where}`);
    } catch (e) {
      results.push({ name: s.name, ok: false, detail: (e as Error).message });
      log.error({ service: s.name }, `${(e as Error).message}; the other services keep running`);
    }
  }
  for (const [name, on] of [
    ['dhcp', config.dhcp.mode !== 'off' && config.dhcp.port !== 0],
    ['tftp', config.tftp.port !== 0],
    ['provisiond', config.provisiond.port !== 0],
  ] as const) {
    if (on && !services.some((s) => s.name === name)) log.warn({ service: name }, `${name} is configured but not built into this version yet`);
  }

  return {
    store,
    address,
    services: results,
    async stop() {
      for (const s of started.reverse()) await s.stop().catch(() => undefined);
      store.close();
    },
  };
}
