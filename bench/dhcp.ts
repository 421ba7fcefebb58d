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
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createLab, labUnavailable, nsExec, sh, startServer, type Lab } from '../test/integration/dhcp-lab.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../test/lab/postgres.js';

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
  /** Server process CPU (user + system, all threads) per answered DORA, µs (see serverCpu). */
  cpuUsPerDora?: number;
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
  return { doSent: num(dO, 'sent packets'), doDrops: num(dO, 'drops'), raRecv: num(rA, 'received packets'), raDrops: num(rA, 'drops'), raDelay: num(rA, 'avg delay') };
}

async function runOne(lab: Lab, server: string, rate: number, dir: string): Promise<Result> {
  const sdir = mkdtempSync(path.join(dir, `${server}-${rate}-`));
  let stop: () => Promise<unknown>;
  let shed: number | undefined;
  let pid: number | undefined;
  if (server === 'pxeherd' || server === 'pxeherd-store') {
    const s = await startServer(lab.server, {
      serverAddress: '10.79.0.1',
      statedir: sdir,
      dhcp: { mode: 'full', range: ['10.79.1.0', '10.79.255.254'], netmask: '255.255.0.0' },
      printEvents: false,
      backend: server === 'pxeherd' ? 'memory' : 'store',
      nodesConfig: { name_pattern: 'n######' },
    });
    pid = s.proc.pid;
    stop = async () => {
      const r = await s.stop();
      shed = Number(r.counters.shed ?? 0);
    };
  } else {
    const p = await startOther(server as 'kea' | 'kea-pg' | 'dnsmasq', lab.server, sdir);
    pid = p.pid;
    stop = () =>
      new Promise((r) => {
        p.once('exit', r);
        p.kill('SIGTERM');
        setTimeout(() => p.kill('SIGKILL'), 3000);
      });
  }
  try {
    const cpu0 = serverCpuSecs(pid);
    const { stdout } = await nsExec(lab.client, 'perfdhcp', ['-4', '-l', 'eth0', '-r', String(rate), '-R', String(CLIENTS), '-p', String(SECS), '10.79.0.1'], (SECS + 30) * 1000).catch(
      (e) => ({ stdout: String(e.stdout ?? '') }),
    );
    const p = parse(stdout);
    const cpu = serverCpuSecs(pid) - cpu0;
    await stop();
    return { server, rate, exchangesPerSec: p.raRecv / SECS, drops: p.doDrops + p.raDrops, sent: p.doSent, avgDelayMs: p.raDelay, shed, cpuUsPerDora: p.raRecv > 0 ? (cpu * 1e6) / p.raRecv : undefined };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function main() {
  const why = labUnavailable(['perfdhcp', 'kea-dhcp4', 'dnsmasq']) ?? (SERVERS.includes('kea-pg') ? postgresUnavailable() : undefined);
  if (why) {
    console.error(`bench/dhcp.ts: ${why}`);
    process.exit(2);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-bench-'));
  // Names carry the pid: another bench run at the same time must not remove this one's namespaces.
  const lab = await createLab(`bn${process.pid}`);
  const results: Result[] = [];
  try {
    // One /16 for the whole link: perfdhcp (acting as a relay, giaddr 10.79.0.2) and the servers.
    await sh('ip', ['-n', lab.server, 'addr', 'flush', 'dev', 'br0']);
    await sh('ip', ['-n', lab.server, 'addr', 'add', '10.79.0.1/16', 'dev', 'br0']);
    await sh('ip', ['-n', lab.client, 'addr', 'add', '10.79.0.2/16', 'dev', 'eth0']);
    console.log(`perfdhcp: ${SECS} s per run, ${CLIENTS} simulated clients, /16 pool; rates ${RATES.join(', ')} DORA/s offered`);
    console.log('server          offered/s  DORA/s   drops  avg-ACK-delay   shed  CPU-µs/DORA');
    for (const rate of RATES) {
      for (const server of SERVERS) {
        const r = await runOne(lab, server, rate, dir);
        results.push(r);
        console.log(`${server.padEnd(15)} ${String(rate).padStart(9)} ${r.exchangesPerSec.toFixed(0).padStart(7)} ${String(r.drops).padStart(7)} ${r.avgDelayMs.toFixed(2).padStart(9)} ms ${(r.shed === undefined ? '' : String(r.shed)).padStart(6)} ${r.cpuUsPerDora === undefined ? '' : r.cpuUsPerDora.toFixed(0).padStart(11)}`);
      }
    }
  } finally {
    await lab.cleanup();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
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

/**
 * CPU seconds (user + system, all threads) the server process has used so far, from
 * /proc/<pid>/stat (`ip netns exec` execs the server, so the child's pid is the server's). The
 * difference across a perfdhcp run, per answered DORA, is what a server costs per exchange;
 * on a shared machine it is far less noisy than DORA/s.
 */
function serverCpuSecs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime (fields 14, 15) in USER_HZ = 100
  } catch {
    return NaN;
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
