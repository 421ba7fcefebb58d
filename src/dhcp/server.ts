/**
 * The DHCP listener: sockets in, handler decisions out. Decodes and counts bad input (a
 * malformed datagram is dropped, never thrown), batches ACKed leases so each batch is one
 * durable transaction written before its ACKs leave, and sends replies per RFC 2131 §4.1.
 */
import dgram from 'node:dgram';
import type { DhcpBackend } from './backend.js';
import { decode, encode } from './codec.js';
import { DhcpHandler, newCounters, type DhcpCounters, type Outcome, type Reply, type RequestMeta } from './handler.js';
import type { Lease } from '../nodes/types.js';
import type { DhcpConfig } from './pools.js';
import { deepenRecvBuffer, socketFd } from '../util/sockopts.js';

export interface DhcpLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** Sets SO_BINDTODEVICE on a socket fd (native addon); absent -> interface binding is skipped. */
export type BindToDevice = (fd: number, device: string) => void;

export interface DhcpServerOptions {
  config: DhcpConfig;
  /** Address clients reach pxeherd at: server identifier, next-server, boot URLs. */
  serverAddress: string;
  httpPort: number;
  backend: DhcpBackend;
  /** Interface to answer on ('' = any); needs `bindToDevice` to be enforced. */
  interface?: string;
  bindToDevice?: BindToDevice;
  logger?: DhcpLogger;
  counters?: DhcpCounters;
  /** Bind address for the listening sockets; tests only. */
  listenAddress?: string;
  /**
   * Receive buffer of the DHCP sockets, default 4 MiB (past net.core.rmem_max with
   * SO_RCVBUFFORCE when allowed, src/util/sockopts.ts). A PXE storm of a rack powering on
   * arrives in bursts; a deep buffer turns a short stall into latency, not loss.
   */
  recvBufferSize?: number;
}

const silent: DhcpLogger = { info() {}, warn() {}, error() {} };

export class DhcpServer {
  readonly counters: DhcpCounters;
  private handler?: DhcpHandler;
  private main?: dgram.Socket;
  /** Bound to serverAddress:67 so limited broadcasts leave through the interface holding it. */
  private out?: dgram.Socket;
  private proxySock?: dgram.Socket;
  private pendingLeases: Lease[] = [];
  private pendingReplies: Reply[] = [];
  private flushScheduled = false;
  private readonly log: DhcpLogger;

  constructor(private readonly opts: DhcpServerOptions) {
    this.counters = opts.counters ?? newCounters();
    this.log = opts.logger ?? silent;
  }

  /** The decision maker; exposed so tests and `explain` can drive it without sockets. */
  getHandler(): DhcpHandler {
    if (!this.handler) {
      this.handler = new DhcpHandler({
        config: this.opts.config,
        serverAddress: this.opts.serverAddress,
        httpPort: this.opts.httpPort,
        backend: this.opts.backend,
        counters: this.counters,
      });
    }
    return this.handler;
  }

  /** Resolves when listening; rejects with a one-line Error (port not bindable, bad pools). */
  async start(): Promise<void> {
    const cfg = this.opts.config;
    if (cfg.mode === 'off' || cfg.port === 0) return;
    let n: number;
    try {
      n = this.getHandler().load();
    } catch (e) {
      // Bad pools (a range outside its subnet...) or an unreadable lease store: one line, no crash.
      throw new Error(`DHCP: ${(e as Error).message}`);
    }
    const listen = this.opts.listenAddress ?? '0.0.0.0';
    try {
      // Probe without SO_REUSEADDR first: a DHCP server already on the port must be reported,
      // not silently shared (the real sockets below need SO_REUSEADDR to coexist).
      await bindProbe(listen, cfg.port);
      const rcv = this.opts.recvBufferSize ?? 4 << 20;
      this.main = await openSocket(listen, cfg.port, true);
      this.deepen(this.main, rcv);
      this.main.setBroadcast(true);
      this.bindDevice(this.main);
      this.main.on('message', (buf, rinfo) => this.onMessage(buf, rinfo, 'dhcp'));
      this.main.on('error', (e) => this.log.error(`DHCP socket error: ${e.message}`));
      if (listen === '0.0.0.0') {
        try {
          this.out = await openSocket(this.opts.serverAddress, cfg.port, true);
          this.deepen(this.out, rcv);
          this.out.setBroadcast(true);
          this.bindDevice(this.out);
          this.out.on('message', (buf, rinfo) => this.onMessage(buf, rinfo, 'dhcp'));
          this.out.on('error', (e) => this.log.error(`DHCP socket error: ${e.message}`));
        } catch (e) {
          // serverAddress not local (e.g. behind NAT): broadcasts follow the routing table.
          this.log.warn(`DHCP: cannot bind ${this.opts.serverAddress}:${cfg.port} (${(e as Error).message}); broadcast replies follow the routing table`);
        }
      }
      if (cfg.mode === 'proxy' && cfg.proxy_port !== 0) {
        this.proxySock = await openSocket(listen, cfg.proxy_port, false);
        this.deepen(this.proxySock, rcv);
        this.bindDevice(this.proxySock);
        this.proxySock.on('message', (buf, rinfo) => this.onMessage(buf, rinfo, 'proxy'));
        this.proxySock.on('error', (e) => this.log.error(`ProxyDHCP socket error: ${e.message}`));
      }
    } catch (e) {
      this.stop();
      if ((e as Error).message.startsWith('cannot bind to interface')) throw new Error(`DHCP: ${(e as Error).message}`);
      throw new Error(bindMessage(e as NodeJS.ErrnoException, cfg.mode === 'proxy' ? `${cfg.port}/${cfg.proxy_port}` : String(cfg.port)));
    }
    this.log.info(`DHCP (${cfg.mode}) listening on UDP ${cfg.port}${this.proxySock ? ` and ${cfg.proxy_port}` : ''}, server ${this.opts.serverAddress}, ${n} active leases`);
  }

