/**
 * The DHCP listener: sockets in, handler decisions out. Decodes and counts bad input (a
 * malformed datagram is dropped, never thrown) and sends replies per RFC 2131 §4.1.
 *
 * Under load it behaves like Kea's packet queue, not like a kernel buffer: datagrams are
 * read as soon as they arrive and queued in the process, and the queue is worked in short
 * slices. Each slice is one durable transaction (the registrations of unknown MACs, the
 * leases of its ACKs, the nodes' bound addresses) committed before any of its replies leave.
 * Requests that complete an exchange (REQUEST, DECLINE, RELEASE, INFORM, proxyDHCP) go
 * first, then DISCOVERs of known nodes, then those of new MACs, and a datagram older than a client waits (`dhcp.queue_max_age_ms`)
 * is shed unanswered and counted: past saturation the server answers as many exchanges as
 * at its peak instead of spending itself on offers whose clients have given up.
 */
import dgram from 'node:dgram';
import type { DhcpBackend } from './backend.js';
import { decode, encode, peekMessageType } from './codec.js';
import { DhcpHandler, newCounters, type DhcpCounters, type HandlerOptions, type Outcome, type Reply, type RequestMeta } from './handler.js';
import type { Lease } from '../nodes/types.js';
import type { DhcpConfig } from './pools.js';
import { deepenRecvBuffer, socketFd } from '../util/sockopts.js';
import { MessageType } from './options.js';
import type { DhcpPacket } from './codec.js';
import { Fifo } from '../util/fifo.js';

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
  /**
   * Longest a datagram waits in the queue before it is shed unanswered (default 1000 ms: ISC
   * perfdhcp gives up on an exchange after 1 s, a PXE ROM retransmits after 4 s).
   */
  queueMaxAgeMs?: number;
  /**
   * Longest one slice of queued work runs before the loop reads sockets again (default 10 ms;
   * a slice also ends after SLICE_MAX_PACKETS datagrams or when the queue is empty).
   */
  sliceMs?: number;
  /** Several servers share the pools (PostgreSQL): random search starts; see HandlerOptions. */
  sharedPools?: boolean;
  /** `answer: balanced`: the owner of a client bucket (HandlerOptions.balance). */
  balance?: HandlerOptions['balance'];
  /** Clock for queue ages (tests). */
  clock?: () => number;
}

/** A datagram waiting for its turn: decoded only when its turn comes (shed ones never are). */
interface Queued {
  buf: Buffer;
  /** Option 53 as peeked on arrival (undefined: not DHCP, or no type). */
  type: number | undefined;
  meta: RequestMeta;
  arrived: number;
}

/** Datagrams shed from the queue, by the message type they carried. */
export type ShedCounts = Record<string, number>;


const silent: DhcpLogger = { info() {}, warn() {}, error() {} };

export class DhcpServer {
  readonly counters: DhcpCounters;
  private handler?: DhcpHandler;
  private main?: dgram.Socket;
  /** Bound to serverAddress:67 so limited broadcasts leave through the interface holding it. */
  private out?: dgram.Socket;
  private proxySock?: dgram.Socket;
  /** REQUEST, DECLINE, RELEASE, INFORM and proxyDHCP: each one finishes an exchange. */
  private readonly finishing = new Fifo<Queued>();
  /**
   * DISCOVERs as read, not yet sorted into `known` and `starting`: the store is asked whether
   * their MACs are nodes at the start of the next slice, inside its transaction (one lookup
   * outside a transaction costs SQLite a read transaction of its own: ~5 % of the CPU of a
   * DORA when asked per datagram as it was read).
   */
  private readonly unsorted = new Fifo<Queued>();
  /** DISCOVERs of MACs that are nodes already: a storm of new machines must not starve them. */
  private readonly known = new Fifo<Queued>();
  /** DISCOVERs of new MACs: each one starts an exchange (and registers a node). */
  private readonly starting = new Fifo<Queued>();
  private drainScheduled = false;
  /** Datagrams read since the last slice, and loop turns spent only reading (see drain). */
  private readsSinceDrain = 0;
  private readAheadTurns = 0;
  readonly shed: ShedCounts = {};
  /**
   * Offers, ACKs and NAKs that left (the socket took them), by type: what the metrics count as
   * sent. The handler's events record decisions; on PostgreSQL a decided reply can still be
   * withheld (its claim lost a race or the database is away), and a batch whose leases could not
   * be stored is never sent.
   */
  readonly sent: Record<NonNullable<Reply['counted']>, number> = { offer: 0, ack: 0, nak: 0 };
  private readonly log: DhcpLogger;
  private readonly clock: () => number;

  constructor(private readonly opts: DhcpServerOptions) {
    this.counters = opts.counters ?? newCounters();
    this.log = opts.logger ?? silent;
    this.clock = opts.clock ?? (() => performance.now());
  }

  /** Datagrams waiting in the queue now. */
  queued(): number {
    return this.finishing.length + this.unsorted.length + this.known.length + this.starting.length;
  }

