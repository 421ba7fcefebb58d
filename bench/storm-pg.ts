/**
 * Boot storm on two `pxeherd serve` processes sharing one PostgreSQL (issue 19): server a in the
 * storm lab's server namespace (<net16>.0.1 on br0), server b in a namespace of its own on the
 * same bridge (<net16>.0.3), one pool, one private PostgreSQL (test/lab/postgres.ts). N simulated
 * machines (bench/storm-clients.ts, `full` mode) boot at once: DHCP as a PXE ROM (both servers
 * answer the broadcast; the client takes the first OFFER), TFTP from the server that answered,
 * DHCP as iPXE, the iPXE script, kernel and initrd over HTTP, provision init and ready.
 *
 *   node --import tsx bench/storm-pg.ts [--nodes 1000] [--variants plain,kill9,pgrestart]
 *                                       [--kernel-mib 1] [--initrd-mib 4] [--no-durable] [--json] [--keep]
 *
 * Variants (each on a fresh database and fresh state directories, one after the other):
 *   plain      both servers up throughout.
 *   kill9      kill -9 of server b once a third of the nodes are registered. The nodes cut off
 *              mid-boot by the kill (their exchange was with b) reboot: a second round of the
 *              same machines, which server a alone finishes.
 *   pgrestart  `pg_ctl stop -m fast`, 2 s down, `pg_ctl start` once a third are registered: both
 *              servers reconnect; the machines whose 4 DISCOVERs all fell in the outage (no new
 *              machine is registered without the database) reboot in a second round, as in kill9.
 * Checked IN THE DATABASE after each (checkPgStorm): every MAC one node and one node.register,
 * unique names, each client's lease the address it was last ACKed and no address held by two
 * clients, every node's events in one timeline by id with the server_id of the server that
 * recorded them (both servers in the plain run), the boot's steps in it.
 *
 * Environment: PGSTORM_LOG=debug (servers' log level: slice confirms), PGSTORM_METRICS=1 (both
 * servers' DHCP/database metrics every second into metrics-<id>.log; needs curl),
 * PGSTORM_CPU_PROF=DIR (V8 profiles). The report prints the client process's own health per
 * round (DHCP replies that came after it gave up, its event-loop stalls): read it before
 * blaming the servers for unanswered DHCP.
 *
 * Needs root, PostgreSQL (Debian's postgresql), a built dist/cli.js. Namespaces phspg*, addresses
 * 10.86.0.0/16. Durable PostgreSQL (fsync on) unless --no-durable.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { NodeResult, StormResult } from './storm-clients.js';
import { CLI, createStormLab, pxeherdCli, registerSyntheticVnfs, runClients, stormUnavailable, summarize, watchProc, type StormLab } from './storm-lab.js';
import { execFile } from 'node:child_process';
import { sh, spawnIn, waitFor } from '../test/lab/lab.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../test/lab/postgres.js';
import { postgresRestarter } from '../test/lab/postgres-pgctl.js';
import { connectPostgres, type Sql } from '../src/store/pg/connect.js';

export type PgStormVariant = 'plain' | 'kill9' | 'pgrestart';

export interface PgStormReport {
  variant: PgStormVariant;
  nodes: number;
  /** First round: nodes that reached ready, seconds until the last one did. */
  ready: number;
  seconds: number;
  failures: Record<string, number>;
  /** A few failed MACs per reason, of the last round. */
  failedMacs?: Record<string, string[]>;
  /** kill9, pgrestart: the second round (every machine boots again; the cut-off ones finish). */
  rebooted?: { ready: number; seconds: number; failures: Record<string, number> };
  retries: number;
  stages: Record<string, { p50: number; p99: number }>;
  /** What happened mid-storm, and when (seconds since the storm started). */
  disruption?: string;
  /** Leases (last ACK) per server, events per server. */
  leasesByServer: Record<string, number>;
  eventsByServer: Record<string, number>;
  /** Nodes whose timeline holds events of both servers. */
  nodesWithBothServers: number;
  /** What the database check found wrong (empty: all good). */
  problems: string[];
  cpuSeconds: Record<string, number | undefined>;
  /** The simulated clients' own health per round (bench/storm-clients.ts clientHealth). */
  clientHealth?: StormResult['clientHealth'][];
}

