/**
 * The TFTP listener: decodes requests on the well-known port, refuses what it must,
 * resolves the file (generated or under the root), negotiates options and runs each
 * transfer on its own ephemeral socket (transfer.ts), connected to the client so the
 * kernel filters other sources and sends need no address lookup. Transfers run on this
 * thread or on transfer worker threads (pool.ts), whichever is least busy: one Node
 * thread saturates a core long before the network when many machines boot at once.
 *
 * It never throws at its callers: malformed input is dropped and counted; every accepted
 * request produces tftp.start then exactly one of tftp.done / tftp.error, and every
 * refusal one tftp.error (detail.refused = true).
 */
import dgram from 'node:dgram';
import { availableParallelism } from 'node:os';
import type { EventSink } from '../nodes/types.js';
import { decode, encode, ErrorCode, errorPacket, OP_RRQ, OP_WRQ, toNetascii, type RequestPacket } from './codec.js';
import { parseGeneratedName, type GenerateFn, type GeneratedName, type Peer } from './generated.js';
import { negotiate } from './options.js';
import { cleanName, DirectStats, openInRoot, type CleanName } from './paths.js';
import type { Outcome } from './session.js';
import { BufferSource, FileCache, type FileCacheOptions, type Source } from './source.js';
import { startTransfer, type RunningTransfer, type TransferCounters, type TransferSpec } from './transfer.js';
import { WorkerPool } from './pool.js';
import { loadNativeEngine, type NativeEngine, type PumpPoll } from './native.js';
import { deepenRecvBuffer } from '../util/sockopts.js';
import { Fifo } from '../util/fifo.js';

/** pino-compatible subset. */
export interface TftpLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

export interface TftpServerOptions {
  /** Directory served (besides generated files). */
  root: string;
  /** Default 69; 0 picks a free port (tests). */
  port?: number;
  /** Default '0.0.0.0'. Transfer sockets bind to the same address. */
  address?: string;
  /** Also listen on this IPv6 address (e.g. '::'); IPv6 transfers bind to it. Default: IPv4 only. */
  address6?: string;
  /** Default 65464 (config tftp.max_blksize). */
  maxBlksize?: number;
  /** Default 64 (config tftp.max_windowsize). */
  maxWindowsize?: number;
  /** Cap on a window's payload bytes (windowsize is lowered to fit); default 64 KiB. See options.ts. */
  maxWindowBytes?: number;
  /** Default 256 (config tftp.max_transfers). */
  maxTransfers?: number;
  /**
   * Transfers sent at once (config tftp.streams; 0 = no limit, every RRQ starts at once);
   * further RRQs wait in arrival order, as HTTP downloads do with http.streams, so in a storm
   * the first machines get their loader early instead of all sharing the link and the CPU
   * until the end (the median machine then finishes near the middle of the storm, not at its
   * end). A transfer gives its stream up when it ends or when it has held it `streamHoldMs`,
   * whichever comes first, and then keeps running outside the streams, as HTTP's SendGate
   * does. So the line moves at least `streams` requests per `streamHoldMs` whatever the
   * clients do: a client that gave up while it waited costs a stream only that long (holding
   * it through all of the server's retransmissions collapsed an earlier version of this
   * queue), and so do slow clients (the whole-path storm's single client process answers
   * each DATA late, and a fixed number of lock-step transfers then moves too few machines).
   * With the native engine the line is kept on its pump thread (NativeEngine.setStreams), so
   * a stream passes to the next request without waiting for this thread's event loop, which
   * in a storm is also answering DHCP, HTTP and init; transfers that run in JavaScript (files
   * streamed from disk, windows above the addon's limit) then start without waiting.
   */
  streams?: number;
  /** Longest a transfer holds its stream (default 250 ms); on the native line, longest its client may stay silent while holding it. */
  streamHoldMs?: number;
  /** Longest an RRQ waits for a stream before it starts anyway (default 4000 ms, well before PXE ROMs give up). */
  streamWaitMs?: number;
  /** Retransmission interval unless the client negotiates `timeout`. Default 1000 (config tftp.timeout_seconds). */
  timeoutMs?: number;
  /** Retransmissions without progress before a transfer is abandoned. Default 5 (config tftp.retries). */
  retries?: number;
  generate?: GenerateFn;
  /**
   * Further directories served under a name prefix, e.g. { 'vnfs/': '<statedir>/vnfs' }: GRUB
   * under Secure Boot has no HTTP client (Debian's signed image lacks http.mod and may not load
   * one), so it fetches kernel and initrd by TFTP. Same confinement rules as the root.
   */
  mounts?: Record<string, string>;
  /**
   * Asked before a file under a mount is served (issue 19: revision artifacts are verified, or
   * fetched from a peer, first): undefined = serve it, else the reason it is refused.
   */
  mountGuard?: (prefix: string, rel: string) => Promise<string | undefined>;
  events?: EventSink;
  logger?: TftpLogger;
  cache?: FileCacheOptions;
  /**
   * Threads that pump DATA. Native engine: N C worker threads (default 1, at most 4). JS
   * engine: 1 = everything on the server's thread; N > 1 adds N-1 worker threads and each
   * new transfer goes to the least busy thread (default: the number of CPUs, at most 4).
   */
  threads?: number;
  /**
   * Who pumps DATA for in-memory files (config tftp.engine): 'native' = the C addon
   * (native/tftpdata, an epoll loop on `threads` C threads; an error at start when not built),
   * 'js' = JavaScript on `threads` threads, 'auto' (default) = native when built, else js.
   * Files streamed from disk in chunks and windows above the addon's limit always run in JS.
   */
  engine?: 'auto' | 'native' | 'js';
  /** Native engine: does a pump thread poll before it sleeps (config tftp.pump_poll, see PumpPoll)? Default 'auto'. */
  pumpPoll?: PumpPoll;
}

