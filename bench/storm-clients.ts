/**
 * The simulated nodes of the boot storm. Runs INSIDE the client network namespace (the
 * orchestrator, bench/storm.ts, starts it with `ip netns exec`), so many simulated machines
 * can share one UDP socket on port 68 and each can speak HTTP from the address it leased.
 *
 *   node --import tsx bench/storm-clients.ts '<json StormJob>'
 *
 * Prints one JSON line (StormResult) on stdout. Every node walks the real path a PXE machine
 * walks: DORA as a BIOS PXE ROM, TFTP of the loader the offer names, DORA again as iPXE (whose
 * boot file is the script URL), the iPXE script, the kernel and initrd it names, then the
 * provision `init` stream with the token the script carried, then `ready`. Stage-only jobs
 * (`dhcp`, `tftp`, `http`) run one stage against any server, so the same clients measure the
 * reference servers (dnsmasq, nginx).
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { decode, emptyPacket, encode, type DhcpPacket } from '../src/dhcp/codec.js';
import { MessageType, Opt } from '../src/dhcp/options.js';
import { tftpGet } from '../src/tftp/client.js';

export type StormMode = 'full' | 'dhcp' | 'tftp' | 'http' | 'register' | 'tcp';

export interface StormJob {
  mode: StormMode;
  nodes: number;
  /** Second byte group of the simulated MACs (02:<tag>:..), so runs never reuse a MAC. */
  macTag: number;
  server: string;
  httpPort: number;
  provisiondPort?: number;
  /** Arrival: 0 = all at once, else spread evenly over this many seconds. */
  rampSeconds: number;
  /** tftp-only: file to fetch; http-only: paths to fetch (with {mac} replaced). */
  tftpFile?: string;
  httpPaths?: string[];
  /** http-only: stage names of httpPaths (default kernel, initrd). */
  httpNames?: string[];
  /** full: after init, the rootfs stage ("image") downloads this path (?mac= added), expecting imageBytes. */
  imagePath?: string;
  imageBytes?: number;
  /** tcp: raw TCP transfers from server:tcpPort, one connection per node, read to the end ("link" stage). */
  tcpPort?: number;
  /** register mode: which MACs ask /provision/init (others do DHCP); see the kill -9 test. */
  registerSplit?: number;
  /** Whole-job deadline. */
  deadlineSeconds?: number;
  /** tftp blksize the simulated PXE ROM asks for. */
  blksize?: number;
  /** Where to write the StormResult JSON (stdout when absent). */
  resultFile?: string;
  /** Transmissions per DHCP message before the node gives up (a PXE ROM makes 4). */
  dhcpTries?: number;
  /** Every this many ms, a `PROGRESS {"done","ok","failed","seconds"}` line on stderr. */
  progressEveryMs?: number;
  /**
   * This process runs only nodes i with i % count === index (several client processes share a
   * storm so the clients' CPU is not the limit; bench/storm-lab.ts runClients starts them).
   */
  shard?: { index: number; count: number };
  /** Print `READY` on stderr once set up, then start the clock when this file exists. */
  startFile?: string;
}

export interface NodeResult {
  mac: string;
  ok: boolean;
  error?: string;
  /** stage -> milliseconds */
  stages: Record<string, number>;
  retries: number;
  /** retries per stage, where there were any */
  stageRetries?: Record<string, number>;
  ip?: string;
  name?: string;
  /** register mode: what the server acknowledged (status 200 on init / DHCP ACK). */
  acked?: 'init' | 'dhcp';
  /** ms since job start when the node finished */
  doneAt?: number;
}

export interface StormResult {
  mode: StormMode;
  nodes: number;
  seconds: number;
  /** CPU the simulated clients used (user+system, seconds): on a small machine they compete with the server. */
  clientCpuSeconds?: number;
  /**
   * What the client process itself did to the exchanges (a harness's own stall is not the
   * server's): DHCP replies that arrived for an attempt the client had already given up on
   * (matched by xid and chaddr; `lateMs` the worst lateness), and the event loop's worst stall
   * (timers and socket reads wait for the same loop: a stalled client times out on replies
   * sitting in its own socket buffer).
   */
  clientHealth?: { dhcpLateReplies: number; dhcpLateMaxMs: number; loopStallMaxMs: number; loopStallsOver500ms: number; dhcpWaitsExtended: number };
  results: NodeResult[];
}

