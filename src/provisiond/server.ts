import net from 'node:net';
import type { Node } from '../nodes/types.js';
import type { ProvisionService } from '../provision/service.js';
import { peerIp } from '../util/net.js';
import { oneLine, refusalLines } from '../nodescripts/stream.js';
import { parseRequestLine, PERCEUSD_START, PROVISIOND_END, type ProvisiondRequest } from './protocol.js';

export interface ProvisiondOptions {
  port: number;
  /** '' or '0.0.0.0' = all IPv4 addresses; '::' = all IPv4 and IPv6 addresses. */
  listen?: string;
  /** Longest request line accepted (bytes, without the newline). */
  maxLineBytes?: number;
  /** How long a client may take to send its request line. */
  readTimeoutMs?: number;
  maxConnections?: number;
  /** Token check hook (security.node_tokens); default allow. params holds all key=value pairs. */
  authorize?: (node: Node, ctx: { params: Record<string, string>; ip?: string; registered: boolean; state: string }) => { ok: true } | { ok: false; reason: string };
  log?: (msg: string) => void;
}

type Sock = net.Socket & { pxeherdAbort?: AbortController };

/**
 * The Perceus provisiond TCP protocol: one request line, then
 *   # PERCEUSD START\n <nodescript stream> # PROVISIOND END\n   and close.
 * Hostile input (long lines, binary, slow clients, early hang-ups) ends that connection
 * with a comment line; it never reaches the scripts and never takes the server down.
 */
export class ProvisiondServer {
  private server: net.Server | undefined;
  private readonly sockets = new Set<Sock>();
  private readonly maxLine: number;
  private readonly readTimeoutMs: number;
  private readonly log: (msg: string) => void;
  /** Requests refused for bad input (for metrics). */
  badRequests = 0;

  constructor(
    private readonly service: ProvisionService,
    private readonly opts: ProvisiondOptions,
  ) {
    this.maxLine = opts.maxLineBytes ?? 4096;
    this.readTimeoutMs = opts.readTimeoutMs ?? 10_000;
    this.log = opts.log ?? (() => {});
  }

  start(): Promise<void> {
    if (this.server) return Promise.resolve();
    // allowHalfOpen: Perceus clients (and `printf ... | nc`) shut down their sending side
    // right after the request line; that must not close the reply stream.
    const server = net.createServer({ allowHalfOpen: true }, (s) => this.onConnection(s as Sock));
    server.maxConnections = this.opts.maxConnections ?? 2048;
    const host = this.opts.listen || '0.0.0.0';
    return new Promise((resolve, reject) => {
      const listenOn = (h: string) => {
        const onError = (e: NodeJS.ErrnoException) => {
          // '::' is dual-stack; on a host with IPv6 turned off it fails: serve IPv4 then.
          if (h === '::' && (e.code === 'EAFNOSUPPORT' || e.code === 'EADDRNOTAVAIL')) return listenOn('0.0.0.0');
          server.close();
          const hint =
            e.code === 'EACCES'
              ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE; or set provisiond.port)'
              : e.code === 'EADDRINUSE'
                ? ' (another process listens there, perhaps a Perceus provisiond; stop it or set provisiond.port)'
                : '';
          reject(new Error(`provisiond: cannot listen on ${h}:${this.opts.port}: ${e.code ?? e.message}${hint}`));
        };
        server.once('error', onError);
        server.listen(this.opts.port, h, () => {
          server.off('error', onError);
          server.on('error', (e) => this.log(`provisiond: ${e.message}`));
          this.server = server;
          resolve();
        });
      };
      listenOn(host);
    });
  }

  /** Bound port (useful with port 0 in tests). */
  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : 0;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) {
      s.pxeherdAbort?.abort();
      s.destroy();
    }
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private onConnection(sock: Sock): void {
    this.sockets.add(sock);
    sock.on('close', () => {
      this.sockets.delete(sock);
      sock.pxeherdAbort?.abort();
    });
    sock.on('error', () => {}); // resets from clients are normal; 'close' follows
    sock.setNoDelay(true);
    sock.setTimeout(this.readTimeoutMs, () => this.refuse(sock, `no request line within ${this.readTimeoutMs / 1000} s`));
    let buf: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        if (buf.length > this.maxLine) {
          sock.off('data', onData);
          this.refuse(sock, `request line longer than ${this.maxLine} bytes`);
        }
        return;
      }
      sock.off('data', onData);
      sock.setTimeout(0);
      sock.pause(); // anything after the line is ignored
      if (nl > this.maxLine) {
        this.refuse(sock, `request line longer than ${this.maxLine} bytes`);
        return;
      }
      const line = buf.subarray(0, nl).toString('latin1');
      this.handle(sock, line).catch((e) => {
        this.log(`provisiond: ${(e as Error).message}`);
        if (!sock.destroyed) sock.end(`# pxeherd: internal error\n`);
      });
    };
    sock.on('data', onData);
    // A client that half-closes without a newline: treat what it sent as the line.
    sock.on('end', () => {
      if (sock.listenerCount('data') && buf.length && buf.indexOf(0x0a) < 0 && buf.length <= this.maxLine) {
        sock.off('data', onData);
        sock.setTimeout(0);
        this.handle(sock, buf.toString('latin1')).catch(() => sock.destroy());
      }
    });
  }

  private refuse(sock: net.Socket, reason: string): void {
    this.badRequests++;
    if (sock.destroyed) return;
    sock.end(`# pxeherd: ${oneLine(reason)}\n`);
    // Do not wait for a slow or hostile reader to drain the refusal.
    setTimeout(() => sock.destroy(), 2000).unref();
  }

  private async handle(sock: Sock, line: string): Promise<void> {
    const parsed = parseRequestLine(line);
    if (!parsed.ok) {
      this.refuse(sock, parsed.error);
      return;
    }
    const ip = peerIp(sock.remoteAddress);
    const req: ProvisiondRequest = parsed.req;
    if (req.kind === 'ping') {
      sock.end(`${req.token}\n`);
      return;
    }
    if (req.kind === 'log') {
      const mac = ip ? this.service.backend.macForIp(ip) : undefined;
      const node = mac ? this.service.backend.byMac(mac) : undefined;
      this.service.backend.events.record({ mac, node: node?.name, kind: 'provision.log', detail: { message: req.message.slice(0, 1024), ip: ip ?? null } });
      sock.end();
      return;
    }
    const write = async (chunk: Buffer | string) => {
      if (sock.destroyed) return;
      if (!sock.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            sock.off('drain', done);
            sock.off('close', done);
            resolve();
          };
          sock.on('drain', done);
          sock.on('close', done);
        });
      }
    };
    let r;
    try {
      r = this.service.resolve({ state: req.state, mac: req.nodeid, nodename: req.nodename, ip, via: 'tcp' });
    } catch (e) {
      r = { ok: false as const, status: 404 as const, reason: `cannot look up the node: ${(e as Error).message}` };
    }
    if (r.ok && this.opts.authorize) {
      const a = this.opts.authorize(r.node, { params: req.params, ip, registered: r.registered, state: req.state });
      if (!a.ok) r = { ok: false as const, status: 403 as const, reason: a.reason };
    }
    if (!r.ok) {
      this.badRequests++;
      await write(PERCEUSD_START + refusalLines(r.reason) + PROVISIOND_END);
      sock.end();
      return;
    }
    const abort = new AbortController();
    sock.pxeherdAbort = abort;
    await write(PERCEUSD_START);
    await this.service.provision(r, write, { via: 'tcp', signal: abort.signal });
    await write(PROVISIOND_END);
    sock.end();
  }
}
