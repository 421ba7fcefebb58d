/**
 * DHCP throughput: ISC perfdhcp against pxeherd, dnsmasq and ISC Kea in one run, each inside a
 * network namespace pair (phdhcp-sbn server side, phdhcp-cbn perfdhcp side), at rising offered
 * rates. Prints completed DORA exchanges per second, drops, and pxeherd's ratio to the others.
 *
 *   node --import tsx bench/dhcp.ts [--rates 500,1000,2000,3000] [--secs 10] [--servers pxeherd,kea,dnsmasq]
 *
 * Pool: a /16 (10.79.1.0 - 10.79.255.254) so addresses never run out.
 *   pxeherd-store  what `pxeherd serve` runs (src/server/backends.ts): every unknown MAC is
 *                  registered as a node in SQLite, every DHCP event is stored, and every ACK's
 *                  lease is on disk before the ACK is sent.
 *   pxeherd        leases only: the same DHCP server and SQLite lease store, nodes and events
 *                  in memory (not a configuration users run; it shows what registration costs).
 * Kea uses its memfile (CSV) lease file, dnsmasq its lease file. Needs root, perfdhcp
 * (kea-admin), kea-dhcp4-server and dnsmasq.
 *   kea-pg         Kea with its PostgreSQL lease backend (issue 19's reference): a real
 *                  PostgreSQL (test/lab/postgres.ts) with fsync and synchronous commit on, a
 *                  fresh database per run initialised by `kea-admin db-init pgsql`.
 *   pxeherd-pg     `pxeherd serve` (dist/cli.js) with `database: postgres://` on the same durable
 *                  PostgreSQL (a fresh database per run, `db migrate`d): what a server of a
 *                  PostgreSQL cluster runs (registration, offers and ACKs claimed in PostgreSQL
 *                  before the reply leaves, events shipped there).
 *   pxeherd-pg2    two such servers (10.79.0.1 in the server namespace, 10.79.0.3 in a namespace
 *                  on the same bridge) on one database. perfdhcp then sends to the broadcast
 *                  address (still as a relay, giaddr 10.79.0.2), so both servers see every
 *                  DISCOVER and REQUEST and both OFFER. perfdhcp matches an answer to its request
 *                  by transaction id and takes the first: a second OFFER for the same DISCOVER
 *                  (or a second ACK) finds no request left and is counted as an orphan, never as
 *                  a completed exchange; the orphans column shows them. A REQUEST names the
 *                  server whose OFFER came first (option 54); the other must not answer it.
 *   pxeherd-pg2-balanced  the same two servers with `dhcp.answer: balanced` (src/dhcp/policy.ts):
 *                  each client's bucket belongs to one of the two live servers (heartbeats in
 *                  PostgreSQL), the other stays silent (perfdhcp's secs stay 0), so each DORA is
 *                  worked once. The run starts once both heartbeat rows are in the database and
 *                  a heartbeat period has passed (each server has read the other's).
 * With a PostgreSQL variant, the CPU each server (and the PostgreSQL cluster) used per 1000
 * completed exchanges is printed too: less noisy than throughput on a shared machine.
 * pxeherd-pg needs a built dist/cli.js (npm run build). Debugging knobs: BENCH_PXEHERD_LOG=debug
 * (the pg servers' log level; their logs are kept and named), PXEHERD_DHCP_CPU_PROF=DIR (a V8
 * tick log per server, `node --prof-process`), BENCH_DHCP_BROADCAST=1 (every server addressed by
 * broadcast, as pxeherd-pg2 is; Kea does not answer it in this lab).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createLab, labUnavailable, nsExec, sh, startServer, type Lab } from '../test/integration/dhcp-lab.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../test/lab/postgres.js';
import { spawnIn } from '../test/lab/lab.js';
import { CLI, sampleProc } from './storm-lab.js';
import { connectPostgres } from '../src/store/pg/connect.js';
import { migratePostgres } from '../src/store/pg/schema.js';

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const RATES = opt('rates', '500,1000,2000,3000').split(',').map(Number);
const SECS = Number(opt('secs', '10'));
// The production path first: it is what `pxeherd serve` runs.
const SERVERS = opt('servers', 'pxeherd-store,pxeherd,kea,dnsmasq').split(',');
const CLIENTS = 60000;

interface Result {
  server: string;
  rate: number;
  exchangesPerSec: number;
  drops: number;
  sent: number;
  avgDelayMs: number;
  /** pxeherd only: datagrams shed unanswered because they waited past dhcp.queue_max_age_ms. */
  shed?: number;
  /** Answers perfdhcp could not match to a request of its own (a second server's OFFER or ACK). */
  orphans: number;
  /** CPU seconds of the DHCP server process(es) and of the PostgreSQL cluster during the run. */
  serverCpu?: number;
  pgCpu?: number;
}

