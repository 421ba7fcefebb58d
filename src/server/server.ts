import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import os from 'node:os';
import { tftpArtifactGuard } from '../peers/artifacts.js';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config/schema.js';
import { Store } from '../store/store.js';
import type { BootEvent } from '../nodes/types.js';
import type { Logger } from '../util/log.js';
import { resolveServerAddress } from '../util/net.js';
import { createHttpApp } from '../http/app.js';
import { bootParts } from '../boot/wiring.js';
import { provisionRouter } from '../provision/http.js';
import { ProvisiondServer } from '../provisiond/server.js';
import { installDefaultNodescripts, DEFAULT_NODESCRIPTS_SRC } from '../nodescripts/index.js';
import { provisionParts } from './parts.js';
import { TftpServer, installLoaders, installChainLoaders } from '../tftp/index.js';
import { ClientArchs } from '../boot/loader.js';
import { buildHttpGrub } from '../boot/grub-image.js';
import { DhcpServer } from '../dhcp/server.js';
import { loadBindToDevice } from '../dhcp/bindtodevice.js';
import { dhcpBackend, dhcp6Backend, eventSink } from './backends.js';
import { Dhcp6Server } from '../dhcp6/server.js';
import { duidLl } from '../dhcp6/options.js';
import { interfaceMac, resolveServerAddress6 } from '../util/net.js';
import { startRaHelper } from './ra.js';
import { createAdminApp, ensureAdminTokens, adminLink } from '../admin/index.js';
import { createMetrics } from '../metrics/index.js';
import { NodeService } from '../nodes/service.js';
import { explainBoot } from './explain.js';
import { inventoryRouter, storeInventoryBackend, queryContextFor } from '../inventory/index.js';
import { blksizeCeiling, interfaceMtu } from '../tftp/mtu.js';
import { statelessParts } from '../stateless/wiring.js';
import { isPostgresUrl } from '../store/pg/url.js';
import { openPgServe, type PgServe } from './pg-serve.js';
import { shareSecrets } from '../store/pg/secrets.js';
import { coordinatedDhcp6Backend } from './pg-dhcp6.js';
import { namingPolicy } from './backends.js';
import { neighbourTableAdvice, rangeAddresses, readNeighbourLimits } from './neighbour-table.js';

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
  /** Subscribe to every boot event as it happens. */
  onEvent(fn: (ev: BootEvent) => void): () => void;
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
        const ready = () => {
          server.removeAllListeners('error');
          const a = server.address() as AddressInfo;
          resolve(`tcp ${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
        };
        // A rack powering on opens thousands of connections at once: Node's default
        // backlog (511) drops them and iPXE retries seconds later.
        const listenOn = (host: string) => {
          server.once('error', (e: NodeJS.ErrnoException) => {
            // '::' is dual-stack; on a host with IPv6 turned off it fails: serve IPv4 then.
            if (host === '::' && (e.code === 'EAFNOSUPPORT' || e.code === 'EADDRNOTAVAIL')) listenOn('0.0.0.0');
            else reject(new Error(bindHint(e, `${name} on tcp ${host}:${port}`)));
          });
          server.listen({ port, host, backlog: 4096 }, ready);
        };
        listenOn(listen);
      }),
    stop: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Wrap a start() that rejects with a raw socket error into the one-line form. */
async function describeBind<T>(what: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(err.code ? bindHint(err, what) : `${what}: ${err.message}`);
  }
}

/**
 * The one place that wires listeners to handlers to the store. Everything is built from the
 * configuration here and passed down explicitly.
 */
export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  fs.mkdirSync(config.statedir, { recursive: true });
  // PostgreSQL: the store every service reads is a local replica; claims go to PostgreSQL (pg-serve.ts).
  const pgs: PgServe | undefined = isPostgresUrl(config.database ?? '') ? await openPgServe({ ...config, server_id: config.server_id || os.hostname() }, log) : undefined;
  if (pgs) await shareSecretsOrWarn(pgs, config.statedir, log);
  const store = pgs?.store ?? Store.openConfigured(config);
  store.checkpointInBackground((m) => log.warn(m)); // WAL checkpoints off the event loop
  const { address, source } = resolveServerAddress(config.address, config.interface);
  log.info({ address, source, statedir: config.statedir }, `pxeherd starting: nodes reach this master at ${address} (${source})`);

  const listeners = new Set<(ev: BootEvent) => void>();
  const events = eventSink(store, log, [(ev) => listeners.forEach((fn) => fn(ev)), ...(pgs ? [(ev: BootEvent) => pgs.shipEvent(ev)] : [])]);
  // boot once -> local: every server that served the once script flips it; PostgreSQL lets one win.
  pgs?.onBootFlip((mac, name) => events.record({ mac, node: name, kind: 'boot.once_done', detail: { boot: 'local', server: pgs.pg.serverId } }));

  // Default nodescripts and boot loaders: copied in on first start, never over an admin's files.
  const installed = await installDefaultNodescripts(DEFAULT_NODESCRIPTS_SRC, config.nodescripts.dir);
  if (installed.length) log.info({ dir: config.nodescripts.dir, files: installed.length }, `installed ${installed.length} default nodescript(s) into ${config.nodescripts.dir}`);

  const archs = new ClientArchs(); // DHCP notes each firmware's CPU, the boot renderer reads it
  const boot = bootParts({ config, store, serverAddress: address, events, archs });
  const { engine, provision } = provisionParts(config, store, events, (m) => log.warn(m), config.security.node_tokens ? boot.tokens : undefined);

  // Stateless boot (issue 17): per-node files (host keys, overlays) and the node's reports.
  const stateless = await statelessParts({ config, store, serverAddress: address, events, tokens: boot.tokens });
  if (stateless.installed.length) log.info({ files: stateless.installed.length }, `installed ${stateless.installed.length} default overlay file(s) into ${config.statedir}/overlays`);

  const services: Service[] = [];
  if (config.http.port !== 0) {
    const app = createHttpApp({ routers: [provisionRouter(provision, { authorize: boot.authorize }), inventoryRouter(storeInventoryBackend(store, events), { authorize: boot.authorize }), ...boot.routers, ...stateless.routers] });
    services.push(httpService('http', config.http.listen, config.http.port, app));
  }
  if (config.provisiond.port !== 0) {
    const pd = new ProvisiondServer(provision, {
      port: config.provisiond.port,
      listen: config.provisiond.listen,
      authorize: boot.provisiondAuthorize,
      log: (m) => log.warn(m),
    });
    services.push({
      name: 'provisiond',
      start: () => describeBind(`provisiond on tcp ${config.provisiond.listen}:${config.provisiond.port}`, () => pd.start()).then(() => `tcp ${config.provisiond.listen}:${config.provisiond.port}`),
      stop: () => pd.stop(),
    });
  }
  if (config.tftp.port !== 0) {
    const tftpLog = log; // pino's (obj, msg) signature is what the TFTP server logs with
    await installLoaders(config.tftp.root, tftpLog); // says which loaders are available or missing
    await installChainLoaders(config.tftp.root, tftpLog); // pxelinux, GRUB, shim (attribute boot_loader)
    if (config.http.port !== 0) {
      // GRUB for UEFI HTTP boot (Debian's signed network GRUB cannot boot by HTTP).
      const g = buildHttpGrub(config.tftp.root, { address, httpPort: config.http.port });
      if (g.ok) log.info({ file: g.file }, `tftp: GRUB for UEFI HTTP boot ${g.built ? 'built' : 'available'}: ${g.file}`);
      else log.warn({}, `tftp: no GRUB for UEFI HTTP boot (machines with boot_loader grub cannot HTTP boot): ${g.reason}`);
    }
    const mtu = config.interface ? interfaceMtu(config.interface) : undefined;
    const maxBlksize = blksizeCeiling(config.tftp.max_blksize, mtu);
    if (maxBlksize < config.tftp.max_blksize) log.info({ interface: config.interface, mtu, maxBlksize }, `tftp: blksize at most ${maxBlksize}, so a block fits one frame of ${config.interface} (MTU ${mtu})`);
    const tftp = new TftpServer({
      root: config.tftp.root,
      port: config.tftp.port,
      address: '0.0.0.0',
      // IPv6 clients (DHCPv6 netboot) too; a host without IPv6 serves IPv4 only.
      address6: '::',
      maxBlksize,
      maxWindowsize: config.tftp.max_windowsize,
      maxTransfers: config.tftp.max_transfers,
      streams: config.tftp.streams,
      streamHoldMs: config.tftp.stream_hold_ms,
      maxWindowBytes: config.tftp.max_window_bytes,
      threads: config.tftp.threads || undefined,
      engine: config.tftp.engine,
      pumpPoll: config.tftp.pump_poll,
      timeoutMs: config.tftp.timeout_seconds * 1000,
      retries: config.tftp.retries,
      generate: (req, peer) => boot.tftpGenerate(req, peer),
      mounts: { 'vnfs/': path.join(config.statedir, 'vnfs') }, // GRUB under Secure Boot loads kernels by TFTP
      mountGuard: (_prefix, rel) => tftpArtifactGuard(boot.artifacts, rel), // verified or fetched first, as over HTTP
      events,
      logger: tftpLog,
    });
    services.push({
      name: 'tftp',
      start: () => describeBind(`tftp on udp 0.0.0.0:${config.tftp.port}`, () => tftp.start()).then((a) => `udp ${a.address}:${a.port}${tftp.listening6 ? ` and [::]:${a.port}` : ' (IPv4 only: no IPv6 on this host)'}`),
      stop: () => tftp.stop(),
    });
  }
  let dhcpQueue: DhcpServer | undefined;
  if (config.dhcp.mode !== 'off' && config.dhcp.port !== 0) {
    const dhcp = new DhcpServer({
      config: config.dhcp,
      serverAddress: address,
      httpPort: config.http.port,
      backend: pgs ? pgs.dhcp(dhcpBackend(store, config, events, archs)) : dhcpBackend(store, config, events, archs),
      interface: config.interface,
      bindToDevice: loadBindToDevice(),
      logger: { info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) },
      queueMaxAgeMs: config.dhcp.queue_max_age_ms,
      sharedPools: !!pgs,
      balance: pgs?.balance,
    });
    dhcpQueue = dhcp;
    pgs?.onLease((mac, lease) => dhcp.noteLease(mac, lease)); // other servers' offers and leases
    let ra: { stop(): void } | undefined;
    services.push({
      name: 'dhcp',
      start: async () => {
        const where = await describeBind(`dhcp (${config.dhcp.mode}) on udp 0.0.0.0:${config.dhcp.port}`, () => dhcp.start()).then(
          () => `udp 0.0.0.0:${config.dhcp.port}${config.dhcp.mode === 'proxy' ? ` and ${config.dhcp.proxy_port}` : ''} (${config.dhcp.mode})`,
        );
        // With DHCPv6 on, its service advertises the link (M/O flags, prefix) instead.
        if (config.dhcp.ipv6_ra && config.dhcp6.mode === 'off') ra = startRaHelper(config.interface, log);
        return where;
      },
      stop: async () => {
        ra?.stop();
        dhcp.stop();
      },
    });
  }

  if (config.dhcp6.mode !== 'off' && config.dhcp6.port !== 0) {
    const v6 = resolveServerAddress6(config.dhcp6.address, config.interface);
    const mac = interfaceMac(config.interface);
    let dhcp6: Dhcp6Server | undefined;
    let ra: { stop(): void } | undefined;
    // PostgreSQL: the replies' claims are confirmed in the shared database (src/server/pg-dhcp6.ts).
    const pg6 = pgs ? coordinatedDhcp6Backend(dhcp6Backend(store, config, events), pgs, namingPolicy(config), log) : undefined;
    services.push({
      name: 'dhcp6',
      start: async () => {
        if (!v6) throw new Error(`dhcp6: no global IPv6 address on ${config.interface || 'any interface'} for the boot URLs: add one or set dhcp6.address`);
        if (!mac) throw new Error(`dhcp6: no MAC address on ${config.interface || 'any interface'} to build the server DUID from`);
        dhcp6 = new Dhcp6Server({
          config: config.dhcp6,
          serverDuid: duidLl(mac),
          serverAddress: v6.address,
          httpPort: config.http.port,
          bootFiles: config.dhcp.boot_files,
          backend: pg6 ? pg6.backend : dhcp6Backend(store, config, events),
          balance: pgs?.balance,
          interface: config.interface,
          bindToDevice: loadBindToDevice(),
          logger: { info: (m) => log.info(m), warn: (m) => log.warn(m), error: (m) => log.error(m) },
        });
        const server6 = dhcp6;
        pg6?.follow((macs) => server6.getHandler().reloadMacs(macs)); // other servers' bindings
        const where = await dhcp6.start();
        if (config.dhcp6.ra) {
          ra = startRaHelper(config.interface, log, undefined, { managed: true, other: true, prefix: config.dhcp6.prefix, autonomous: config.dhcp6.slaac, lifetimeSeconds: config.dhcp6.lease_seconds });
        }
        return `${where} (server ${v6.address}, ${v6.source})`;
      },
      stop: async () => {
        ra?.stop();
        dhcp6?.stop();
      },
    });
  }

  // The admin listener: REST API, web UI, live events, /metrics. Never the node-facing port.
  let closeAdmin = () => {};
  let adminUrl: string | undefined;
  if (config.admin.port !== 0) {
    const tokens = ensureAdminTokens(config.statedir);
    const udpPorts = [
      ...(config.dhcp.mode !== 'off' && config.dhcp.port !== 0 ? [{ port: config.dhcp.port, service: 'dhcp' }] : []),
      ...(config.dhcp.mode === 'proxy' && config.dhcp.proxy_port !== 0 ? [{ port: config.dhcp.proxy_port, service: 'proxydhcp' }] : []),
      ...(config.tftp.port !== 0 ? [{ port: config.tftp.port, service: 'tftp' }] : []),
    ];
    // server=<server_id> on every series (process metrics too): several servers report to one Prometheus.
    const metrics = createMetrics(store, { udpPorts, httpStreams: boot.gate, processMetrics: true, dhcpQueue, database: pgs?.database, defaultLabels: { server: config.server_id || os.hostname() } });
    const admin = createAdminApp({
      store,
      service: new NodeService(store, config, queryContextFor(store)),
      tokens,
      metrics,
      scripts: { list: (n, st) => provision.listScripts(n, st), render: (n, st) => provision.renderScript(n, st) },
      explain: (mac, o) => explainBoot(config, store, { mac, ...o }, address, boot.boot),
      events: pgs?.events, // PostgreSQL: every server's events (the feed in src/store/pg/event-feed.ts)
      writeThrough: pgs ? { catchUp: () => pgs.catchUp(), writer: pgs.writer } : undefined,
    });
    closeAdmin = () => {
      admin.close();
      metrics.close();
    };
    const svc = httpService('admin', config.admin.listen, config.admin.port, admin.handler);
    services.push({
      ...svc,
      start: async () => {
        const where = await svc.start();
        const port = (svc.server.address() as AddressInfo).port;
        adminUrl = adminLink(config.admin.listen, port, tokens.admin);
        return where;
      },
    });
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
  if (adminUrl) log.info({ service: 'admin' }, `web UI and API: ${adminUrl}  (token in ${config.statedir}/admin.token)`);
  // Unknown machines boot the discovery image: say now, not at the first boot, when it is missing.
  const discovery = boot.boot.discoveryVnfs;
  if (config.nodes.auto_register && !store.vnfs.get(discovery)) {
    log.warn({ vnfs: discovery }, `the discovery image (VNFS ${discovery}) does not exist yet: unknown machines cannot boot until you run "pxeherd stage1 build"`);
  }
  if (config.dhcp.mode === 'off') log.info('dhcp is off (dhcp.mode: off); set dhcp.mode to full or proxy to answer PXE clients');
  // A cluster larger than the kernel's neighbour table loses machines in a boot storm: say so now.
  const limits = readNeighbourLimits();
  const machines = Math.max(config.dhcp.mode === 'full' ? rangeAddresses([config.dhcp.range, ...config.dhcp.subnets.map((n) => n.range)]) : 0, store.nodes.count());
  const advice = limits && neighbourTableAdvice(machines, limits);
  if (advice) log.warn({ machines, ...limits }, advice);

  return {
    store,
    address,
    services: results,
    onEvent(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async stop() {
      closeAdmin();
      for (const s of started.reverse()) await s.stop().catch(() => undefined);
      await engine.close();
      await pgs?.close();
      store.close();
    },
  };
}

/**
 * Several servers on one database share the admin tokens and the node-token key
 * (src/store/pg/secrets.ts). With the database unreachable at start, this server's own files
 * are used until the next start; a database value that is not usable stops the start.
 */
async function shareSecretsOrWarn(pgs: PgServe, statedir: string, log: Logger): Promise<void> {
  if (!pgs.database.up()) {
    log.warn('secrets: the database is unreachable, this server uses its own admin tokens and node-token key until its next start');
    return;
  }
  let outcomes;
  try {
    outcomes = await shareSecrets(pgs.pg.sql, statedir);
  } catch (e) {
    if (/not usable/.test((e as Error).message)) throw e;
    log.warn(`secrets: could not share them through the database (${(e as Error).message}); this server uses its own files until its next start`);
    return;
  }
  for (const o of outcomes) {
    if (o.outcome === 'adopted') log.warn({ file: o.file }, `secrets: ${o.file} now holds the ${o.what} every server on this database shares; the one this server had before no longer works`);
    else if (o.outcome === 'published') log.info({ file: o.file }, `secrets: this server's ${o.what} is now the one every server on this database shares`);
  }
}
