/**
 * Shared pieces of the boot storm and the reliability suite: a server namespace (bridge
 * holding the master's address) and a client namespace holding every address the pool can
 * hand out (so each simulated node speaks from the address it leased, as the token check
 * requires), `pxeherd serve` started there with a synthetic VNFS, the simulated clients
 * (bench/storm-clients.ts) run inside the client namespace, the reference servers (dnsmasq,
 * nginx), /proc sampling of the server, and percentile summaries.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLab, labUnavailable, sh, spawnIn, tmpDir, waitFor, type Lab } from '../test/lab/lab.js';
import type { NodeResult, StormJob, StormResult } from './storm-clients.js';
import { innerPid } from '../test/lab/procs.js';
import { limitsFor, readNeighbourLimits, sysctlSettings } from '../src/server/neighbour-table.js';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const CLI = process.env.PXEHERD_CLI ?? path.join(ROOT, 'dist', 'cli.js');
const CLIENTS = path.join(ROOT, 'bench', 'storm-clients.ts');

export interface StormLab extends Lab {
  /** First two octets, e.g. "10.84": the lab is a /16 so a thousand nodes fit. */
  net16: string;
  pool: [string, string];
  poolSize: number;
}

function ipAt(net16: string, n: number): string {
  return `${net16}.${4 + (n >> 8)}.${n & 0xff}`;
}

/**
 * The lab's own /16 (inside namespaces we create; nothing else sees it). The pool starts at
 * <net16>.4.1; the client namespace holds all its addresses plus <net16>.0.2 and a default
 * route, so broadcasts to 255.255.255.255 leave through its veth.
 */
export function createStormLab(o: { name: string; net16: string; poolSize: number }): StormLab {
  const pool = Array.from({ length: o.poolSize }, (_, i) => ipAt(o.net16, i + 1));
  const lab = createLab({ name: o.name, subnet: `${o.net16}.0`, prefixLen: 16, clientAddrs: [`${o.net16}.0.2`, ...pool], clientDefaultRoute: true });
  // Thousands of replies in a burst: room in the socket buffers (best effort: a kernel without
  // per-namespace limits keeps the host's).
  for (const ns of [lab.ns, lab.clientNs]) {
    sh('sysctl', ['-q', '-w', 'net.core.rmem_max=16777216', 'net.core.wmem_max=16777216'], { ns, allowFail: true });
    sh('sysctl', ['-q', '-w', 'net.ipv4.ip_local_port_range=10000 65000'], { ns, allowFail: true });
  }
  roomInNeighbourTable(o.poolSize);
  return { ...lab, net16: o.net16, pool: [pool[0]!, pool[pool.length - 1]!], poolSize: o.poolSize };
}

/**
 * The host's neighbour table is one for every namespace: two servers each talking to every
 * machine of the pool overflow Linux's default 1024 entries, and the replies beyond it are
 * dropped (the second-round "no Offer" of the pgrestart storms, BENCHMARKS.md). The lab is set
 * up as `serve`'s start-up warning tells an admin (src/server/neighbour-table.ts), for the
 * references alike; the host keeps the larger limits afterwards, and it is said.
 */
function roomInNeighbourTable(poolSize: number): void {
  const limits = readNeighbourLimits();
  const wanted = 4 * poolSize; // two servers' entries, twice over
  if (!limits || limits.thresh3 >= wanted) return;
  const settings = sysctlSettings(limitsFor(wanted / 2));
  const set = settings.join(' ');
  const r = spawnSync('sysctl', ['-q', '-w', ...settings], { encoding: 'utf8' });
  process.stderr.write(`storm lab: the host's neighbour table was ${limits.thresh1}/${limits.thresh2}/${limits.thresh3} (gc_thresh1/2/3): ${r.status === 0 ? `set ${set} (left so)` : `could not raise it (${r.stderr.trim()}): expect dropped replies above ${limits.thresh3} entries`}\n`);
}

/** Why `pxeherd serve` in a storm lab cannot run here: the lab's own needs, or no built CLI. */
export function stormUnavailable(needs: string[] = []): string | undefined {
  return labUnavailable(needs) ?? (fs.existsSync(CLI) ? undefined : `needs ${path.relative(ROOT, CLI)} (npm run build)`);
}

/**
 * A reliability test's lab (phrel*, 10.85/16), its directory and the servers it started:
 * `setUp` for before(), `tearDown` for after(), which stops the servers and removes the
 * namespaces and the directory also when the test failed. Both do nothing when `why` says the
 * test is skipped.
 */