async function waitPort(ns: string, port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const { stdout } = await nsExec(ns, 'ss', ['-Hlun', `sport = :${port}`]).catch(() => ({ stdout: '' }));
    if (stdout.trim()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port} in ${ns}`);
}

/** One PostgreSQL for the whole run (kea-pg), a database per run. */
let pg: PostgresLab | undefined;
let pgDatabases = 0;
async function keaPgDatabase(): Promise<Record<string, unknown>> {
  pg ??= await startPostgres({ durable: true });
  const name = `kea${++pgDatabases}`;
  await pg.createDatabase(name);
  execFileSync('kea-admin', ['db-init', 'pgsql', '-u', pg.user, '-n', name, '-h', pg.socketDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  return { type: 'postgresql', name, host: pg.socketDir, user: pg.user };
}

/** The PostgreSQL cluster's CPU so far (postmaster, backends, and the backends that exited). */
function pgCpuSeconds(): number | undefined {
  return pg?.process.pid ? sampleProc(pg.process.pid)?.cpuSeconds : undefined;
}

/**
 * `pxeherd serve` on PostgreSQL: `count` servers on one fresh database, the first in the server
 * namespace (10.79.0.1), the second in the lab's site namespace (10.79.0.3); DHCP only.
 */
async function startPxeherdPg(lab: Lab, count: number, dir: string, answer = 'all'): Promise<{ pids: number[]; stop(): Promise<void> }> {
  pg ??= await startPostgres({ durable: true });
  const url = await pg.createDatabase(`pxeherd${++pgDatabases}`);
  const sql = connectPostgres(url, { max: 1 });
  try {
    await migratePostgres(sql);
  } finally {
    await sql.end();
  }
  const where = [
    { ns: lab.server, address: '10.79.0.1' },
    { ns: lab.site!, address: '10.79.0.3' },
  ].slice(0, count);
  const procs: ChildProcess[] = [];
  const stopAll = async () => {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((r) => {
            if (p.exitCode !== null || p.signalCode !== null) return r();
            p.once('exit', () => r());
            p.kill('SIGTERM');
            setTimeout(() => p.kill("SIGKILL"), 20_000).unref();
          }),
      ),
    );
  };
  try {
    for (const [i, w] of where.entries()) {
      const id = `bench-${'ab'[i]}`;
      const config = path.join(dir, `${id}.yaml`);
      writeFileSync(
        config,
        `statedir: ${path.join(dir, id)}
database: "${url}"
server_id: ${id}
address: ${w.address}
dhcp: { mode: full, range: [10.79.1.0, 10.79.255.254], netmask: 255.255.0.0, lease_seconds: 3600, ipv6_ra: false, answer: ${answer} }
tftp: { port: 0 }
http: { port: 8080 }
provisiond: { port: 0 }
admin: { port: 0 }
nodes: { name_pattern: "n######" }
log: { level: ${process.env.BENCH_PXEHERD_LOG ?? "warn"} }
`,
      );
      const log = path.join(dir, `${id}.log`);
      // --prof (V8's tick log) rather than --cpu-prof: it is written as it runs, and serve on
      // PostgreSQL takes long to stop (the bench then kills it, and --cpu-prof never writes).
      const prof = process.env.PXEHERD_DHCP_CPU_PROF ? ['--prof', '--no-logfile-per-isolate', `--logfile=${path.join(process.env.PXEHERD_DHCP_CPU_PROF, `v8-${id}.log`)}`] : [];
      // `ip netns exec` execs node: the child's pid is the server's.
      const p = spawnIn(w.ns, process.execPath, [...prof, CLI, 'serve', '--config', config], { log });
      procs.push(p);
      await waitPort(w.ns, 67, 30_000).catch((e) => {
        throw new Error(`pxeherd serve ${id} did not start: ${(e as Error).message}\n${existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : ''}`);
      });
    }
    if (answer === 'balanced' && count > 1) {
      // Both servers' heartbeat rows, then one more heartbeat period (src/store/pg/membership.ts):
      // each has read the other's row.
      const q = connectPostgres(url, { max: 1 });
      try {
        const t0 = Date.now();
        while (Number((await q`SELECT count(*)::int AS n FROM dhcp_servers`)[0]!.n) < count) {
          if (Date.now() - t0 > 30_000) throw new Error('the balanced servers wrote no heartbeat rows in 30 s');
          await new Promise((r) => setTimeout(r, 200));
        }
      } finally {
        await q.end();
      }
      await new Promise((r) => setTimeout(r, 1500));
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  return { pids: procs.map((p) => p.pid!), stop: stopAll };
}

async function startOther(kind: 'kea' | 'kea-pg' | 'dnsmasq', ns: string, dir: string): Promise<ChildProcess> {
  let p: ChildProcess;
  if (kind === 'kea' || kind === 'kea-pg') {
    const leaseDb = kind === 'kea-pg' ? await keaPgDatabase() : { type: 'memfile', persist: true, name: path.join(dir, 'kea-leases4.csv'), 'lfc-interval': 0 };
    const conf = path.join(dir, 'kea.json');
    writeFileSync(
      conf,
      JSON.stringify({
        Dhcp4: {
          'interfaces-config': { interfaces: ['br0'], 'dhcp-socket-type': 'udp' },
          'lease-database': leaseDb,
          'valid-lifetime': 3600,
          'renew-timer': 1800,
          'rebind-timer': 3150,
          subnet4: [{ id: 1, subnet: '10.79.0.0/16', pools: [{ pool: '10.79.1.0 - 10.79.255.254' }] }],
          loggers: [{ name: 'kea-dhcp4', output_options: [{ output: path.join(dir, 'kea.log') }], severity: 'WARN' }],
        },
      }),
    );
    p = spawn('ip', ['netns', 'exec', ns, 'kea-dhcp4', '-c', conf], { stdio: 'ignore', env: { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir } });
  } else {
    p = spawn(
      'ip',
      ['netns', 'exec', ns, 'dnsmasq', '--no-daemon', '--port=0', '--interface=br0', '--bind-interfaces', '--dhcp-range=10.79.1.0,10.79.255.254,255.255.0.0,1h',
        '--dhcp-lease-max=100000', '--no-ping', '--dhcp-authoritative', '--no-resolv', '--no-hosts', `--dhcp-leasefile=${path.join(dir, 'dnsmasq.leases')}`, `--pid-file=${path.join(dir, 'dnsmasq.pid')}`],
      { stdio: 'ignore' },
    );
  }
  await waitPort(ns, 67);
  return p;
}

function parse(out: string) {
  const sect = (name: string) => out.split(`***Statistics for: ${name}***`)[1] ?? '';
  const num = (s: string, key: string) => Number(new RegExp(`${key}: ([\\d.]+)`).exec(s)?.[1] ?? NaN);
  const dO = sect('DISCOVER-OFFER');
  const rA = sect('REQUEST-ACK');
  return {
    doSent: num(dO, 'sent packets'),
    doDrops: num(dO, 'drops'),
    raRecv: num(rA, 'received packets'),
    raDrops: num(rA, 'drops'),
    raDelay: num(rA, 'avg delay'),
    orphans: (num(dO, 'orphans') || 0) + (num(rA, 'orphans') || 0),
  };
}

async function runOne(lab: Lab, server: string, rate: number, dir: string): Promise<Result> {
  const sdir = mkdtempSync(path.join(dir, `${server}-${rate}-`));
  let stop: () => Promise<unknown>;
  let shed: number | undefined;
  let pids: number[] = [];
  if (server === 'pxeherd-pg' || server === 'pxeherd-pg2' || server === 'pxeherd-pg2-balanced') {
    const s = await startPxeherdPg(lab, server === 'pxeherd-pg' ? 1 : 2, sdir, server === 'pxeherd-pg2-balanced' ? 'balanced' : 'all');
    pids = s.pids;
    stop = async () => {
      const t = Date.now();
      await s.stop();
      if (process.env.PXEHERD_DHCP_CPU_PROF) console.error(`${server}: stopped in ${Date.now() - t} ms; log: ${readFileSync(path.join(sdir, 'bench-a.log'), 'utf8').slice(-1500)}`);
    };
  } else if (server === 'pxeherd' || server === 'pxeherd-store') {
    const s = await startServer(lab.server, {
      serverAddress: '10.79.0.1',
      statedir: sdir,
      dhcp: { mode: 'full', range: ['10.79.1.0', '10.79.255.254'], netmask: '255.255.0.0' },
      printEvents: false,
      backend: server === 'pxeherd' ? 'memory' : 'store',
      nodesConfig: { name_pattern: 'n######' },
    });
    pids = [s.proc.pid!];
    stop = async () => {
      const r = await s.stop();
      shed = Number(r.counters.shed ?? 0);
    };
  } else {
    const p = await startOther(server as 'kea' | 'kea-pg' | 'dnsmasq', lab.server, sdir);
    pids = [p.pid!];
    stop = () =>
      new Promise((r) => {
        p.once('exit', r);
        p.kill('SIGTERM');
        setTimeout(() => p.kill('SIGKILL'), 3000);
      });
  }
  try {
    const keepLogs = process.env.BENCH_PXEHERD_LOG ? (server.startsWith('pxeherd-pg') ? sdir : undefined) : undefined;
    if (keepLogs) console.error(`${server}: logs in ${keepLogs}`);
    const usesPg = server === 'kea-pg' || server.startsWith('pxeherd-pg');
    const cpu = () => pids.reduce((s, pid) => s + (sampleProc(pid)?.cpuSeconds ?? 0), 0);
    const cpu0 = cpu();
    const pg0 = usesPg ? pgCpuSeconds() : undefined;
    // Two servers: to the broadcast address, so both see every message (see the header).
    const target = server.startsWith('pxeherd-pg2') || process.env.BENCH_DHCP_BROADCAST ? 'all' : '10.79.0.1';
    const { stdout } = await nsExec(lab.client, 'perfdhcp', ['-4', '-l', 'eth0', '-r', String(rate), '-R', String(CLIENTS), '-p', String(SECS), target], (SECS + 30) * 1000).catch(
      (e) => ({ stdout: String(e.stdout ?? '') + String(e.stderr ?? '') + String(e.message ?? '') }),
    );
    if (!stdout.includes('***Statistics for: DISCOVER-OFFER***')) console.error(`${server}: perfdhcp printed no statistics: ${stdout.slice(0, 1500)}`);
    const serverCpu = +(cpu() - cpu0).toFixed(2);
    const pgCpu = pg0 !== undefined ? +((pgCpuSeconds() ?? pg0) - pg0).toFixed(2) : undefined;
    const p = parse(stdout);
    await stop();
    return { server, rate, exchangesPerSec: p.raRecv / SECS, drops: p.doDrops + p.raDrops, sent: p.doSent, avgDelayMs: p.raDelay, shed, orphans: p.orphans, serverCpu, pgCpu };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function main() {
  const usesPg = SERVERS.some((s) => s === 'kea-pg' || s.startsWith('pxeherd-pg'));
  const why =
    labUnavailable(['perfdhcp', 'kea-dhcp4', 'dnsmasq']) ??
    (usesPg ? postgresUnavailable() : undefined) ??
    (SERVERS.some((s) => s.startsWith('pxeherd-pg')) && !existsSync(CLI) ? `needs ${CLI} (npm run build)` : undefined);
  if (why) {
    console.error(`bench/dhcp.ts: ${why}`);
    process.exit(2);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-bench-'));
  // pxeherd-pg2's second server lives in the site namespace on the same bridge.
  // Names carry the pid: another bench run at the same time must not remove this one's namespaces.
  const lab = await createLab(`bn${process.pid}`, { site: SERVERS.some((s) => s.startsWith('pxeherd-pg2')) });
  const results: Result[] = [];
  try {
    // One /16 for the whole link: perfdhcp (acting as a relay, giaddr 10.79.0.2) and the servers.
    await sh('ip', ['-n', lab.server, 'addr', 'flush', 'dev', 'br0']);
    await sh('ip', ['-n', lab.server, 'addr', 'add', '10.79.0.1/16', 'dev', 'br0']);
    await sh('ip', ['-n', lab.client, 'addr', 'add', '10.79.0.2/16', 'dev', 'eth0']);
    if (lab.site) {
      await sh('ip', ['-n', lab.site, 'addr', 'flush', 'dev', 'eth0']);
      await sh('ip', ['-n', lab.site, 'addr', 'add', '10.79.0.3/16', 'dev', 'eth0']);
    }
    console.log(`perfdhcp: ${SECS} s per run, ${CLIENTS} simulated clients, /16 pool; rates ${RATES.join(', ')} DORA/s offered`);
    // CPU-s/1000 (= ms per answered DORA; user + system of every server process, all threads):
    // on a shared machine far less noisy than DORA/s.
    console.log('server          offered/s  DORA/s   drops  avg-ACK-delay   shed orphans  CPU-s/1000 server+pg');
    for (const rate of RATES) {
      for (const server of SERVERS) {
        const r = await runOne(lab, server, rate, dir);
        results.push(r);
        const per1000 = (x: number | undefined) => (x === undefined ? '' : ((1000 * x) / Math.max(1, r.exchangesPerSec * SECS)).toFixed(3));
        console.log(
          `${server.padEnd(15)} ${String(rate).padStart(9)} ${r.exchangesPerSec.toFixed(0).padStart(7)} ${String(r.drops).padStart(7)} ${r.avgDelayMs.toFixed(2).padStart(9)} ms ${(r.shed === undefined ? '' : String(r.shed)).padStart(6)} ${String(r.orphans).padStart(7)}  ${per1000(r.serverCpu)}${r.pgCpu !== undefined ? ` + ${per1000(r.pgCpu)}` : ''}`,
        );
      }
    }
  } finally {
    await lab.cleanup();
    await pg?.stop();
    if (!process.env.BENCH_PXEHERD_LOG) rmSync(dir, { recursive: true, force: true });
  }
  console.log('\nratios (DORA/s of pxeherd ÷ DORA/s of the other server at the same offered rate)');
  for (const rate of RATES) {
    for (const mine of SERVERS.filter((s) => s.startsWith('pxeherd'))) {
      const px = results.find((r) => r.server === mine && r.rate === rate);
      if (!px) continue;
      const parts = SERVERS.filter((s) => !s.startsWith('pxeherd')).map((s) => {
        const o = results.find((r) => r.server === s && r.rate === rate);
        return `vs ${s} ${o && o.exchangesPerSec > 0 ? (px.exchangesPerSec / o.exchangesPerSec).toFixed(2) : 'n/a'}x`;
      });
      console.log(`  ${String(rate).padStart(5)}/s ${mine.padEnd(13)}: ${parts.join('   ')}   (drops ${px.drops})`);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