export function macFor(tag: number, i: number): string {
  const b = [0x02, tag & 0xff, 0x5e, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

class StageError extends Error {}

/** Period of the client's own stall tick (DhcpClients.stalledMs). */
const TICK_MS = 100;

/** One UDP socket on port 68 for all simulated machines; replies are matched by xid and chaddr. */
class DhcpClients {
  private sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  private waiting = new Map<number, { mac: Buffer; want: MessageType[]; resolve: (p: DhcpPacket) => void }>();
  /** Attempts given up on (xid -> when): a reply for one of them came too late for the client. */
  private gaveUp = new Map<number, { mac: Buffer; at: number }>();
  lateReplies = 0;
  lateMaxMs = 0;
  private nextXid = (Math.random() * 0x7fffffff) >>> 0;

  async open(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind(68, '0.0.0.0', () => resolve());
    });
    this.sock.setBroadcast(true);
    this.sock.setRecvBufferSize(8 << 20);
    this.sock.on('message', (buf) => {
      // Several client processes share port 68 and each sees every broadcast reply: skip the
      // others' replies before decoding (xid at offset 4).
      if (buf.length < 8 || !this.waiting.has(buf.readUInt32BE(4))) return;
      const d = decode(buf);
      if (!d.ok || d.packet.op !== 2) return;
      const w = this.waiting.get(d.packet.xid);
      if (!w) {
        const g = this.gaveUp.get(d.packet.xid);
        if (g && d.packet.chaddr.subarray(0, 6).equals(g.mac)) {
          this.lateReplies++;
          this.lateMaxMs = Math.max(this.lateMaxMs, performance.now() - g.at);
        }
        return;
      }
      if (!d.packet.chaddr.subarray(0, 6).equals(w.mac)) return;
      const t = d.packet.options.get(Opt.MessageType)?.[0];
      if (t === undefined || !w.want.includes(t)) return;
      this.waiting.delete(d.packet.xid);
      w.resolve(d.packet);
    });
  }

  /**
   * Milliseconds this process's event loop was stalled, summed (a 100 ms tick that came late).
   * One process plays every machine: on a loaded machine its loop stalls for seconds (measured:
   * up to 4.7 s, 18-20 stalls over 0.5 s per round at load 12-16 on 2 cores), and a timer that
   * fires after such a stall runs BEFORE the loop reads the replies waiting in the socket (libuv
   * runs timers, then I/O). Counted as the server's silence, that failed whole exchanges whose
   * OFFERs had arrived in time (hundreds of late replies per round, clientHealth). A real PXE
   * ROM has its own CPU: the time its simulation was not running is given back (ask()).
   */
  private stalledMs = 0;
  private lastTick = performance.now();
  private readonly ticker = setInterval(() => {
    const now = performance.now();
    const late = now - this.lastTick - TICK_MS;
    if (late > 20) this.stalledMs += late;
    this.lastTick = now;
  }, TICK_MS).unref();

  close(): void {
    clearInterval(this.ticker);
    this.sock.close();
  }

  /**
   * Send and wait up to `timeoutMs` of this process's own running time for a matching reply: a
   * wait that ended late because the loop was stalled is extended by the stall (up to the
   * timeout again), so the replies already in the socket are read before the client gives up.
   */
  private ask(p: DhcpPacket, want: MessageType[], timeoutMs: number): Promise<DhcpPacket | undefined> {
    return new Promise((resolve) => {
      let given = 0;
      let timer: NodeJS.Timeout;
      const wait = (ms: number) => {
        const due = performance.now() + ms;
        const stalled0 = this.stalledMs;
        timer = setTimeout(() => {
          // What the loop's stalls ate of this wait: the ticks' account, or this timer's own lateness.
          const owed = Math.max(this.stalledMs - stalled0, performance.now() - due);
          if (owed > 50 && given < timeoutMs) {
            const more = Math.min(owed, timeoutMs - given);
            given += more;
            this.stallExtensions++;
            return wait(more);
          }
          this.waiting.delete(p.xid);
          this.gaveUp.set(p.xid, { mac: p.chaddr.subarray(0, 6), at: performance.now() });
          if (this.gaveUp.size > 100_000) this.gaveUp.delete(this.gaveUp.keys().next().value!);
          resolve(undefined);
        }, ms);
      };
      wait(timeoutMs);
      this.waiting.set(p.xid, {
        mac: p.chaddr.subarray(0, 6),
        want,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      this.sock.send(encode(p), 67, '255.255.255.255');
    });
  }
  /** Waits extended because the client's own loop had stalled (clientHealth). */
  stallExtensions = 0;

  /**
   * A whole DORA exchange. Retransmits like a PXE ROM (timeouts doubling from 2 s, 4 tries per
   * message); `retries` counts the retransmissions.
   */
  async dora(mac: string, kind: 'pxe' | 'ipxe', counters: { retries: number }, tries = 4): Promise<DhcpPacket> {
    const chaddr = Buffer.alloc(16);
    Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
    const base = (type: MessageType, xid: number): DhcpPacket => {
      const p = emptyPacket(1);
      p.xid = xid;
      p.flags = 0x8000;
      p.chaddr = chaddr;
      p.options.set(Opt.MessageType, Buffer.from([type]));
      p.options.set(Opt.VendorClass, Buffer.from('PXEClient:Arch:00000:UNDI:002001'));
      p.options.set(93, Buffer.from([0, 0]));
      p.options.set(94, Buffer.from([1, 2, 1]));
      p.options.set(57, Buffer.from([0x05, 0xc0]));
      if (kind === 'ipxe') p.options.set(77, Buffer.from('iPXE'));
      p.options.set(55, Buffer.from([1, 3, 6, 12, 15, 43, 54, 60, 66, 67, 175]));
      return p;
    };
    const exchange = async (build: (xid: number) => DhcpPacket, want: MessageType[]): Promise<DhcpPacket> => {
      let timeout = 2000;
      for (let attempt = 0; attempt < tries; attempt++) {
        if (attempt > 0) counters.retries++;
        const xid = (this.nextXid = (this.nextXid + 1) >>> 0);
        const r = await this.ask(build(xid), want, timeout);
        if (r) return r;
        timeout *= 2;
      }
      throw new StageError(`no ${want.map((t) => MessageType[t]).join('/')} after ${tries} tries`);
    };
    const offer = await exchange((xid) => base(MessageType.Discover, xid), [MessageType.Offer]);
    const serverId = offer.options.get(Opt.ServerId);
    const ack = await exchange((xid) => {
      const p = base(MessageType.Request, xid);
      p.options.set(Opt.RequestedIp, Buffer.from(offer.yiaddr.split('.').map(Number)));
      if (serverId) p.options.set(Opt.ServerId, serverId);
      return p;
    }, [MessageType.Ack, MessageType.Nak]);
    if (ack.options.get(Opt.MessageType)?.[0] === MessageType.Nak) throw new StageError('NAK');
    return ack;
  }
}

function bootFile(p: DhcpPacket): string {
  const o = p.options.get(Opt.BootFile);
  return o ? o.toString('latin1').replace(/\0.*$/, '') : p.file;
}

interface Got {
  status: number;
  body: Buffer;
}

/** GET with a fresh connection per request from `localAddress`, as busybox wget and iPXE do. */
function httpGet(url: string, localAddress: string | undefined, keepBody = true, timeoutMs = 120_000): Promise<Got & { bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, localAddress, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (keepBody) chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), bytes }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** One HTTP stage with retries (connection refused/reset under load is retried like wget -t). */
async function fetchStage(url: string, ip: string | undefined, counters: { retries: number }, keepBody: boolean, expectBytes?: number): Promise<Got> {
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) {
      counters.retries++;
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
    try {
      const r = await httpGet(url, ip, keepBody);
      if (r.status !== 200) throw new StageError(`HTTP ${r.status} for ${url}: ${r.body.toString('utf8', 0, 200).trim()}`);
      if (expectBytes !== undefined && r.bytes !== expectBytes) throw new Error(`short body ${r.bytes}/${expectBytes}`);
      return r;
    } catch (e) {
      if (e instanceof StageError) throw e;
      last = (e as Error).message;
    }
  }
  throw new StageError(`GET ${url}: ${last}`);
}

