/**
 * The DHCPv6 listener: UDP 547 on the served interface, member of All_DHCP_Relay_Agents_and_
 * Servers (ff02::1:2). Decodes and counts bad input (dropped, never thrown), batches binding
 * leases so each batch is one durable transaction written before its Replies leave, and
 * answers the client's link-local address (RFC 8415 §18.3.10, port 546). A separate socket
 * from DHCPv4's, so the IPv4 path does no extra work.
 */
import dgram from 'node:dgram';
import type { Dhcp6Backend, Lease6 } from './backend.js';
import { decode, encode } from './codec.js';
import { Dhcp6Handler, newCounters6, type Dhcp6Counters, type Handler6Options, type Outcome6, type Reply6, type Request6Meta } from './handler.js';
import type { Dhcp6Config } from './pool.js';
import type { BootFiles } from '../dhcp/boot.js';
import type { BindToDevice, DhcpLogger } from '../dhcp/server.js';
import { deepenRecvBuffer, socketFd } from '../util/sockopts.js';
import { describePool } from './pool.js';

export const ALL_DHCP_SERVERS = 'ff02::1:2';

export interface Dhcp6ServerOptions {
  config: Dhcp6Config;
  /** `dhcp6.answer: balanced` (Handler6Options.balance). */
  balance?: Handler6Options['balance'];
  serverDuid: Buffer;
  /** IPv6 address clients reach pxeherd at (boot URLs). */
  serverAddress: string;
  httpPort: number;
  bootFiles: BootFiles;
  backend: Dhcp6Backend;
  /** Interface to serve; needed to join the multicast group on the right link. */
  interface?: string;
  bindToDevice?: BindToDevice;
  logger?: DhcpLogger;
  counters?: Dhcp6Counters;
  /** Bind address, tests only (default '::'). */
  listenAddress?: string;
}

const silent: DhcpLogger = { info() {}, warn() {}, error() {} };

export class Dhcp6Server {
  readonly counters: Dhcp6Counters;
  private handler?: Dhcp6Handler;
  private sock?: dgram.Socket;
  private pendingLeases: Lease6[] = [];
  private pendingReplies: Reply6[] = [];
  private flushScheduled = false;
  private readonly log: DhcpLogger;

  constructor(private readonly opts: Dhcp6ServerOptions) {
    this.counters = opts.counters ?? newCounters6();
    this.log = opts.logger ?? silent;
  }

  getHandler(): Dhcp6Handler {
    if (!this.handler) {
      this.handler = new Dhcp6Handler({
        config: this.opts.config,
        serverDuid: this.opts.serverDuid,
        serverAddress: this.opts.serverAddress,
        httpPort: this.opts.httpPort,
        bootFiles: this.opts.bootFiles,
        backend: this.opts.backend,
        counters: this.counters,
        balance: this.opts.balance,
      });
    }
    return this.handler;
  }