export function pgStormUnavailable(): string | undefined {
  return stormUnavailable() ?? postgresUnavailable();
}

const say = (s: string) => process.stderr.write(s + '\n');

/** A namespace of its own on the storm lab's bridge (the second server's host). */
function addHost(lab: StormLab, ns: string, addr: string): () => void {
  if (fs.existsSync(`/run/netns/${ns}`)) sh('ip', ['netns', 'del', ns], { allowFail: true });
  sh('ip', ['netns', 'add', ns]);
  const ip = (n: string, ...a: string[]) => sh('ip', ['-n', n, ...a]);
  ip(ns, 'link', 'set', 'lo', 'up');
  ip(lab.ns, 'link', 'add', 'vpg0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  ip(lab.ns, 'link', 'set', 'vpg0', 'master', lab.bridge, 'up');
  ip(ns, 'addr', 'add', addr, 'dev', 'eth0');
  ip(ns, 'link', 'set', 'eth0', 'up');
  ip(ns, 'route', 'add', 'default', 'dev', 'eth0');
  sh('sysctl', ['-q', '-w', 'net.core.rmem_max=16777216', 'net.core.wmem_max=16777216'], { ns, allowFail: true });
  return () => {
    sh('ip', ['netns', 'pids', ns], { allowFail: true })
      .split(/\s+/)
      .filter(Boolean)
      .forEach((pid) => {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      });
    sh('ip', ['netns', 'del', ns], { allowFail: true });
  };
}

interface Server {
  id: string;
  proc: ChildProcess;
  pid: number;
  log: string;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/** `pxeherd serve` on PostgreSQL in namespace `ns` answering at `address`; resolves when DHCP, TFTP, HTTP and provisiond listen. */
async function serve(o: { id: string; ns: string; address: string; iface: string; url: string; statedir: string; dir: string; lab: StormLab; env?: NodeJS.ProcessEnv }): Promise<Server> {
  const config = path.join(o.dir, `${o.id}.yaml`);
  fs.writeFileSync(config, serverConfig(o.lab, { statedir: o.statedir, address: o.address, iface: o.iface, database: o.url, serverId: o.id }));
  const log = path.join(o.dir, `${o.id}.log`);
  // PGSTORM_CPU_PROF=DIR: a V8 CPU profile of each server into DIR (written when it stops).
  const prof = process.env.PGSTORM_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PGSTORM_CPU_PROF}`, `--cpu-prof-name=${o.id}.cpuprofile`] : [];
  const proc = spawnIn(o.ns, process.execPath, [...prof, CLI, 'serve', '--config', config], { log, env: o.env });
  await waitFor(`pxeherd serve ${o.id} to listen`, 60_000, () => {
    if (proc.exitCode !== null) throw new Error(`pxeherd serve ${o.id} exited: ${fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-2000) : ''}`);
    const u = sh('ss', ['-Hlnu', 'sport = :67 or sport = :69'], { ns: o.ns, allowFail: true });
    const t = sh('ss', ['-Hlnt', 'sport = :8080 or sport = :987'], { ns: o.ns, allowFail: true });
    return u.includes(':67') && u.includes(':69') && t.includes(':8080') && t.includes(':987');
  });
  const pid = proc.pid!; // `ip netns exec` execs node
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  const waitExit = (ms: number) => Promise.race([new Promise((r) => proc.once('exit', r)), new Promise((r) => setTimeout(r, ms))]);
  return {
    id: o.id,
    proc,
    pid,
    log,
    async kill9() {
      if (exited()) return;
      process.kill(pid, 'SIGKILL');
      await waitExit(5000);
    },
    async stop() {
      if (exited()) return;
      process.kill(pid, 'SIGTERM');
      await waitExit(process.env.PGSTORM_CPU_PROF ? 60_000 : 10_000);
      if (!exited()) process.kill(pid, 'SIGKILL');
      await waitExit(5000);
    },
  };
}

/**
 * PGSTORM_METRICS=1: every second, the DHCP and database lines of each server's /metrics
 * (admin API on 127.0.0.1:8081 in its namespace) appended to `metrics-<id>.log` in the run's
 * directory, with the time: where a datagram went (received, answered, shed as stale) when a
 * client says it got no answer. Returns a stop function.
 */
function sampleMetrics(ns: string, id: string, dir: string): () => void {
  if (!process.env.PGSTORM_METRICS) return () => undefined;
  const file = path.join(dir, `metrics-${id}.log`);
  let busy = false;
  const t = setInterval(() => {
    if (busy) return;
    busy = true;
    execFile('ip', ['netns', 'exec', ns, 'curl', '-s', '-m', '2', 'http://127.0.0.1:8081/metrics'], (err, out) => {
      busy = false;
      const lines = err ? [`error ${err.message.split('\n')[0]}`] : out.split('\n').filter((l) => /^pxeherd_(dhcp_(shed|queue|messages)|database_(up|paused|races))/.test(l));
      fs.appendFileSync(file, `${new Date().toISOString()} ${lines.join(' | ')}\n`);
    });
  }, 1000);
  return () => clearInterval(t);
}

/** The storm's configuration (as bench/storm-lab.ts writeStormConfig) for one server of the pair. */
function serverConfig(lab: StormLab, o: { statedir: string; address: string; iface: string; database?: string; serverId?: string }): string {
  return `statedir: ${o.statedir}
${o.database ? `database: "${o.database}"\nserver_id: ${o.serverId}\n` : ''}interface: ${o.iface}
address: ${o.address}
dhcp: { mode: full, range: [${lab.pool[0]}, ${lab.pool[1]}], netmask: 255.255.0.0, router: ${lab.serverIp}, lease_seconds: 3600, ipv6_ra: false }
tftp: { port: 69 }
http: { port: 8080 }
provisiond: { port: 987 }
admin: { port: ${process.env.PGSTORM_METRICS ? 8081 : 0} }
nodes: { default_vnfs: storm }
nodescripts: { timeout_seconds: 60 }
log: { level: ${process.env.PGSTORM_LOG ?? 'warn'} }
`;
}

/** A few failed MACs per reason (the last round's), to look up in the servers' logs. */
function failedExamples(rs: NodeResult[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const r of rs)
    if (!r.ok) {
      const k = (r.error ?? 'unknown').replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/g, 'MAC').replace(/\d+\.\d+\.\d+\.\d+/g, 'IP').slice(0, 100);
      if ((out[k] ??= []).length < 5) out[k]!.push(r.mac);
    }
  return out;
}

function failuresByReason(rs: NodeResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rs)
    if (!r.ok) {
      const k = (r.error ?? 'unknown').replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/g, 'MAC').replace(/\d+\.\d+\.\d+\.\d+/g, 'IP').slice(0, 100);
      out[k] = (out[k] ?? 0) + 1;
    }
  return out;
}

/**
 * What the database says after a storm, checked against what the clients were told. Returns the
 * problems found (empty: every MAC one node and one registration, no address twice, each lease the
 * client's last ACK, every node's timeline holding its boot).
 */
export async function checkPgStorm(sql: Sql, results: NodeResult[], o: { bothServers: boolean }): Promise<{ problems: string[]; leasesByServer: Record<string, number>; eventsByServer: Record<string, number>; nodesWithBothServers: number }> {
  const problems: string[] = [];
  const macs = results.map((r) => r.mac).sort();
  const nodes = await sql<{ mac: string; name: string; ip: string }[]>`SELECT mac, name, ip FROM nodes ORDER BY mac`;
  const nodeMacs = nodes.map((n) => n.mac);
  const missing = macs.filter((m) => !nodeMacs.includes(m));
  const extra = nodeMacs.filter((m) => !macs.includes(m));
  if (missing.length) problems.push(`${missing.length} MACs not registered: ${missing.slice(0, 5).join(' ')}`);
  if (extra.length) problems.push(`${extra.length} nodes the storm did not boot: ${extra.slice(0, 5).join(' ')}`);
  if (new Set(nodes.map((n) => n.name)).size !== nodes.length) problems.push('two nodes share a name');
  const regs = await sql<{ mac: string; n: number }[]>`SELECT mac, count(*)::int AS n FROM events WHERE kind = 'node.register' GROUP BY mac`;
  const regCount = new Map(regs.map((r) => [r.mac, r.n]));
  const badRegs = macs.filter((m) => regCount.get(m) !== 1);
  if (badRegs.length) problems.push(`${badRegs.length} MACs without exactly one node.register: ${badRegs.slice(0, 5).map((m) => `${m}=${regCount.get(m) ?? 0}`).join(' ')}`);
  // Addresses: the clients' (last ACKs), the leases, the nodes' own.
  const acked = results.filter((r) => r.ok && r.ip);
  const byIp = new Map<string, string[]>();
  for (const r of acked) byIp.set(r.ip!, [...(byIp.get(r.ip!) ?? []), r.mac]);
  const twice = [...byIp].filter(([, m]) => m.length > 1);
  if (twice.length) problems.push(`${twice.length} addresses ACKed to two clients: ${twice.slice(0, 3).map(([ip, m]) => `${ip}: ${m.join(',')}`).join('; ')}`);
  const leases = await sql<{ mac: string; ip: string; state: string; server_id: string }[]>`SELECT mac, ip, state, server_id FROM leases`;
  const leaseOf = new Map(leases.map((l) => [l.mac, l]));
  const wrongLease = acked.filter((r) => {
    const l = leaseOf.get(r.mac);
    return !l || l.ip !== r.ip || l.state !== 'bound';
  });
  if (wrongLease.length) {
    const m = wrongLease[0]!.mac;
    const tl = await sql<{ kind: string; server_id: string; time: number; detail: string }[]>`SELECT kind, server_id, time, detail FROM events WHERE mac = ${m} ORDER BY id`;
    problems.push(
      `${wrongLease.length} clients whose lease in PostgreSQL is not the address they were ACKed: ${wrongLease.slice(0, 3).map((r) => `${r.mac} acked ${r.ip}, db ${JSON.stringify(leaseOf.get(r.mac))}`).join('; ')}` +
        `; timeline of ${m}: ${tl.map((e) => `${e.time % 100000} ${e.server_id} ${e.kind} ${e.detail.slice(0, 80)}`).join(' / ')}`,
    );
  }
  const nodeIp = new Map(nodes.map((n) => [n.mac, n.ip]));
  const wrongNodeIp = acked.filter((r) => nodeIp.get(r.mac) !== r.ip);
  if (wrongNodeIp.length) problems.push(`${wrongNodeIp.length} nodes whose address in PostgreSQL is not their lease's: ${wrongNodeIp.slice(0, 3).map((r) => `${r.mac} ${r.ip} vs ${nodeIp.get(r.mac)}`).join('; ')}`);
  // Timelines: each node's events by id, with the server that recorded them.
  const evs = await sql<{ mac: string; kind: string; server_id: string; id: number }[]>`
    SELECT mac, CASE WHEN kind = 'provision.end' THEN kind || '.' || (detail::json->>'state') ELSE kind END AS kind, server_id, id
    FROM events WHERE mac = ANY(${sql.array(macs)}::text[]) ORDER BY id`;
  const byMac = new Map<string, { kind: string; server_id: string }[]>();
  for (const e of evs) byMac.set(e.mac, [...(byMac.get(e.mac) ?? []), e]);
  const noServer = evs.filter((e) => !e.server_id);
  if (noServer.length) problems.push(`${noServer.length} events without a server_id`);
  let both = 0;
  const incomplete: string[] = [];
  for (const r of results.filter((x) => x.ok)) {
    const tl = byMac.get(r.mac) ?? [];
    const servers = new Set(tl.map((e) => e.server_id));
    if (servers.size >= 2) both++;
    const kinds = new Set(tl.map((e) => e.kind));
    // (TFTP events carry no MAC here: the simulated ROM's TFTP does not speak from its leased
    // address, so the server cannot tell whose transfer it was.)
    const lacking = ['node.register', 'dhcp.ack', 'http.ipxe', 'http.kernel', 'http.initrd', 'provision.end.init', 'provision.end.ready'].filter((k) => !kinds.has(k));
    if (lacking.length) incomplete.push(`${r.mac} lacks ${lacking.join(',')}`);
  }
  if (incomplete.length) problems.push(`${incomplete.length} ready nodes whose timeline lacks a step of the boot: ${incomplete.slice(0, 3).join('; ')}`);
  if (o.bothServers && both === 0) problems.push('no node has events of both servers');
  const count = (rows: { server_id: string; n: number }[]) => Object.fromEntries(rows.map((r) => [r.server_id, r.n]));
  return {
    problems,
    leasesByServer: count(await sql<{ server_id: string; n: number }[]>`SELECT server_id, count(*)::int AS n FROM leases GROUP BY 1 ORDER BY 1`),
    eventsByServer: count(await sql<{ server_id: string; n: number }[]>`SELECT server_id, count(*)::int AS n FROM events GROUP BY 1 ORDER BY 1`),
    nodesWithBothServers: both,
  };
}