export function reliabilityFixture(o: { why: string | undefined; dirPrefix: string; poolSize: number }) {
  const f = {
    lab: undefined as unknown as StormLab,
    dir: '',
    servers: [] as RunningPxeherd[],
    setUp() {
      if (o.why) return;
      f.dir = tmpDir(o.dirPrefix);
      f.lab = createStormLab({ name: 'phrel', net16: '10.85', poolSize: o.poolSize });
    },
    async tearDown() {
      if (o.why) return;
      for (const s of f.servers) await s.stop().catch(() => undefined);
      f.lab?.destroy();
      if (f.dir) fs.rmSync(f.dir, { recursive: true, force: true });
    },
    /** `startPxeherd` in this lab; tearDown stops it. */
    async serve(config: string, log: string, env?: NodeJS.ProcessEnv): Promise<RunningPxeherd> {
      const s = await startPxeherd(f.lab, config, log, env);
      f.servers.push(s);
      return s;
    },
  };
  return f;
}

export interface PxeherdOpts {
  dir: string;
  kernelBytes: number;
  initrdBytes: number;
  /** Extra YAML appended to the config. */
  extra?: string;
  nodescriptsParallel?: number;
  /** nodes.name_pattern (default n####). */
  namePattern?: string;
  /** tftp.max_transfers; the default 256 refuses the rest of an all-at-once storm with "busy". */
  tftpMaxTransfers?: number;
  /** More keys for the tftp section, YAML flow style without braces (e.g. `streams: 0`). */
  tftpExtra?: string;
}

export function writeStormConfig(lab: StormLab, o: PxeherdOpts): { config: string; statedir: string } {
  const statedir = path.join(o.dir, 'var');
  const config = path.join(o.dir, 'pxeherd.yaml');
  fs.writeFileSync(
    config,
    `statedir: ${statedir}
interface: br0
address: ${lab.serverIp}
dhcp: { mode: full, range: [${lab.pool[0]}, ${lab.pool[1]}], netmask: 255.255.0.0, router: ${lab.serverIp}, lease_seconds: 3600, ipv6_ra: false }
tftp: { port: 69${o.tftpMaxTransfers ? `, max_transfers: ${o.tftpMaxTransfers}` : ''}${o.tftpExtra ? `, ${o.tftpExtra}` : ''} }
http: { port: 8080 }
provisiond: { port: 987 }
admin: { port: 0 }
nodes: { default_vnfs: storm${o.namePattern ? `, name_pattern: "${o.namePattern}"` : ''} }
nodescripts: { timeout_seconds: 60${o.nodescriptsParallel ? `, max_parallel: ${o.nodescriptsParallel}` : ''} }
log: { level: warn }
${o.extra ?? ''}`,
  );
  return { config, statedir };
}

export function pxeherdCli(args: string[], config: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args, '--config', config], { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A VNFS named `storm` with synthetic kernel and initrd files of the given sizes. */
export function registerSyntheticVnfs(dir: string, config: string, kernelBytes: number, initrdBytes: number): void {
  const src = path.join(dir, 'vnfs-src');
  fs.mkdirSync(src, { recursive: true });
  const fill = (file: string, n: number) => {
    const fd = fs.openSync(file, 'w');
    const block = Buffer.alloc(1 << 20);
    for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i);
    for (let off = 0; off < n; off += block.length) fs.writeSync(fd, block, 0, Math.min(block.length, n - off));
    fs.closeSync(fd);
  };
  fill(path.join(src, 'vmlinuz'), kernelBytes);
  fill(path.join(src, 'initrd.img'), initrdBytes);
  const r = pxeherdCli(['vnfs', 'add', 'storm', '--kernel', path.join(src, 'vmlinuz'), '--initrd', path.join(src, 'initrd.img'), '--json'], config);
  if (r.code !== 0) throw new Error(`pxeherd vnfs add failed: ${r.stderr}`);
}

export interface RunningPxeherd {
  proc: ChildProcess;
  pid: number;
  log: string;
  stop(): Promise<void>;
  kill9(): Promise<void>;
}