  /** The decision maker; exposed so tests and `explain` can drive it without sockets. */
  getHandler(): DhcpHandler {
    if (!this.handler) {
      this.handler = new DhcpHandler({
        config: this.opts.config,
        serverAddress: this.opts.serverAddress,
        httpPort: this.opts.httpPort,
        backend: this.opts.backend,
        sharedPools: this.opts.sharedPools,
        balance: this.opts.balance,
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
    return this.decide(r.packet, meta);
  }

  private onMessage(buf: Buffer, rinfo: dgram.RemoteInfo, via: 'dhcp' | 'proxy'): void {
    // Reading must stay cheaper than answering, so the backlog of an overload builds up here
    // (where it can be aged and shed) and not in the kernel's buffer: no decode yet.
    this.readsSinceDrain++;
    const type = peekMessageType(buf);
    const q: Queued = { buf, type, meta: { via, from: { address: rinfo.address, port: rinfo.port } }, arrived: this.clock() };
    if (via !== 'dhcp' || type !== MessageType.Discover) this.finishing.push(q);
    else if (this.opts.backend.isKnown) this.unsorted.push(q);
    else this.starting.push(q);
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      // After the datagrams already readable in this loop turn have been read and queued.
      setImmediate(() => this.drain());
    }
  }

  /** A DISCOVER from a MAC that is a node already (chaddr peeked; a malformed one is not). */
  private isKnown(buf: Buffer): boolean {
    const backend = this.opts.backend;
    if (!backend.isKnown || buf.length < 34 || buf[2] !== 6) return false;
    const h = buf.toString('hex', 28, 34);
    return backend.isKnown(`${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}:${h.slice(6, 8)}:${h.slice(8, 10)}:${h.slice(10, 12)}`);
  }

  /** Known nodes' DISCOVERs to `known`, the others to `starting`, in arrival order. */
  private sortDiscovers(): void {
    for (let q = this.unsorted.shift(); q; q = this.unsorted.shift()) (this.isKnown(q.buf) ? this.known : this.starting).push(q);
  }

  /** Drop queued datagrams older than a client waits, counting them by message type. */
  private shedStale(queue: Fifo<Queued>, now: number, maxAge: number): void {
    for (let q = queue.peek(); q && now - q.arrived > maxAge; q = queue.peek()) {
      queue.shift();
      this.counters.received++;
      const type = MESSAGE_TYPE_NAMES[q.type ?? 0] ?? 'other';
      this.shed[type] = (this.shed[type] ?? 0) + 1;
    }
  }

  /**
   * One slice of queued work: exchanges in progress first, then new ones, until the queue is
   * empty or the slice's time is up; all of it in one transaction; then the replies.
   */
  private drain(): void {
    this.drainScheduled = false;
    // Slices whose claims are being confirmed in the shared database (PostgreSQL only): a few
    // may be in flight at once (each waits for round trips, not CPU); past that the queue waits.
    if (this.confirming >= MAX_CONFIRMING) return;
    if (this.readsSinceDrain >= LIBUV_READS_PER_TURN && this.readAheadTurns < MAX_READ_AHEAD_TURNS) {
      // libuv reads at most 32 datagrams per socket per loop turn: as many more may wait in
      // the kernel's buffer, where their age is unknown and nothing sheds them. Read on first.
      this.readsSinceDrain = 0;
      this.readAheadTurns++;
      this.drainScheduled = true;
      setImmediate(() => this.drain());
      return;
    }
    this.readsSinceDrain = 0;
    this.readAheadTurns = 0;
    const start = this.clock();
    const maxAge = this.opts.queueMaxAgeMs ?? 1000;
    this.shedStale(this.finishing, start, maxAge);
    this.shedStale(this.unsorted, start, maxAge);
    this.shedStale(this.known, start, maxAge);
    this.shedStale(this.starting, start, maxAge);
    // 10 ms: the commit (its WAL writes) is ~7 % of a DORA's CPU in slices of 24 datagrams and
    // shrinks per DORA as slices grow, and an ACK 10 ms later is well within a client's wait.
    // PostgreSQL (backend.confirm): while earlier slices are still being confirmed, the queue
    // waits for their round trips anyway, so this slice takes more of it: a confirm costs about
    // the same for 10 clients as for 100 (one transaction, a few pipelined statements), and
    // slices of 10 ms against confirms of ~0.5 s under load left most of a storm's DISCOVERs
    // shed unanswered. SQLite (no confirm): unchanged.
    const growing = this.confirming > 0;
    const deadline = start + (this.opts.sliceMs ?? 10) * (growing ? CONFIRMING_SLICE_GROWTH : 1);
    const maxPackets = growing ? CONFIRMING_SLICE_MAX_PACKETS : SLICE_MAX_PACKETS;
    const replies: Reply[] = [];
    const leases: Lease[] = [];
    const backend = this.opts.backend;
    const work = () => {
      this.sortDiscovers();
      // A few datagrams at least, so one slow packet (a cold start) does not shrink the batch.
      // Congested (the oldest DISCOVER has waited past CONGESTED_MS): newest first, as in
      // adaptive LIFO. A fresh DISCOVER's client is still listening and its exchange
      // completes within its timeout; the old ones are shed once they pass the age limit.
      const oldest = this.starting.peek();
      const lifo = oldest !== undefined && start - oldest.arrived > CONGESTED_MS;
      for (let n = 0; n < maxPackets && (n < SLICE_MIN_PACKETS || this.clock() < deadline); n++) {
        const q = this.finishing.shift() ?? this.known.shift() ?? (lifo ? this.starting.pop() : this.starting.shift());
        if (!q) break;
        const out = this.receive(q.buf, q.meta);
        replies.push(...out.replies);
        leases.push(...out.persist);
      }
      if (leases.length) backend.leases.putMany(leases);
      for (const r of replies) if (r.bound) backend.bound(r.bound.mac, r.bound.ip);
    };
    try {
      if (backend.batch) backend.batch(work);
      else work();
    } catch (e) {
      // Not on disk -> nothing of this slice is sent: the clients retry and we try again.
      this.counters.storeErrors++;
      this.log.error(`DHCP: could not store a batch of ${replies.length} replies' leases and registrations, they are not sent: ${(e as Error).message}`);
      replies.length = 0;
      leases.length = 0;
    }
    if (backend.confirm && (replies.length > 0 || leases.length > 0)) return this.confirmThenSend(backend.confirm.bind(backend), replies, leases);
    for (const r of replies) this.send(r);
    this.drainMore();
  }

  /** PostgreSQL: send the replies whose claims the shared database confirmed, then the next slice. */
  private confirmThenSend(confirm: NonNullable<DhcpBackend['confirm']>, replies: Reply[], leases: Lease[]): void {
    this.confirming++;
    confirm(replies, leases, (late) => late.forEach((r) => this.send(r)))
      .then(
        (ok) => {
          for (const r of ok) this.send(r);
        },
        (e: Error) => {
          this.counters.storeErrors++;
          this.log.error(`DHCP: could not confirm a batch of ${replies.length} replies in the database, they are not sent: ${e.message}`);
        },
      )
      .finally(() => {
        this.confirming--;
        this.drainMore();
      });
  }
  private confirming = 0;

  /** A noted lease from elsewhere (the shared database's replica): the handler's memory follows. */
  noteLease(mac: string, lease: Lease | undefined): void {
    this.getHandler().noteLease(mac, lease);
  }

  private drainMore(): void {
    if (this.queued() > 0 && !this.drainScheduled) {
      this.drainScheduled = true;
      // Let the loop read the sockets (and serve the admin API) before the next slice.
      setImmediate(() => this.drain());
    }
  }

  /** The handler's decision for one decoded packet; a bug costs that packet, not the server. */
  private decide(packet: DhcpPacket, meta: RequestMeta): Outcome {
    try {
      return this.getHandler().handle(packet, meta);
    } catch (e) {
      this.counters.malformed++;
      this.log.error(`DHCP: handler failed on a packet from ${meta.from.address}: ${(e as Error).stack ?? e}`);
      return { replies: [], persist: [] };
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
      } else if (r.counted) this.sent[r.counted]++;
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

/**
 * Datagrams a slice handles before it looks at the clock: fewer than libuv reads per socket
 * per loop turn (32), so under overload reading outpaces handling and the backlog waits in
 * this process's queue, where its age is known, not in the kernel's buffer, where it is not.
 */
const SLICE_MIN_PACKETS = 4;
/** libuv's limit of datagrams read from one socket per loop turn (uv__udp_recvmsg). */
const LIBUV_READS_PER_TURN = 32;
/** Turns a slice waits at most while the sockets still deliver full batches (16 × 32 datagrams). */
const MAX_READ_AHEAD_TURNS = 16;
/**
 * Most datagrams one slice (one transaction) handles. A slice takes what is queued, so under
 * light load a datagram is answered in the turn it arrives, and as load rises the batches grow
 * by themselves (group commit): SQLite writes every page a transaction touched to the WAL, and
 * a DORA of a new MAC touches ~25 pages in a transaction of 2 exchanges but ~5 in one of 32
 * (strace: pwrite64 per DORA), so larger slices cost less per answer exactly when answers are
 * scarce. Under overload it is the slice's time (sliceMs) that ends it, 40-70 datagrams here. Before a slice the sockets are read until the kernel's buffer is empty (drain), so an
 * overload's backlog waits in this queue, where it is aged and shed, whatever a slice costs.
 */
const SLICE_MAX_PACKETS = 128;
/**
 * Slices whose claims may be in the shared database at once (backend.confirm). Each later slice
 * decides against the replica as the earlier ones left it; the database refuses what conflicts.
 */
const MAX_CONFIRMING = 8;
/**
 * A slice that starts while others are being confirmed (PostgreSQL only: `confirming` stays 0
 * without backend.confirm) runs this many times sliceMs, up to this many datagrams.
 */
const CONFIRMING_SLICE_GROWTH = 5;
const CONFIRMING_SLICE_MAX_PACKETS = 512;
/** A DISCOVER queue whose oldest entry waited longer than this is served newest first. */
const CONGESTED_MS = 100;

const MESSAGE_TYPE_NAMES: Record<number, string> = { 1: 'discover', 3: 'request', 4: 'decline', 7: 'release', 8: 'inform' };

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