  stop(): void {
    for (const s of [this.main, this.out, this.proxySock]) {
      try {
        s?.close();
      } catch {
        /* already closed */
      }
    }
    this.main = this.out = this.proxySock = undefined;
  }

  /** Decode and decide; exposed for tests that feed raw datagrams. */
  receive(buf: Buffer, meta: RequestMeta): Outcome {
    const r = decode(buf);
    if (!r.ok) {
      this.counters.received++;
      this.counters.malformed++;
      return { replies: [], persist: [] };
    }
    try {
      return this.getHandler().handle(r.packet, meta);
    } catch (e) {
      // A bug must cost one packet, not the server.
      this.counters.malformed++;
      this.log.error(`DHCP: handler failed on a packet from ${meta.from.address}: ${(e as Error).stack ?? e}`);
      return { replies: [], persist: [] };
    }
  }

  private onMessage(buf: Buffer, rinfo: dgram.RemoteInfo, via: 'dhcp' | 'proxy'): void {
    const out = this.receive(buf, { via, from: { address: rinfo.address, port: rinfo.port } });
    if (out.persist.length === 0) {
      for (const r of out.replies) this.send(r);
      return;
    }
    this.pendingLeases.push(...out.persist);
    this.pendingReplies.push(...out.replies);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // After every datagram already read in this loop turn: one transaction for all of them.
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const leases = this.pendingLeases;
    const replies = this.pendingReplies;
    this.pendingLeases = [];
    this.pendingReplies = [];
    try {
      this.opts.backend.leases.putMany(leases);
    } catch (e) {
      // Not on disk -> no ACK: the client retries and we try again.
      this.counters.storeErrors++;
      this.log.error(`DHCP: could not store ${leases.length} leases, their ACKs are not sent: ${(e as Error).message}`);
      return;
    }
    for (const r of replies) {
      this.send(r);
      if (r.bound) {
        try {
          this.opts.backend.bound(r.bound.mac, r.bound.ip);
        } catch (e) {
          this.log.error(`DHCP: recording ${r.bound.mac} at ${r.bound.ip} failed: ${(e as Error).message}`);
        }
      }
    }
  }

  private send(r: Reply): void {
    const sock = r.via === 'proxy' ? this.proxySock : (this.out ?? this.main);
    if (!sock) return;
    const buf = encode(r.packet, { maxSize: r.maxSize });
    sock.send(buf, r.to.port, r.to.address, (err) => {
      if (err) {
        this.counters.sendErrors++;
        this.log.warn(`DHCP: sending to ${r.to.address}:${r.to.port} failed: ${err.message}`);
      }
    });
  }

  /** A rack powering on sends its DISCOVERs within milliseconds: queue them, don't drop them. */
  private deepen(sock: dgram.Socket, bytes: number): void {
    const r = deepenRecvBuffer(sock, bytes, 'DHCP');
    if (r.warning && !this.warnedBuffer) {
      this.warnedBuffer = true;
      this.log.warn(r.warning);
    }
  }
  private warnedBuffer = false;

  private bindDevice(sock: dgram.Socket): void {
    const dev = this.opts.interface;
    if (!dev) return;
    if (!this.opts.bindToDevice) {
      this.log.warn(`DHCP: interface "${dev}" configured but the bindtodevice addon is not built: answering on all interfaces`);
      return;
    }
    const fd = socketFd(sock);
    if (fd === undefined) throw new Error(`cannot find the socket's file descriptor to bind it to ${dev}`);
    try {
      this.opts.bindToDevice(fd, dev);
    } catch (e) {
      throw new Error(`cannot bind to interface ${dev}: ${(e as Error).message}`);
    }
  }
}

function openSocket(address: string, port: number, reuseAddr: boolean): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr });
    const onErr = (e: Error) => {
      s.close();
      reject(e);
    };
    s.once('error', onErr);
    s.bind({ address, port, exclusive: true }, () => {
      s.off('error', onErr);
      resolve(s);
    });
  });
}

async function bindProbe(address: string, port: number): Promise<void> {
  const s = await openSocket(address, port, false);
  await new Promise<void>((r) => s.close(() => r()));
}

function bindMessage(e: NodeJS.ErrnoException, port: string): string {
  switch (e.code) {
    case 'EACCES':
    case 'EPERM':
      return `DHCP: cannot listen on UDP port ${port}: permission denied (run as root or grant CAP_NET_BIND_SERVICE: setcap cap_net_bind_service=+ep $(which node))`;
    case 'EADDRINUSE':
      return `DHCP: cannot listen on UDP port ${port}: already in use (another DHCP server such as dnsmasq or dhcpd is running; stop it or use dhcp.mode: proxy)`;
    default:
      return `DHCP: cannot listen on UDP port ${port}: ${e.message}`;
  }
}