  /** Resolves when listening; rejects with a one-line Error. */
  async start(): Promise<string> {
    const cfg = this.opts.config;
    let n: number;
    try {
      n = this.getHandler().load();
    } catch (e) {
      throw new Error(`DHCPv6: ${(e as Error).message}`);
    }
    const listen = this.opts.listenAddress ?? '::';
    // No SO_REUSEADDR: another DHCPv6 server on the port (dnsmasq, Kea) must be reported, not shared.
    const s = dgram.createSocket({ type: 'udp6', reuseAddr: false, ipv6Only: true });
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind({ address: listen, port: cfg.port, exclusive: true }, () => {
          s.off('error', reject);
          resolve();
        });
      });
      const dev = this.opts.interface;
      if (dev) {
        if (this.opts.bindToDevice) {
          const fd = socketFd(s);
          if (fd === undefined) throw new Error(`cannot find the socket's file descriptor to bind it to ${dev}`);
          this.opts.bindToDevice(fd, dev);
        }
        s.addMembership(ALL_DHCP_SERVERS, `::%${dev}`);
      } else if (listen === '::') {
        // Without an interface the kernel picks one for the group: say so, it may be the wrong link.
        s.addMembership(ALL_DHCP_SERVERS);
        this.log.warn('DHCPv6: no `interface` configured: joined ff02::1:2 on the default interface only');
      }
    } catch (e) {
      s.close();
      const err = e as NodeJS.ErrnoException;
      const why =
        err.code === 'EACCES' || err.code === 'EPERM'
          ? 'permission denied (run as root or grant CAP_NET_BIND_SERVICE)'
          : err.code === 'EADDRINUSE'
            ? 'already in use (another DHCPv6 server such as dnsmasq, dhcpd -6 or Kea is running)'
            : err.message;
      throw new Error(`DHCPv6: cannot listen on UDP [${listen}]:${cfg.port}: ${why}`);
    }
    // A rack powering on solicits at once: queue the burst rather than drop it (as DHCPv4 does).
    const deep = deepenRecvBuffer(s, 4 << 20, 'DHCPv6');
    if (deep.warning) this.log.warn(deep.warning);
    s.on('message', (buf, rinfo) => this.onMessage(buf, rinfo));
    s.on('error', (e) => this.log.error(`DHCPv6 socket error: ${e.message}`));
    this.sock = s;
    const where = `udp [${listen}]:${(s.address() as { port: number }).port}${this.opts.interface ? ` on ${this.opts.interface}` : ''}`;
    this.log.info(`DHCPv6 listening on ${where}, server ${this.opts.serverAddress}, pool ${describePool(this.getHandler().pool)}, ${n} active leases`);
    return where;
  }

  stop(): void {
    try {
      this.sock?.close();
    } catch {
      /* already closed */
    }
    this.sock = undefined;
  }

  get port(): number {
    return (this.sock?.address() as { port: number } | undefined)?.port ?? 0;
  }

  /** Decode and decide; exposed for tests that feed raw datagrams. */
  receive(buf: Buffer, meta: Request6Meta): Outcome6 {
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
      this.log.error(`DHCPv6: handler failed on a packet from ${meta.from.address}: ${(e as Error).stack ?? e}`);
      return { replies: [], persist: [] };
    }
  }

  private onMessage(buf: Buffer, rinfo: dgram.RemoteInfo): void {
    const out = this.receive(buf, { from: { address: rinfo.address, port: rinfo.port } });
    // A shared database confirms every reply (offers too) before it leaves.
    if (out.persist.length === 0 && !(this.opts.backend.confirm && out.replies.length)) {
      for (const r of out.replies) this.send(r);
      return;
    }
    this.pendingLeases.push(...out.persist);
    this.pendingReplies.push(...out.replies);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    // One slice at a time in the shared database: the next one gathers meanwhile.
    if (!this.flushScheduled && !this.confirming) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private confirming = false;

  private flush(): void {
    this.flushScheduled = false;
    const leases = this.pendingLeases;
    const replies = this.pendingReplies;
    this.pendingLeases = [];
    this.pendingReplies = [];
    try {
      this.opts.backend.leases.putMany(leases);
    } catch (e) {
      this.counters.storeErrors++;
      this.log.error(`DHCPv6: could not store ${leases.length} leases, their Replies are not sent: ${(e as Error).message}`);
      return;
    }
    const confirm = this.opts.backend.confirm;
    if (!confirm) return this.sendAll(replies);
    this.confirming = true;
    confirm
      .call(this.opts.backend, replies)
      .then(
        (ok) => this.sendAll(ok),
        (e: Error) => {
          this.counters.storeErrors++;
          this.log.error(`DHCPv6: could not confirm ${replies.length} replies in the database, they are not sent: ${e.message}`);
        },
      )
      .finally(() => {
        this.confirming = false;
        if (this.pendingReplies.length || this.pendingLeases.length) this.scheduleFlush();
      });
  }

  private sendAll(replies: Reply6[]): void {
    for (const r of replies) {
      this.send(r);
      if (r.bound) {
        try {
          this.opts.backend.bound(r.bound.mac, r.bound.ip);
        } catch (e) {
          this.log.error(`DHCPv6: recording ${r.bound.mac} at ${r.bound.ip} failed: ${(e as Error).message}`);
        }
      }
    }
  }

  private send(r: Reply6): void {
    const s = this.sock;
    if (!s) return;
    let buf: Buffer;
    try {
      buf = encode(r.message);
    } catch (e) {
      this.counters.sendErrors++;
      this.log.error(`DHCPv6: cannot encode the reply to ${r.to.address}: ${(e as Error).message}`);
      return;
    }
    s.send(buf, r.to.port, r.to.address, (err) => {
      if (err) {
        this.counters.sendErrors++;
        this.log.warn(`DHCPv6: sending to [${r.to.address}]:${r.to.port} failed: ${err.message}`);
      }
    });
  }
}