interface IpxeScript {
  kernel: string;
  initrd: string;
  token: string;
  provisionUrl: string;
}

export function parseIpxeScript(text: string): IpxeScript | undefined {
  const k = /^kernel\s+(\S+)(.*)$/m.exec(text);
  const i = /^initrd\s+(?:--name\s+\S+\s+)?(\S+)/m.exec(text);
  if (!k || !i) return undefined;
  const arg = (n: string) => new RegExp(`(?:^|\\s)${n.replace('.', '\\.')}=(\\S+)`).exec(k[2]!)?.[1] ?? '';
  return { kernel: k[1]!, initrd: i[1]!, token: arg('pxeherd.token'), provisionUrl: arg('pxeherd.url') };
}

async function timed<T>(r: NodeResult, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const retries0 = r.retries;
  try {
    return await fn();
  } catch (e) {
    throw new StageError(`${name}: ${(e as Error).message}`);
  } finally {
    r.stages[name] = performance.now() - t0;
    if (r.retries > retries0) (r.stageRetries ??= {})[name] = r.retries - retries0;
  }
}

/**
 * TFTP of the loader. A PXE ROM whose transfer fails (server busy, timeout) retries the boot
 * after a pause; here the pause is 1-3 s with jitter, up to 10 times, each counted as a retry.
 */