export interface TftpStats {
  requests: number;
  started: number;
  completed: number;
  failed: number;
  refused: number;
  busy: number;
  /** Transfers that gave their stream up before their end, after `streamHoldMs` (tftp.streams). */
  streamHoldsExpired: number;
  active: number;
  /** Requests waiting for a stream (tftp.streams). */
  waiting: number;
  /** Malformed or unexpected packets dropped (listener + transfers). */
  badPackets: number;
  duplicateRequests: number;
  duplicateAcks: number;
  retransmits: number;
  bytesSent: number;
}

interface Transfer {
  key: string;
  file: string;
  /** The client acknowledged something: a repeated RRQ (after LATE_RRQ_MS) is then a new request. */
  progressed: boolean;
  /** The request as it came (a byte-identical copy from the same TID is a retransmission: no decode needed). */
  rrq?: Buffer;
  /** It holds one of the `streams` (given up at its end or after streamHoldMs). */
  holdsStream?: boolean;
  /** performance.now() when it started (was given its stream, or handed to the native gate). */
  admittedAt?: number;
  /** performance.now() of the client's first acknowledgement. */
  progressedAt?: number;
  /** Handed to the native engine's stream gate and not started yet (counts in stats().waiting). */
  inNativeLine?: boolean;
  source?: Source;
  /** Set once running: aborts wherever the transfer runs (this thread or a worker). */
  abort?: (code: number, message: string, notifyClient: boolean) => void;
  ended?: Promise<void>;
}

const noopLogger: TftpLogger = { info() {}, warn() {} };
/** A same-file RRQ from a transfer's own client this soon after it started is a late copy, not a new request. */
const LATE_RRQ_MS = 2000;
/** Port 69's receive buffer: ~4000 queued RRQs (each costs ~1 KiB of kernel memory). */
const LISTENER_RECV_BUFFER = 4 << 20;