export interface PgStormEnv {
  lab: StormLab;
  pg: PostgresLab;
  restarter: ReturnType<typeof postgresRestarter>;
  dir: string;
  /** Removes namespaces, stops PostgreSQL, removes the directory (unless keep). */
  destroy(): Promise<void>;
}

/** The lab (storm lab + the second server's namespace) and one PostgreSQL for every variant. */
export async function pgStormEnv(o: { nodes: number; durable: boolean; keep?: boolean; dir?: string }): Promise<PgStormEnv> {
  const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'phspg-'));
  const pg = await startPostgres({ durable: o.durable });
  let lab: StormLab | undefined;
  let dropHost: (() => void) | undefined;
  try {
    // Room for a kill -9 run's two rounds on fresh MACs: the pool holds every variant's nodes.
    lab = createStormLab({ name: 'phspg', net16: '10.86', poolSize: Math.min(60000, o.nodes * 2 + 64) });
    const hostNs = `${lab.ns}b`;
    dropHost = addHost(lab, hostNs, '10.86.0.3/16');
    (lab as StormLab & { pgHostNs?: string }).pgHostNs = hostNs;
  } catch (e) {
    lab?.destroy();
    await pg.stop();
    throw e;
  }
  const l = lab;
  const restarter = postgresRestarter(pg, { durable: o.durable });
  return {
    lab: l,
    pg,
    restarter,
    dir,
    async destroy() {
      dropHost?.();
      l.destroy();
      restarter.stopRestarted();
      await pg.stop();
      if (!o.keep) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

let dbSeq = 0;

/** One variant: a fresh database and state directories, two servers, the storm, the checks. */
export async function runPgStorm(env: PgStormEnv, o: { variant: PgStormVariant; nodes: number; macTag: number; kernelBytes: number; initrdBytes: number; durable: boolean; progress?: (s: string) => void }): Promise<PgStormReport> {
  const { lab, pg } = env;
  const hostNs = (lab as StormLab & { pgHostNs?: string }).pgHostNs!;
  const dir = fs.mkdtempSync(path.join(env.dir, `${o.variant}-`));
  const url = await pg.createDatabase(`storm${process.pid % 10000}_${++dbSeq}`);
  const note = o.progress ?? (() => undefined);
  // The VNFS: registered in a SQLite state directory, copied into PostgreSQL (`db copy` makes
  // the schema too), its files under both servers' state directories.
  const seedConfig = path.join(dir, 'seed.yaml');
  const stateA = path.join(dir, 'a');
  const stateB = path.join(dir, 'b');
  fs.writeFileSync(seedConfig, serverConfig(lab, { statedir: stateA, address: lab.serverIp, iface: 'br0' }));
  registerSyntheticVnfs(dir, seedConfig, o.kernelBytes, o.initrdBytes);
  const copied = pxeherdCli(['db', 'copy', '--to', url, '--json'], seedConfig);
  if (copied.code !== 0) throw new Error(`pxeherd db copy failed: ${copied.stderr}`);
  fs.mkdirSync(stateB, { recursive: true });
  fs.cpSync(path.join(stateA, 'vnfs'), path.join(stateB, 'vnfs'), { recursive: true });
  fs.rmSync(path.join(stateA, 'pxeherd.db'), { force: true });
  for (const f of ['pxeherd.db-wal', 'pxeherd.db-shm']) fs.rmSync(path.join(stateA, f), { force: true });

  const sql = connectPostgres(url, { max: 2, applicationName: 'storm-pg check' });
  const restarter = env.restarter;
  const servers: Server[] = [];
  const stopSampling: (() => void)[] = [];
  try {
    servers.push(await serve({ id: 'storm-a', ns: lab.ns, address: lab.serverIp, iface: 'br0', url, statedir: stateA, dir, lab }));
    servers.push(await serve({ id: 'storm-b', ns: hostNs, address: '10.86.0.3', iface: 'eth0', url, statedir: stateB, dir, lab }));
    const [a, b] = servers as [Server, Server];
    stopSampling.push(sampleMetrics(lab.ns, a.id, dir), sampleMetrics(hostNs, b.id, dir));
    const watchA = watchProc(a.pid);
    const watchB = watchProc(b.pid);
    const base = { server: lab.serverIp, httpPort: 8080, rampSeconds: 0, deadlineSeconds: 600 };
    const t0 = Date.now();
    const progressEvery = (what: string) => {
      let last = 0;
      return (p: { done: number; ok: number; failed: number; seconds: number }) => {
        if (p.seconds - last < 5) return;
        last = p.seconds;
        note(`storm-pg ${o.variant}: ${what}: ${p.done}/${o.nodes} done (${p.ok} ok, ${p.failed} failed) after ${p.seconds.toFixed(1)} s`);
      };
    };
    // kill9: a machine cut off mid-TFTP keeps retrying the dead server for ~100 s (10 boot
    // attempts); the first round ends earlier and those machines reboot in the second round.
    const firstDeadline = o.variant === 'kill9' ? Math.round(20 + o.nodes * 0.06) : base.deadlineSeconds;
    const storm = runClients(lab, { ...base, deadlineSeconds: firstDeadline, mode: 'full', nodes: o.nodes, macTag: o.macTag }, progressEvery('full boot path'));
    let disruption: string | undefined;
    if (o.variant !== 'plain') {
      const third = Math.ceil(o.nodes / 3);
      let settled = false;
      void storm.finally(() => (settled = true));
      await waitFor(`a third of the nodes registered`, 300_000, async () => settled || Number((await sql`SELECT count(*)::int AS n FROM nodes`)[0]!.n) >= third, 50);
      const at = ((Date.now() - t0) / 1000).toFixed(1);
      if (o.variant === 'kill9') {
        await b.kill9();
        disruption = `kill -9 of storm-b at ${at} s (${third} nodes registered)`;
      } else {
        // The whole outage is reported: under load `pg_ctl stop -m fast` itself (the shutdown
        // checkpoint, with fsync) took ~10 s here, and until it returns nobody can connect.
        const stopAt = Date.now();
        restarter.stop();
        const stopped = Date.now();
        await new Promise((r) => setTimeout(r, 2000));
        restarter.start();
        disruption = `PostgreSQL stopped (pg_ctl stop -m fast, ${((stopped - stopAt) / 1000).toFixed(1)} s) at ${at} s, started again (pg_ctl start -w returned) ${((Date.now() - stopAt) / 1000).toFixed(1)} s after the stop began`;
      }
      note(`storm-pg ${o.variant}: ${disruption}`);
    }
    const first: StormResult = await storm;
    const cpuA = watchA.stop();
    const cpuB = watchB.stop();
    const readyFirst = first.results.filter((r) => r.ok);
    let final = first.results;
    let rebooted: PgStormReport['rebooted'];
    let againHealth: StormResult['clientHealth'];
    if (o.variant !== 'plain') {
      // kill9: the machines cut off by the kill reboot; so do the others (a second boot of every
      // node: it must keep its name and address). Server a alone answers.
      // pgrestart: the same. A simulated PXE ROM gives up after 4 DISCOVERs over 30 s, and a new
      // machine cannot be registered while PostgreSQL is away (by design), so the machines that
      // spent their tries in the outage reboot (a ROM's "No DHCP offers" -> next boot attempt)
      // and both servers, reconnected, boot them; every node boots again and keeps its name and address.
      const again = await runClients(lab, { ...base, mode: 'full', nodes: o.nodes, macTag: o.macTag }, progressEvery(o.variant === 'kill9' ? 'second round, server a alone' : 'second round, after the restart'));
      const ready = again.results.filter((r) => r.ok);
      againHealth = again.clientHealth;
      rebooted = { ready: ready.length, seconds: +(Math.max(0, ...ready.map((r) => r.doneAt ?? 0)) / 1000).toFixed(2), failures: failuresByReason(again.results) };
      const firstIp = new Map(readyFirst.map((r) => [r.mac, r.ip]));
      const moved = ready.filter((r) => firstIp.has(r.mac) && firstIp.get(r.mac) !== r.ip);
      final = again.results;
      if (moved.length) note(`storm-pg ${o.variant}: ${moved.length} nodes got another address on their second boot`);
    }
    // Events are shipped in batches: wait until both servers' counts stop moving.
    let lastCount = -1;
    await waitFor('the events to reach PostgreSQL', 30_000, async () => {
      const n = Number((await sql`SELECT count(*)::int AS n FROM events`)[0]!.n);
      const same = n === lastCount;
      lastCount = n;
      return same;
    }, 1000);
    // kill9: events the killed server had not shipped yet (batches every 200 ms) are lost with it.
    const check = await checkPgStorm(sql, final, { bothServers: o.variant !== 'kill9' });
    const problems = [...check.problems];
    for (const s of servers) {
      if (s === b && o.variant === 'kill9') continue;
      if (s.proc.exitCode !== null || s.proc.signalCode !== null) problems.push(`${s.id} is not running any more`);
      const text = fs.readFileSync(s.log, 'utf8');
      const errors = text.split('\n').filter((l) => /"level":(50|60)/.test(l) && !/could not confirm a batch/.test(l));
      if (errors.length && o.variant === 'plain') problems.push(`${s.id} logged ${errors.length} errors: ${errors[0]!.slice(0, 300)}`);
    }
    const summary = summarize(first.results);
    return {
      variant: o.variant,
      nodes: o.nodes,
      ready: readyFirst.length,
      seconds: +(Math.max(0, ...readyFirst.map((r) => r.doneAt ?? 0)) / 1000).toFixed(2),
      failures: failuresByReason(first.results),
      failedMacs: failedExamples(final),
      rebooted,
      retries: first.results.reduce((n, r) => n + r.retries, 0),
      stages: Object.fromEntries(Object.entries(summary).map(([k, v]) => [k, { p50: v.p50, p99: v.p99 }])),
      disruption,
      leasesByServer: check.leasesByServer,
      eventsByServer: check.eventsByServer,
      nodesWithBothServers: check.nodesWithBothServers,
      problems,
      cpuSeconds: { 'storm-a': cpuA?.cpuSeconds, 'storm-b': cpuB?.cpuSeconds },
      clientHealth: [first.clientHealth, ...(againHealth ? [againHealth] : [])],
    };
  } finally {
    for (const stop of stopSampling) stop();
    for (const s of servers) await s.stop().catch(() => undefined);
    await sql.end({ timeout: 5 }).catch(() => undefined);
  }
}

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

async function main(): Promise<void> {
  const why = pgStormUnavailable();
  if (why) {
    say(`storm-pg: cannot run: ${why}`);
    process.exit(2);
  }
  const nodes = Number(opt('nodes', '1000'));
  const variants = opt('variants', 'plain,kill9,pgrestart').split(',') as PgStormVariant[];
  const durable = !process.argv.includes('--no-durable');
  const kernelBytes = Math.round(Number(opt('kernel-mib', '1')) * 1048576);
  const initrdBytes = Math.round(Number(opt('initrd-mib', '4')) * 1048576);
  const env = await pgStormEnv({ nodes, durable, keep: process.argv.includes('--keep') });
  process.on('SIGINT', () => {
    void env.destroy().finally(() => process.exit(130));
  });
  const reports: PgStormReport[] = [];
  try {
    say(`storm-pg: ${nodes} nodes, two servers on one PostgreSQL (${durable ? 'fsync on' : 'fsync off'}); variants ${variants.join(', ')}; logs in ${env.dir}`);
    for (const [i, variant] of variants.entries()) {
      const r = await runPgStorm(env, { variant, nodes, macTag: 0x60 + i, kernelBytes, initrdBytes, durable, progress: say });
      reports.push(r);
      say(
        `\n${variant}: ${r.ready}/${nodes} ready in ${r.seconds} s, ${r.retries} retries${r.disruption ? `; ${r.disruption}` : ''}` +
          `${r.rebooted ? `; second round${variant === 'kill9' ? ' (server a alone)' : ''}: ${r.rebooted.ready}/${nodes} ready in ${r.rebooted.seconds} s` : ''}` +
          `\n  stages p50/p99 s: ${Object.entries(r.stages).map(([k, v]) => `${k} ${v.p50}/${v.p99}`).join(', ')}` +
          `\n  leases by server ${JSON.stringify(r.leasesByServer)}, events by server ${JSON.stringify(r.eventsByServer)}, nodes with events of both servers ${r.nodesWithBothServers}` +
          `\n  server CPU s ${JSON.stringify(r.cpuSeconds)}` +
          `\n  clients (per round: DHCP replies that came after the client gave up, event-loop stalls) ${JSON.stringify(r.clientHealth)}` +
          `\n  failures (first round) ${JSON.stringify(r.failures)}${r.rebooted ? `, second round ${JSON.stringify(r.rebooted.failures)}` : ''}` +
          `${Object.keys(r.failedMacs ?? {}).length ? `\n  failed MACs (last round) ${JSON.stringify(r.failedMacs)}` : ''}` +
          `\n  database check: ${r.problems.length ? r.problems.join(' | ') : 'every MAC one node and one node.register, no address twice, leases = last ACKs, every ready node\'s timeline complete'}`,
      );
    }
  } finally {
    await env.destroy();
  }
  if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(reports) + '\n');
  const ok = reports.every((r) => r.problems.length === 0 && (r.rebooted ? r.rebooted.ready === r.nodes : r.ready === r.nodes));
  process.exitCode = ok ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    say(`storm-pg: ${(e as Error).stack ?? e}`);
    process.exit(1);
  });
}