async function tftpFetch(host: string, file: string, job: StormJob, r: NodeResult): Promise<void> {
  let last = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    if (attempt > 0) {
      r.retries++;
      await new Promise((res) => setTimeout(res, 1000 + Math.random() * 2000));
    }
    try {
      const g = await tftpGet({ host, port: 69, file, options: { blksize: String(job.blksize ?? 1432), tsize: '0' }, timeoutMs: 1000, retries: 8, deadlineMs: 120_000 });
      if (g.data.length === 0) throw new Error('empty file');
      r.retries += g.duplicates;
      return;
    } catch (e) {
      last = (e as Error).message;
    }
  }
  throw new Error(last);
}

async function fullNode(job: StormJob, dhcp: DhcpClients, mac: string): Promise<NodeResult> {
  const r: NodeResult = { mac, ok: false, stages: {}, retries: 0 };
  const ack = await timed(r, 'dhcp', () => dhcp.dora(mac, 'pxe', r, job.dhcpTries));
  r.ip = ack.yiaddr;
  const loader = bootFile(ack);
  if (!loader) throw new StageError('dhcp: the offer names no boot file');
  const next = ack.siaddr !== '0.0.0.0' ? ack.siaddr : job.server;
  await timed(r, 'tftp', () => tftpFetch(next, loader, job, r));
  const ack2 = await timed(r, 'dhcp-ipxe', () => dhcp.dora(mac, 'ipxe', r, job.dhcpTries));
  const scriptUrl = bootFile(ack2);
  if (!/^http:\/\//.test(scriptUrl)) throw new StageError(`dhcp-ipxe: boot file is not an HTTP URL: ${scriptUrl}`);
  const ip = ack2.yiaddr;
  r.ip = ip;
  const script = await timed(r, 'ipxe', async () => {
    const g = await fetchStage(scriptUrl, ip, r, true);
    const s = parseIpxeScript(g.body.toString('utf8'));
    if (!s) throw new Error(`no kernel/initrd line in the script: ${g.body.toString('utf8', 0, 300)}`);
    return s;
  });
  await timed(r, 'kernel', () => fetchStage(script.kernel, ip, r, false));
  await timed(r, 'initrd', () => fetchStage(script.initrd, ip, r, false));
  const q = (state: string) => `${script.provisionUrl.replace(/\/init$/, `/${state}`)}?mac=${mac.replace(/:/g, '-')}${script.token ? `&token=${script.token}` : ''}`;
  await timed(r, 'init', async () => {
    const g = await fetchStage(q('init'), ip, r, true);
    const text = g.body.toString('utf8');
    if (!text.includes('# NODESCRIPT END')) throw new Error(`init stream did not end: ${text.slice(-300)}`);
    if (/^pxeherd: nodescript .* failed/m.test(text) || /nodescript [^\n]* failed/.test(text)) throw new Error(`a nodescript failed: ${text.slice(-300)}`);
    const name = /NODENAME='([^']*)'/.exec(text)?.[1];
    if (name) r.name = name;
  });
  // The rootfs stage: what 10-vnfs-root does on a node (stage one's wget of the image).
  if (job.imagePath) await timed(r, 'image', () => fetchStage(`http://${job.server}:${job.httpPort}${job.imagePath}?mac=${mac.replace(/:/g, '-')}`, ip, r, false, job.imageBytes));
  await timed(r, 'ready', () => fetchStage(q('ready'), ip, r, true));
  r.ok = true;
  return r;
}