export async function startPxeherd(lab: StormLab, config: string, log: string, env: NodeJS.ProcessEnv = {}): Promise<RunningPxeherd> {
  const proc = lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', config], { log, env });
  await waitFor('pxeherd serve to listen (dhcp, tftp, http, provisiond)', 30_000, () => {
    if (proc.exitCode !== null) throw new Error(`pxeherd serve exited: ${fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-2000) : ''}`);
    const ss = sh('ss', ['-Hlnu', 'sport = :67 or sport = :69'], { ns: lab.ns, allowFail: true });
    const st = sh('ss', ['-Hlnt', 'sport = :8080 or sport = :987'], { ns: lab.ns, allowFail: true });
    return ss.includes(':67') && ss.includes(':69') && st.includes(':8080') && st.includes(':987');
  });
  await new Promise((r) => setTimeout(r, 50));
  const pid = innerPid(proc);
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  const waitExit = (ms: number) => Promise.race([new Promise((r) => proc.once('exit', r)), new Promise((r) => setTimeout(r, ms))]);
  return {
    proc,
    pid,
    log,
    async stop() {
      if (exited()) return;
      process.kill(pid, 'SIGTERM');
      await waitExit(10_000);
      if (!exited()) process.kill(pid, 'SIGKILL');
      await waitExit(5_000);
    },
    async kill9() {
      if (exited()) return;
      process.kill(pid, 'SIGKILL');
      await waitExit(5_000);
    },
  };
}

let resultSeq = 0;

/** How far a client run is (from the clients' PROGRESS lines, see StormJob.progressEveryMs). */
export interface StormProgress {
  done: number;
  ok: number;
  failed: number;
  seconds: number;
}

/**
 * Run simulated nodes inside the client namespace; resolves with their results.
 *
 * `procs` client processes share the nodes (node i goes to process i % procs), so that on a
 * machine with spare cores the clients' own CPU is not what limits a stage: one Node.js
 * process running a thousand TFTP clients uses about as much CPU as its wall time, whatever
 * the server. The processes start the clock together (each prints READY once set up; a start
 * file releases them all), their results are merged; `seconds` is the slowest one's wall time,
 * `clientCpuSeconds` the sum and `clientCpuMaxSeconds` the busiest process's (close to
 * `seconds` means the clients were the limit).
 */
/**
 * `--client-procs` of the storm benches: a number, or `auto` = one client process per core
 * (at most 4): on a 2-core machine two, so the clients can use a core each while the server
 * runs; more processes than cores only adds context switches.
 */