export class TftpServer {
  private socket: dgram.Socket | undefined;
  /** The IPv6 listener (`address6`), a socket of its own so the IPv4 path is unchanged. */
  private socket6: dgram.Socket | undefined;
  /** By "ip:port" of the client: a repeated RRQ from the same TID is a retransmission. */
  private readonly transfers = new Map<string, Transfer>();
  private readonly cache: FileCache;
  private readonly mounts: Record<string, string>;
  private readonly mountGuard?: (prefix: string, rel: string) => Promise<string | undefined>;
  private readonly o: Required<Omit<TftpServerOptions, 'generate' | 'events' | 'cache' | 'threads' | 'engine' | 'pumpPoll' | 'mounts' | 'mountGuard' | 'address6'>> &
    Pick<TftpServerOptions, 'generate' | 'events' | 'address6'>;
  private sweepTimer: NodeJS.Timeout | undefined;
  private pool: WorkerPool | undefined;
  private readonly threads: number;
  private readonly threadsGiven: number | undefined;
  private readonly engine: 'auto' | 'native' | 'js';
  private readonly pumpPoll: PumpPoll;
  private native: NativeEngine | undefined;
  /**
   * The native engine keeps the line (`streams`): requests go to it at once and wait in arrival
   * order on its pump thread, which hands a stream on as soon as one is free. The JavaScript line
   * below (admitted/waiting/holders) then stays empty; it serves the JS engine.
   */
  private nativeGate = false;
  /** The addon's holdsExpired when this server started (the counter is per process). */
  private nativeExpired0 = 0;
  /** Transfers holding a stream, and the requests waiting for one in arrival order. */
  private admitted = 0;
  private readonly waiting = new Fifo<{ t: Transfer; req: RequestPacket; peer: Peer; at: number }>();
  private waitTimer: NodeJS.Timeout | undefined;
  /** Stream holders in admission order: one timer watches them all for the end of their hold. */
  private readonly holders = new Fifo<Transfer>();
  private holdTimer: NodeJS.Timeout | undefined;
  /** What each requested name (as sent) means: cleanName and parseGeneratedName are pure, and a storm asks for one name a thousand times. */
  private readonly names = new Map<string, { clean: CleanName; generated?: GeneratedName }>();
  /** lstat results for names directly in the root and in each mount, until the directory changes. */
  private readonly directStats = new Map<string, DirectStats>();
  private readonly oacks = new Map<string, Buffer>();
  /** Files being opened by a request, by real path: the requests arriving meanwhile wait for it. */
  private readonly opening = new Map<string, Promise<void>>();
  /** `mounts` as a list (walked for every request). */
  private readonly mountList: Array<[string, string]>;
  /** Transfers running on this thread (the pool counts its own). */
  private localActive = 0;
  private readonly s: Omit<TftpStats, 'active' | 'waiting'> = {
    requests: 0,
    started: 0,
    completed: 0,
    failed: 0,
    refused: 0,
    busy: 0,
    streamHoldsExpired: 0,
    badPackets: 0,
    duplicateRequests: 0,
    duplicateAcks: 0,
    retransmits: 0,
    bytesSent: 0,
  };

  constructor(opts: TftpServerOptions) {
    this.o = {
      root: opts.root,
      port: opts.port ?? 69,
      address: opts.address ?? '0.0.0.0',
      address6: opts.address6,
      maxBlksize: opts.maxBlksize ?? 65464,
      maxWindowsize: opts.maxWindowsize ?? 64,
      maxWindowBytes: opts.maxWindowBytes ?? 64 * 1024,
      maxTransfers: opts.maxTransfers ?? 256,
      streams: opts.streams ?? 0,
      streamHoldMs: opts.streamHoldMs ?? 250,
      streamWaitMs: opts.streamWaitMs ?? 4000,
      timeoutMs: opts.timeoutMs ?? 1000,
      retries: opts.retries ?? 5,
      logger: opts.logger ?? noopLogger,
      generate: opts.generate,
      events: opts.events,
    };
    this.mounts = opts.mounts ?? {};
    this.mountList = Object.entries(this.mounts);
    this.mountGuard = opts.mountGuard;
    this.threads = Math.max(1, Math.floor(opts.threads ?? Math.min(4, availableParallelism())));
    this.threadsGiven = opts.threads;
    this.engine = opts.engine ?? 'auto';
    this.pumpPoll = opts.pumpPoll ?? 'auto';
    // Worker threads see file contents through shared memory.
    this.cache = new FileCache({ ...opts.cache, shared: this.threads > 1 });
  }