/** A raw TCP transfer: connect, read to the end, count the bytes (the link, without HTTP). */
function tcpRead(host: string, port: number, expect: number | undefined, timeoutMs = 300_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    let bytes = 0;
    s.setTimeout(timeoutMs, () => s.destroy(new Error('timeout')));
    s.on('data', (c: Buffer) => {
      bytes += c.length;
    });
    s.on('end', () => (expect !== undefined && bytes !== expect ? reject(new Error(`short transfer ${bytes}/${expect}`)) : resolve(bytes)));
    s.on('error', reject);
  });
}

async function registerNode(job: StormJob, dhcp: DhcpClients, mac: string, i: number): Promise<NodeResult> {
  const r: NodeResult = { mac, ok: false, stages: {}, retries: 0 };
  if (i % 2 === 0) {
    const ack = await timed(r, 'dhcp', () => dhcp.dora(mac, 'pxe', r, job.dhcpTries));
    r.ip = ack.yiaddr;
    r.acked = 'dhcp';
  } else {
    await timed(r, 'init', async () => {
      // Only the verdict matters here: status 200 means the node is registered. Stop reading.
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.get(`http://${job.server}:${job.httpPort}/provision/init?mac=${mac}`, { agent: false, timeout: 30_000 }, (res) => {
          resolve(res.statusCode ?? 0);
          res.destroy();
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
      });
      if (status !== 200) throw new Error(`HTTP ${status}`);
      r.acked = 'init';
    });
  }
  r.ok = true;
  return r;
}

async function oneStage(job: StormJob, dhcp: DhcpClients | undefined, mac: string): Promise<NodeResult> {
  const r: NodeResult = { mac, ok: false, stages: {}, retries: 0 };
  if (job.mode === 'dhcp') {
    const ack = await timed(r, 'dhcp', () => dhcp!.dora(mac, 'pxe', r, job.dhcpTries));
    r.ip = ack.yiaddr;
  } else if (job.mode === 'tftp') {
    await timed(r, 'tftp', () => tftpFetch(job.server, job.tftpFile!, job, r));
  } else if (job.mode === 'http') {
    const paths = job.httpPaths ?? [];
    const names = job.httpNames ?? ['kernel', 'initrd'];
    for (let k = 0; k < paths.length; k++) {
      const url = `http://${job.server}:${job.httpPort}${paths[k]!.replace('{mac}', mac.replace(/:/g, '-'))}`;
      await timed(r, names[k] ?? `http${k}`, () => fetchStage(url, undefined, r, false, names[k] === 'image' ? job.imageBytes : undefined));
    }
  } else if (job.mode === 'tcp') {
    await timed(r, 'link', () => tcpRead(job.server, job.tcpPort!, job.imageBytes));
  }
  r.ok = true;
  return r;
}