export function clientProcs(v: string): number {
  if (v === 'auto') return Math.max(1, Math.min(4, os.availableParallelism()));
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--client-procs must be auto or a whole number 1-64, not ${v}`);
  return n;
}

export interface ClientRun extends StormResult {
  clientCpuMaxSeconds?: number;
  clientProcs: number;
}

export async function runClients(lab: StormLab, job: StormJob, onProgress?: (p: StormProgress) => void, procs = 1): Promise<ClientRun> {
  const n = Math.max(1, Math.min(procs, job.nodes));
  if (n === 1) return runClientProc(lab, job, onProgress);
  const startFile = path.join(os.tmpdir(), `phstorm-start-${process.pid}-${resultSeq++}`);
  const progress: StormProgress[] = [];
  const ready = new Set<number>();
  const release = () => fs.writeFileSync(startFile, '');
  try {
    const runs = Array.from({ length: n }, (_, index) =>
      runClientProc(
        lab,
        { ...job, shard: { index, count: n }, startFile },
        onProgress
          ? (p) => {
              progress[index] = p;
              const all = progress.filter(Boolean);
              onProgress({ done: sum(all.map((x) => x.done)), ok: sum(all.map((x) => x.ok)), failed: sum(all.map((x) => x.failed)), seconds: Math.max(...all.map((x) => x.seconds)) });
            }
          : undefined,
        () => {
          ready.add(index);
          if (ready.size === n) release();
        },
      ).catch((e: Error) => {
        release(); // a process that failed before READY must not hold the others at the start
        throw e;
      }),
    );
    const settled = await Promise.allSettled(runs);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const rs = settled.map((r) => (r as PromiseFulfilledResult<ClientRun>).value);
    return {
      mode: job.mode,
      nodes: job.nodes,
      seconds: Math.max(...rs.map((r) => r.seconds)),
      clientCpuSeconds: +sum(rs.map((r) => r.clientCpuSeconds ?? 0)).toFixed(2),
      clientCpuMaxSeconds: Math.max(...rs.map((r) => r.clientCpuSeconds ?? 0)),
      clientProcs: n,
      results: rs.flatMap((r) => r.results),
    };
  } finally {
    fs.rmSync(startFile, { force: true });
  }
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

function runClientProc(lab: StormLab, job: StormJob, onProgress?: (p: StormProgress) => void, onReady?: () => void): Promise<ClientRun> {
  const resultFile = path.join(os.tmpdir(), `phstorm-result-${process.pid}-${resultSeq++}.json`);
  return new Promise<ClientRun>((resolve, reject) => {
    const args = JSON.stringify({ ...job, resultFile, ...(onProgress ? { progressEveryMs: job.progressEveryMs ?? 500 } : {}) });
    const p = spawnIn(lab.clientNs, process.execPath, ['--import', 'tsx', CLIENTS, args], { pipe: true, cwd: ROOT });
    let out = '';
    let err = '';
    let partial = '';
    p.stdout!.on('data', (c) => (out += c));
    p.stderr!.on('data', (c: Buffer) => {
      // Progress lines go to the caller; everything else is kept for the error report.
      const lines = (partial + c.toString('utf8')).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('PROGRESS ')) {
          try {
            onProgress?.(JSON.parse(line.slice(9)) as StormProgress);
          } catch {
            /* a torn line: the next one comes soon */
          }
        } else if (line === 'READY') onReady?.();
        else err += line + '\n';
      }
    });
    p.on('exit', (code) => {
      try {
        if (code !== 0 || !out.includes('DONE')) reject(new Error(`storm clients exited ${code}: ${(err + partial).slice(-2000)}`));
        else {
          const r = JSON.parse(fs.readFileSync(resultFile, 'utf8')) as StormResult;
          resolve({ ...r, clientCpuMaxSeconds: r.clientCpuSeconds, clientProcs: 1 });
        }
      } catch (e) {
        reject(e as Error); // never throw from an event handler: the caller's cleanup must run
      } finally {
        fs.rmSync(resultFile, { force: true });
      }
    });
  });
}

/** CPU ticks (utime+stime) and memory of a process, from /proc. */
export interface ProcSample {
  at: number;
  cpuSeconds: number;
  rssMiB: number;
  hwmMiB: number;
}

/** The process and its descendants (nodescript helpers, TFTP workers are threads already). */
function processTree(pid: number): number[] {
  const parent = new Map<number, number[]>();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (!parent.has(ppid)) parent.set(ppid, []);
      parent.get(ppid)!.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(parent.get(out[i]!) ?? []));
  return out;
}

/** CPU of the server and everything it started (utime+stime, plus reaped children's). */
function treeTicks(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const st = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      // utime stime cutime cstime are fields 14-17 (1-based) of /proc/PID/stat.
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      /* exited meanwhile */
    }
  }
  return ticks;
}

export function sampleProc(pid: number): ProcSample | undefined {
  try {
    fs.accessSync(`/proc/${pid}/stat`);
    const ticks = treeTicks(pid);
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { at: performance.now(), cpuSeconds: ticks / 100, rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/** Kernel counters of a namespace that explain tail latencies: listen-queue overflows, UDP buffer drops. */
export function netCounters(ns: string): Record<string, number> {
  const read = (file: string, prefix: string, keys: string[]) => {
    const lines = sh('cat', [file], { ns, allowFail: true }).split('\n').filter((l) => l.startsWith(prefix));
    if (lines.length < 2) return {};
    const h = lines[0]!.split(/\s+/);
    const v = lines[1]!.split(/\s+/);
    return Object.fromEntries(keys.map((k) => [k, Number(v[h.indexOf(k)] ?? 0)]));
  };
  return { ...read('/proc/net/netstat', 'TcpExt:', ['ListenOverflows', 'ListenDrops']), ...read('/proc/net/snmp', 'Udp:', ['RcvbufErrors', 'InErrors', 'InDatagrams', 'OutDatagrams', 'SndbufErrors']) };
}

export function diffCounters(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));
}

/** Samples a process every `everyMs` and keeps the peak RSS. */
export function watchProc(pid: number, everyMs = 250) {
  const first = sampleProc(pid);
  let last = first;
  let peakRss = first?.rssMiB ?? 0;
  const t = setInterval(() => {
    const s = sampleProc(pid);
    if (s) {
      last = s;
      peakRss = Math.max(peakRss, s.rssMiB);
    }
  }, everyMs);
  return {
    stop() {
      clearInterval(t);
      const end = sampleProc(pid) ?? last;
      if (!first || !end) return undefined;
      const wall = (end.at - first.at) / 1000;
      const cpu = end.cpuSeconds - first.cpuSeconds;
      return { cpuSeconds: +cpu.toFixed(2), cpuPercent: +((100 * cpu) / Math.max(wall, 0.001)).toFixed(1), peakRssMiB: +Math.max(peakRss, end.rssMiB).toFixed(1), hwmMiB: +end.hwmMiB.toFixed(1) };
    },
  };
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface StageSummary {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** Per-stage p50/p99 in seconds over successful nodes. */
export function summarize(results: NodeResult[]): Record<string, StageSummary> {
  const by = new Map<string, number[]>();
  for (const r of results) {
    if (!r.ok) continue;
    for (const [k, v] of Object.entries(r.stages)) {
      if (!by.has(k)) by.set(k, []);
      by.get(k)!.push(v / 1000);
    }
  }
  const out: Record<string, StageSummary> = {};
  for (const [k, v] of by) {
    v.sort((a, b) => a - b);
    const r3 = (x: number) => +x.toFixed(3);
    out[k] = { n: v.length, p50: r3(percentile(v, 50)), p99: r3(percentile(v, 99)), max: r3(v[v.length - 1]!) };
  }
  return out;
}

/** dnsmasq as the DHCP and TFTP reference on the same bridge and pool. */
export async function startDnsmasq(lab: StormLab, dir: string, tftpRoot: string): Promise<ChildProcess> {
  const p = lab.spawnInNs(
    'dnsmasq',
    [
      '--no-daemon',
      '--port=0',
      '--user=root',
      '--interface=br0',
      '--bind-interfaces',
      `--dhcp-range=${lab.pool[0]},${lab.pool[1]},255.255.0.0,1h`,
      '--dhcp-lease-max=200000',
      '--no-ping',
      '--dhcp-authoritative',
      '--dhcp-boot=undionly.kpxe',
      '--enable-tftp',
      `--tftp-root=${tftpRoot}`,
      '--tftp-max=5000',
      '--no-resolv',
      '--no-hosts',
      `--dhcp-leasefile=${path.join(dir, 'dnsmasq.leases')}`,
      `--pid-file=${path.join(dir, 'dnsmasq.pid')}`,
    ],
    { log: path.join(dir, 'dnsmasq.log') },
  );
  await waitFor('dnsmasq to listen on 67 and 69', 10_000, () => {
    if (p.exitCode !== null) throw new Error(`dnsmasq exited: ${fs.readFileSync(path.join(dir, 'dnsmasq.log'), 'utf8')}`);
    const ss = sh('ss', ['-Hlnu', 'sport = :67 or sport = :69'], { ns: lab.ns, allowFail: true });
    return ss.includes(':67') && ss.includes(':69');
  });
  return p;
}

/** nginx serving the state directory (so /vnfs/storm/<file> is the same file pxeherd serves). */
export async function startNginx(lab: StormLab, dir: string, root: string, port = 8080): Promise<ChildProcess> {
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `daemon off;
master_process on;
worker_processes auto;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx.error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fcgi;
  uwsgi_temp_path ${dir}/nginx-uwsgi;
  scgi_temp_path ${dir}/nginx-scgi;
  server { listen ${lab.serverIp}:${port} backlog=4096; root ${root}; }
}
`,
  );
  const p = lab.spawnInNs('nginx', ['-c', conf, '-e', path.join(dir, 'nginx.error.log')], { log: path.join(dir, 'nginx.out') });
  await waitFor('nginx to listen', 10_000, () => {
    if (p.exitCode !== null) throw new Error(`nginx exited: ${fs.readFileSync(path.join(dir, 'nginx.out'), 'utf8')}`);
    return sh('ss', ['-Hlnt', `sport = :${port}`], { ns: lab.ns, allowFail: true }).includes(`:${port}`);
  });
  return p;
}

export async function stopProc(p: ChildProcess, ms = 5000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await Promise.race([done, new Promise((r) => setTimeout(r, ms))]);
  if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

/** Run hostile probes (bench/storm-probe.ts) from inside the client namespace. */
export async function runProbes(lab: StormLab, probes: import('./storm-probe.js').Probe[]): Promise<import('./storm-probe.js').ProbeResult[]> {
  const base = path.join(os.tmpdir(), `phstorm-probe-${process.pid}-${resultSeq++}`);
  fs.writeFileSync(`${base}.in.json`, JSON.stringify({ probes, out: `${base}.out.json` }));
  try {
    await new Promise<void>((resolve, reject) => {
      const p = spawnIn(lab.clientNs, process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'storm-probe.ts'), `${base}.in.json`], { pipe: true, cwd: ROOT });
      let err = '';
      p.stderr!.on('data', (c) => (err += c));
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`probes exited ${code}: ${err}`))));
    });
    return JSON.parse(fs.readFileSync(`${base}.out.json`, 'utf8'));
  } finally {
    fs.rmSync(`${base}.in.json`, { force: true });
    fs.rmSync(`${base}.out.json`, { force: true });
  }
}