  /** Bind the listener. Rejects (e.g. EACCES/EADDRINUSE on port 69) with the socket error. */
  async start(): Promise<{ address: string; port: number }> {
    if (this.socket) throw new Error('TFTP server already started');
    this.native = this.engine === 'js' ? undefined : loadNativeEngine(this.threadsGiven);
    if (this.engine === 'native' && !this.native) {
      throw new Error('TFTP: tftp.engine is "native" but the addon native/tftpdata is not built (make -C native/tftpdata, or set tftp.engine: auto)');
    }
    if (this.native) {
      this.nativeGate = this.native.setStreams(this.o.streams, this.o.streamHoldMs, this.o.streamWaitMs) && this.o.streams > 0;
      this.nativeExpired0 = this.native.streamStats().holdsExpired;
      this.native.setPumpPoll(this.pumpPoll);
    }
    const sock = dgram.createSocket({ type: 'udp4' });
    await new Promise<void>((resolve, reject) => {
      const fail = (e: NodeJS.ErrnoException): void => {
        sock.close();
        const hint =
          e.code === 'EACCES'
            ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE; or set tftp.port)'
            : e.code === 'EADDRINUSE'
              ? ' (another TFTP server is running there)'
              : '';
        reject(Object.assign(new Error(`TFTP: cannot listen on ${this.o.address}:${this.o.port}/udp: ${e.code ?? e.message}${hint}`), { code: e.code }));
      };
      sock.once('error', fail);
      sock.bind({ port: this.o.port, address: this.o.address, exclusive: true }, () => {
        sock.off('error', fail);
        resolve();
      });
    });
    // A thousand machines powering on send their RRQs within milliseconds; with the stock
    // 208 KiB buffer most were dropped and each cost its machine a 1 s retransmission.
    const buf = deepenRecvBuffer(sock, LISTENER_RECV_BUFFER, 'TFTP');
    if (buf.warning) this.o.logger.warn({ requested: buf.requested, effective: buf.effective }, buf.warning);
    sock.on('error', (e) => this.o.logger.warn({ err: e.message }, 'tftp: listener socket error'));
    sock.on('message', (msg, rinfo) => {
      try {
        this.onRequest(msg, { address: rinfo.address, port: rinfo.port });
      } catch (e) {
        this.s.badPackets++;
        this.o.logger.warn({ err: (e as Error).message }, 'tftp: request handler failed');
      }
    });
    this.socket = sock;
    if (this.o.address6) await this.listen6(this.o.address6);
    this.o.logger.info(
      { engine: this.native ? 'native' : 'js', threads: this.native?.workers ?? this.threads },
      this.native
        ? `tftp: DATA pumped by the native engine (native/tftpdata) on ${this.native.workers} thread(s)`
        : `tftp: DATA pumped in JavaScript on ${this.threads} thread(s)${this.engine === 'auto' ? ' (native/tftpdata not built)' : ''}`,
    );
    if (this.threads > 1 && !this.native) {
      this.pool = new WorkerPool(this.threads - 1, (msg) => this.o.logger.warn({}, `tftp: ${msg}`));
      await this.pool.ready();
    }
    this.sweepTimer = setInterval(() => this.cache.sweep(), 10_000);
    this.sweepTimer.unref();
    const a = sock.address();
    return { address: a.address, port: a.port };
  }

  /** The IPv6 listener; a host without IPv6 keeps serving IPv4 (with a warning). */
  private async listen6(address: string): Promise<void> {
    const s6 = dgram.createSocket({ type: 'udp6', ipv6Only: true });
    try {
      await new Promise<void>((resolve, reject) => {
        s6.once('error', reject);
        s6.bind({ port: this.port, address, exclusive: true }, () => {
          s6.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      s6.close();
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL') {
        this.o.logger.warn({ address }, `tftp: no IPv6 here (${err.code}): serving IPv4 only`);
        return;
      }
      throw Object.assign(new Error(`TFTP: cannot listen on [${address}]:${this.port}/udp: ${err.code ?? err.message}`), { code: err.code });
    }
    deepenRecvBuffer(s6, LISTENER_RECV_BUFFER, 'TFTP');
    s6.on('error', (e) => this.o.logger.warn({ err: e.message }, 'tftp: IPv6 listener socket error'));
    s6.on('message', (msg, rinfo) => {
      try {
        this.onRequest(msg, { address: rinfo.address, port: rinfo.port });
      } catch (e) {
        this.s.badPackets++;
        this.o.logger.warn({ err: (e as Error).message }, 'tftp: request handler failed');
      }
    });
    this.socket6 = s6;
  }

  /** Close the listener and abort running transfers (clients get an error packet). */
  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    const sock = this.socket;
    this.socket = undefined;
    const ending: Promise<void>[] = [];
    this.waiting.clear();
    this.holders.clear();
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    for (const d of this.directStats.values()) d.close();
    this.directStats.clear();
    for (const t of [...this.transfers.values()]) {
      if (t.abort) {
        t.abort(ErrorCode.NOT_DEFINED, 'server shutting down', true);
        if (t.ended) ending.push(t.ended);
      } else this.transfers.delete(t.key);
    }
    // Workers report their ends asynchronously; don't wait forever for a wedged one.
    await Promise.race([Promise.all(ending), new Promise((r) => setTimeout(r, 2000).unref())]);
    await this.pool?.close();
    this.pool = undefined;
    if (sock) await new Promise<void>((resolve) => sock.close(() => resolve()));
    const s6 = this.socket6;
    this.socket6 = undefined;
    if (s6) await new Promise<void>((resolve) => s6.close(() => resolve()));
  }

  /** True when the IPv6 listener (`address6`) is up. */
  get listening6(): boolean {
    return this.socket6 !== undefined;
  }

  get port(): number {
    return this.socket?.address().port ?? 0;
  }

  stats(): TftpStats {
    let waiting = this.waiting.length;
    let streamHoldsExpired = this.s.streamHoldsExpired;
    if (this.nativeGate) {
      for (const t of this.transfers.values()) if (t.inNativeLine) waiting++;
      streamHoldsExpired += this.native!.streamStats().holdsExpired - this.nativeExpired0;
    }
    return { ...this.s, streamHoldsExpired, active: this.transfers.size, waiting };
  }

  /** A retransmitted RRQ of a transfer that is running or waiting for a stream (see onRequest). */
  private isRepeat(t: Transfer): boolean {
    return !t.progressed || performance.now() - (t.progressedAt ?? 0) < LATE_RRQ_MS;
  }

  private onRequest(msg: Buffer, peer: Peer): void {
    const key = `${peer.address}:${peer.port}`;
    const existing = this.transfers.get(key);
    // Clients waiting for a stream repeat their RRQ every second (1-3 copies per transfer in a
    // 1000-node storm): a byte-identical copy is recognised before decoding it.
    if (existing?.rrq && existing.rrq.equals(msg) && this.isRepeat(existing)) {
      this.s.requests++;
      this.s.duplicateRequests++;
      return;
    }
    const op = msg.length >= 2 ? msg.readUInt16BE(0) : -1;
    const d = decode(msg);
    if (!d.ok) {
      this.s.badPackets++;
      this.o.logger.debug?.({ peer: peerStr(peer), err: d.detail }, 'tftp: malformed packet dropped');
      // Only a request deserves an answer; answering stray packets would make us a reflector.
      if (op === OP_RRQ || op === OP_WRQ) this.reply(peer, ErrorCode.ILLEGAL_OPERATION, `malformed request: ${d.detail}`);
      return;
    }
    const p = d.packet;
    if (p.op !== 'rrq' && p.op !== 'wrq') {
      // DATA/ACK/ERROR/OACK to the listening port: no transfer lives here.
      this.s.badPackets++;
      return;
    }
    this.s.requests++;
    const file = printable(p.filename);
    if (p.op === 'wrq') {
      this.refuse(peer, file, ErrorCode.ACCESS_VIOLATION, 'write requests are refused: this TFTP server is read-only');
      return;
    }
    if (p.mode === 'mail') {
      this.refuse(peer, file, ErrorCode.ILLEGAL_OPERATION, 'mail mode is not supported');
      return;
    }
    if (existing) {
      if (existing.file === file && this.isRepeat(existing)) {
        // The client repeated its RRQ because our first answer is late or lost: the
        // running transfer's own retransmission covers it. Also a copy it sent just before
        // our OACK reached it and that arrives after its ACK (a request that waited for a
        // stream is repeated every second): restarting the transfer for it would leave the
        // client, which follows the first transfer's port, waiting for DATA that never comes.
        this.s.duplicateRequests++;
        return;
      }
      // Same TID, new request: the client moved on; the old transfer is dead.
      existing.abort?.(ErrorCode.NOT_DEFINED, 'superseded by a new request', false);
      if (this.transfers.get(key) === existing) this.transfers.delete(key);
    }
    if (this.transfers.size >= this.o.maxTransfers) {
      this.s.busy++;
      this.refuse(
        peer,
        file,
        ErrorCode.NOT_DEFINED,
        `server busy: ${this.transfers.size} transfers in progress (limit tftp.max_transfers=${this.o.maxTransfers}), retry later`,
      );
      return;
    }
    const t: Transfer = { key, file, progressed: false, rrq: msg };
    this.transfers.set(key, t);
    // Its retransmitted RRQs find it in `transfers` (not progressed) and are not queued again.
    if (this.o.streams > 0 && !this.nativeGate && this.admitted >= this.o.streams) {
      this.waiting.push({ t, req: p, peer, at: performance.now() });
      this.watchWaiting();
    } else this.admit(t, p, peer);
  }

  /**
   * A request waits for a stream at most `streamWaitMs`, then starts anyway (a backstop: holds
   * end after `streamHoldMs`, so the line rarely waits this long).
   */
  private watchWaiting(): void {
    if (this.waitTimer || this.waiting.length === 0) return;
    const due = this.waiting.peek()!.at + this.o.streamWaitMs - performance.now();
    this.waitTimer = setTimeout(() => {
      this.waitTimer = undefined;
      const now = performance.now();
      while (this.waiting.length > 0 && now - this.waiting.peek()!.at >= this.o.streamWaitMs) {
        const w = this.waiting.shift()!;
        if (this.transfers.get(w.t.key) === w.t) this.admit(w.t, w.req, w.peer);
      }
      this.watchWaiting();
    }, Math.max(0, due));
    this.waitTimer.unref();
  }

  /**
   * One timer for every stream holder (watched in admission order, so only the oldest needs a
   * deadline): a transfer still running `streamHoldMs` after it started gives its stream to the
   * next request in line and finishes outside the streams.
   */
  private watchHolds(): void {
    if (this.holdTimer) return;
    const now = performance.now();
    for (let t = this.holders.peek(); t; t = this.holders.peek()) {
      if (!t.holdsStream) {
        this.holders.shift();
        continue;
      }
      const left = t.admittedAt! + this.o.streamHoldMs - now;
      if (left > 0) {
        // A release below admitted requests, whose own watchHolds may have set the timer.
        if (this.holdTimer) return;
        this.holdTimer = setTimeout(() => {
          this.holdTimer = undefined;
          this.watchHolds();
        }, left);
        this.holdTimer.unref();
        return;
      }
      this.holders.shift();
      this.s.streamHoldsExpired++;
      this.releaseStream(t);
    }
  }

  /** Start a transfer in a stream; the stream is free again when it ended (or never began), or after streamHoldMs. */
  private admit(t: Transfer, req: RequestPacket, peer: Peer): void {
    t.admittedAt = performance.now();
    if (this.o.streams > 0 && !this.nativeGate) {
      this.admitted++;
      t.holdsStream = true;
      this.holders.push(t);
      this.watchHolds();
    }
    const release = () => this.releaseStream(t);
    this.begin(t, req, peer).then(
      () => (t.ended ? t.ended.then(release) : release()),
      (e: unknown) => {
        if (this.transfers.get(t.key) === t) this.transfers.delete(t.key);
        t.source?.release();
        this.refuse(peer, t.file, ErrorCode.NOT_DEFINED, `internal error: ${(e as Error).message}`);
        release();
      },
    );
  }

  /** `t` gives its stream up (once): the next requests in line start. */
  private releaseStream(t: Transfer): void {
    if (!t.holdsStream) return;
    t.holdsStream = false;
    this.admitted--;
    while (this.waiting.length > 0 && this.admitted < this.o.streams) {
      const w = this.waiting.shift()!;
      // Superseded by a new request of the same client, or the server stopped.
      if (this.transfers.get(w.t.key) === w.t) this.admit(w.t, w.req, w.peer);
    }
  }

  /** cleanName and parseGeneratedName of a requested name, remembered (both are pure). */
  private nameOf(raw: string): { clean: CleanName; generated?: GeneratedName } {
    let n = this.names.get(raw);
    if (!n) {
      const clean = cleanName(raw);
      n = { clean, generated: clean.ok && this.o.generate ? parseGeneratedName(clean.rel) : undefined };
      // Names are few (loaders, per-MAC configs); a scan of random names must not grow this.
      if (this.names.size >= 4096) this.names.clear();
      this.names.set(raw, n);
    }
    return n;
  }

  /** The encoded OACK for these options: a storm's machines all negotiate the same few (the engines copy it, never change it). */
  private oackPacket(options: Record<string, string>, order: string[]): Buffer {
    let key = '';
    for (const n of order) key += `${n}=${options[n]};`;
    let p = this.oacks.get(key);
    if (!p) {
      if (this.oacks.size >= 1024) this.oacks.clear();
      this.oacks.set(key, (p = encode({ op: 'oack', options, optionOrder: order })));
    }
    return p;
  }

  private statsFor(root: string): DirectStats {
    let d = this.directStats.get(root);
    if (!d) this.directStats.set(root, (d = new DirectStats(root)));
    return d;
  }

  private async begin(t: Transfer, req: RequestPacket, peer: Peer): Promise<void> {
    const { clean, generated: g } = this.nameOf(req.filename);
    if (!clean.ok) return this.drop(t, peer, clean.code, clean.reason);
    let source: Source | undefined;
    let generated = false;
    if (g && this.o.generate) {
      const buf = await this.o.generate({ ...g, path: clean.rel }, peer);
      if (buf) {
        source = new BufferSource(buf);
        generated = true;
      }
    }
    let root = this.o.root;
    let rel = clean.rel;
    for (const [prefix, dir] of this.mountList) {
      if (rel.startsWith(prefix) && rel.length > prefix.length) {
        root = dir;
        rel = rel.slice(prefix.length);
        const why = !source && this.mountGuard ? await this.mountGuard(prefix, rel) : undefined;
        if (why) return this.drop(t, peer, ErrorCode.FILE_NOT_FOUND, why);
        break;
      }
    }
    // Fast path: a file in memory (or being read into it) is identified without a syscall
    // (DirectStats) or with one or two, no descriptor and no thread-pool round trips (a boot
    // storm asks for the same loader a thousand times).
    const found = source ? undefined : this.statsFor(root).get(rel);
    if (found) {
      source = this.cache.hit(found.stat) ?? (await this.cache.joinLoad(found.stat));
      // The first request of a burst is opening the file: wait for it rather than open it too
      // (the RRQs of a cold storm used to open and realpath the loader a hundred times).
      const opening = source ? undefined : this.opening.get(found.real);
      if (opening) {
        await opening;
        source = this.cache.hit(found.stat) ?? (await this.cache.joinLoad(found.stat));
      }
    }
    if (!source) {
      let opened!: () => void;
      const key = found && !this.opening.has(found.real) ? found.real : undefined;
      if (key) this.opening.set(key, new Promise<void>((r) => (opened = r)));
      try {
        const o = await openInRoot(root, rel);
        if (!o.ok) return this.drop(t, peer, o.code, o.reason);
        source = await this.cache.open(o.handle, o.stat);
      } finally {
        if (key) {
          this.opening.delete(key);
          opened();
        }
      }
    }
    if (this.transfers.get(t.key) !== t) {
      // Superseded or server stopped while we were reading.
      source.release();
      return;
    }
    if (req.mode === 'netascii') {
      if (!(source instanceof BufferSource)) {
        source.release();
        return this.drop(t, peer, ErrorCode.ILLEGAL_OPERATION, 'file too large for netascii mode: use octet');
      }
      const converted = new BufferSource(toNetascii(source.all()));
      source.release();
      source = converted;
    }
    t.source = source;
    const n = negotiate(
      req.options,
      req.optionOrder,
      {
        maxBlksize: this.o.maxBlksize,
        maxWindowsize: this.o.maxWindowsize,
        maxWindowBytes: this.o.maxWindowBytes,
        defaultTimeoutMs: this.o.timeoutMs,
      },
      source.size,
    );
    let startedAt = Date.now();
    const oack = n.oack ? this.oackPacket(n.oack, n.oackOrder) : undefined;
    const detail: Record<string, unknown> = {
      file: t.file,
      peer: peer.address,
      port: peer.port,
      size: source.size,
      blksize: n.blksize,
      windowsize: n.windowsize,
      mode: req.mode,
      generated,
      options: n.oack ?? {},
    };
    const spec: TransferSpec = {
      // An IPv6 peer (only the IPv6 listener hears them) gets a transfer socket of its family.
      address: peer.address.includes(':') ? (this.o.address6 ?? '::') : this.o.address,
      peer,
      blksize: n.blksize,
      windowsize: n.windowsize,
      timeoutMs: n.timeoutMs,
      retries: this.o.retries,
      backoff: n.oack?.timeout === undefined,
      oack,
    };
    let resolveEnded!: () => void;
    t.ended = new Promise<void>((r) => (resolveEnded = r));
    // Who the peer is, asked of the sink once at tftp.start and passed with the end event: one
    // address lookup per transfer, and both events name the node even if the lease changes.
    let who: { mac: string; node?: string } | undefined;
    // tftp.start is said when the transfer really starts: at once, or (native stream gate) when
    // it leaves the line; a transfer aborted in the line still gets its tftp.start before its end.
    let startSaid = false;
    const sayStart = (): void => {
      if (startSaid) return;
      startSaid = true;
      if (t.inNativeLine) startedAt = Date.now(); // its time in the line is not transfer time
      t.inNativeLine = false;
      who = this.attribute(peer.address);
      this.emit('tftp.start', detail, who);
      this.o.logger.debug?.(detail, 'tftp: transfer started');
    };
    const hooks = {
      onProgress: () => {
        if (!t.progressed) t.progressedAt = performance.now();
        t.progressed = true;
      },
      onStarted: sayStart,
      onEnd: (outcome: Outcome, counters: TransferCounters) => {
        sayStart();
        this.end(t, detail, startedAt, outcome, counters, who);
        resolveEnded();
      },
    };
    this.s.started++;
    const started = (engine: 'native' | 'js'): void => {
      // Which data path served it: in every tftp.* event, for whoever debugs a slow boot.
      detail.engine = engine;
      if (engine === 'native' && this.nativeGate) t.inNativeLine = true;
      else sayStart();
    };
    // In-memory content goes to the native engine when there is one; otherwise to the least
    // busy JS thread. Files streamed from disk in chunks stay on this thread (they need its
    // descriptor and their loads). The native end arrives on a later turn, after tftp.start.
    if (this.native && source instanceof BufferSource && n.windowsize <= this.native.maxWindow) {
      try {
        t.abort = this.native.start(spec, source.all(), hooks);
        started('native');
        return;
      } catch (e) {
        // No socket or thread right now (e.g. thread limit): this transfer runs in JS.
        this.o.logger.warn({ err: (e as Error).message }, 'tftp: native engine could not start a transfer, running it in JavaScript');
      }
    }
    started('js');
    const slot = this.pool && source instanceof BufferSource ? this.pool.pick(this.localActive) : undefined;
    if (slot) {
      t.abort = slot.start(spec, (source as BufferSource).all(), hooks);
      return;
    }
    this.localActive++;
    const localHooks = {
      onProgress: hooks.onProgress,
      onEnd: (o: Outcome, c: TransferCounters) => {
        this.localActive--;
        hooks.onEnd(o, c);
      },
    };
    let running: RunningTransfer;
    try {
      running = await startTransfer(spec, source, localHooks);
    } catch (e) {
      localHooks.onEnd(
        { ok: false, code: 0, message: `cannot open transfer socket: ${(e as Error).message}`, byClient: false, duringNegotiation: false, bytes: 0, durationMs: 0, retransmits: 0 },
        { badPackets: 0, duplicateAcks: 0, retransmits: 0, dataPackets: 0 },
      );
      return;
    }
    t.abort = running.abort;
    // Superseded or stopped while the socket was being set up.
    if (this.transfers.get(t.key) !== t) running.abort(ErrorCode.NOT_DEFINED, 'superseded', false);
  }

  private end(t: Transfer, detail: Record<string, unknown>, startedAt: number, o: Outcome, c: TransferCounters, who?: { mac: string; node?: string }): void {
    if (this.transfers.get(t.key) === t) this.transfers.delete(t.key);
    t.source?.release();
    this.s.badPackets += c.badPackets;
    this.s.duplicateAcks += c.duplicateAcks;
    this.s.retransmits += c.retransmits;
    this.s.bytesSent += o.bytes;
    const durationMs = Date.now() - startedAt;
    if (o.ok) {
      this.s.completed++;
      const ev = { ...detail, bytes: o.bytes, durationMs, retransmits: o.retransmits };
      this.emit('tftp.done', ev, who);
      this.o.logger.info(ev, `tftp: sent ${t.file} to ${String(detail.peer)}`);
    } else {
      this.s.failed++;
      const ev = {
        ...detail,
        bytes: o.bytes,
        durationMs,
        code: o.code,
        error: o.message,
        byClient: o.byClient,
        // UEFI firmware reads tsize from the OACK, ends with error 8, then asks again:
        // normal, so consumers can tell it from a real failure.
        probe: o.byClient && o.duringNegotiation,
        retransmits: o.retransmits,
      };
      this.emit('tftp.error', ev, who);
      if (ev.probe) this.o.logger.debug?.(ev, `tftp: ${t.file}: client ended option negotiation`);
      else this.o.logger.warn(ev, `tftp: ${t.file} to ${String(detail.peer)} failed: ${o.message}`);
    }
  }

  /** Refuse a request that had a transfer slot reserved. */
  private drop(t: Transfer, peer: Peer, code: number, reason: string): void {
    if (this.transfers.get(t.key) === t) this.transfers.delete(t.key);
    this.refuse(peer, t.file, code, reason);
  }

  private refuse(peer: Peer, file: string, code: number, reason: string): void {
    this.s.refused++;
    this.reply(peer, code, reason);
    this.emit('tftp.error', { file, peer: peer.address, port: peer.port, code, error: reason, refused: true });
    this.o.logger.info({ file, peer: peer.address, code }, `tftp: refused ${file}: ${reason}`);
  }

  private reply(peer: Peer, code: number, message: string): void {
    (peer.address.includes(':') ? this.socket6 : this.socket)?.send(errorPacket(code, message), peer.port, peer.address);
  }

  private emit(kind: string, detail: Record<string, unknown>, who?: { mac: string; node?: string }): void {
    try {
      this.o.events?.record(who ? { kind, mac: who.mac, node: who.node, detail } : { kind, detail });
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, 'tftp: event sink failed');
    }
  }

  /** The sink's answer to who the peer is, when it gives one (see EventSink.attribute). */
  private attribute(address: string): { mac: string; node?: string } | undefined {
    try {
      return this.o.events?.attribute?.(address);
    } catch (e) {
      this.o.logger.warn({ err: (e as Error).message }, 'tftp: event sink failed');
      return undefined;
    }
  }
}


function peerStr(p: Peer): string {
  return `${p.address}:${p.port}`;
}

const PRINTABLE = /^[\x20-\x7e]*$/;
/** File names go into logs and events: keep them printable. */
function printable(s: string): string {
  if (PRINTABLE.test(s)) return s;
  return s.replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