export async function runJob(job: StormJob): Promise<StormResult> {
  const needDhcp = job.mode === 'full' || job.mode === 'dhcp' || job.mode === 'register';
  const dhcp = needDhcp ? new DhcpClients() : undefined;
  await dhcp?.open();
  if (job.startFile) {
    process.stderr.write('READY\n');
    const file = job.startFile;
    await new Promise<void>((go) => {
      const t = setInterval(() => {
        if (fs.existsSync(file)) {
          clearInterval(t);
          go();
        }
      }, 2);
    });
  }
  const mine = (i: number) => !job.shard || i % job.shard.count === job.shard.index;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  // The loop's stalls: a 100 ms tick that fires late by more than that was held up.
  const stalls = { max: 0, over500: 0 };
  let lastTick = performance.now();
  const stallTimer = setInterval(() => {
    const now = performance.now();
    const stall = now - lastTick - 100;
    lastTick = now;
    if (stall > stalls.max) stalls.max = stall;
    if (stall > 500) {
      stalls.over500++;
      if (process.env.STORM_CLIENT_STALLS) process.stderr.write(`storm-clients: event loop stalled ${stall.toFixed(0)} ms at ${((now - t0) / 1000).toFixed(1)} s\n`);
    }
  }, 100);
  const results: NodeResult[] = [];
  const runs: Promise<void>[] = [];
  for (let i = 0; i < job.nodes; i++) {
    if (!mine(i)) continue;
    const mac = macFor(job.macTag, i);
    const delay = job.rampSeconds > 0 ? (job.rampSeconds * 1000 * i) / job.nodes : 0;
    runs.push(
      (async () => {
        if (delay) await new Promise((r) => setTimeout(r, delay));
        const body = job.mode === 'full' ? fullNode(job, dhcp!, mac) : job.mode === 'register' ? registerNode(job, dhcp!, mac, i) : oneStage(job, dhcp, mac);
        let r: NodeResult;
        try {
          r = await body;
        } catch (e) {
          r = { mac, ok: false, error: (e as Error).message, stages: {}, retries: 0 };
        }
        r.doneAt = performance.now() - t0;
        results.push(r);
      })(),
    );
  }
  const progress = job.progressEveryMs
    ? setInterval(() => {
        const ok = results.filter((r) => r.ok).length;
        process.stderr.write(`PROGRESS ${JSON.stringify({ done: results.length, ok, failed: results.length - ok, seconds: +((performance.now() - t0) / 1000).toFixed(1) })}\n`);
      }, job.progressEveryMs)
    : undefined;
  const deadline = (job.deadlineSeconds ?? 600) * 1000;
  await Promise.race([Promise.all(runs), new Promise((r) => setTimeout(r, deadline).unref())]);
  if (progress) clearInterval(progress);
  clearInterval(stallTimer);
  dhcp?.close();
  const seen = new Set(results.map((r) => r.mac));
  for (let i = 0; i < job.nodes; i++) {
    if (!mine(i)) continue;
    const mac = macFor(job.macTag, i);
    if (!seen.has(mac)) results.push({ mac, ok: false, error: 'deadline', stages: {}, retries: 0 });
  }
  const cpu = process.cpuUsage(cpu0);
  return { mode: job.mode, nodes: job.nodes, seconds: (performance.now() - t0) / 1000, clientCpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(2),
    clientHealth: { dhcpLateReplies: dhcp?.lateReplies ?? 0, dhcpLateMaxMs: Math.round(dhcp?.lateMaxMs ?? 0), loopStallMaxMs: Math.round(stalls.max), loopStallsOver500ms: stalls.over500, dhcpWaitsExtended: dhcp?.stallExtensions ?? 0 },
    results,
  };
}

/** A provisiond TCP request ("<state> nodeid=<MAC> [token=T]\n"); resolves with everything the server sent. */
export function provisiondAsk(host: string, port: number, line: string, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, host);
    const chunks: Buffer[] = [];
    s.setTimeout(timeoutMs, () => s.destroy(new Error('timeout')));
    s.on('connect', () => s.write(line));
    s.on('data', (c) => chunks.push(c));
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.on('error', reject);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const job = JSON.parse(process.argv[2] ?? '{}') as StormJob;
  runJob(job).then(
    (r) => {
      // A large result through a pipe is cut short by process.exit: write a file when asked.
      if (job.resultFile) {
        fs.writeFileSync(job.resultFile, JSON.stringify(r));
        process.stdout.write('DONE\n', () => process.exit(0));
      } else process.stdout.write(JSON.stringify(r) + '\n', () => process.exit(0));
    },
    (e) => {
      process.stderr.write(`storm-clients: ${(e as Error).stack}\n`);
      process.exit(1);
    },
  );
}
