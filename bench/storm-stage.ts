/**
 * One boot-storm stage alone, pxeherd against its reference, in alternating rounds with a
 * freshly started server each time: a quicker and fairer look at one stage than the full
 * `npm run storm` (which measures pxeherd warm, right after the whole boot path, and each
 * reference once).
 *
 *   node --import tsx bench/storm-stage.ts --stage tftp|http|dhcp [--nodes 1000] [--rounds 3]
 *                    [--kernel-mib 1] [--initrd-mib 4] [--warm] [--tftp "streams: 0"] [--detail]
 *                    [--client-procs auto|N]
 *
 * tftp: undionly.kpxe against dnsmasq; http: kernel then initrd against nginx; dhcp: DORA
 * against dnsmasq. `--warm` runs one unmeasured round on each server before the measured one.
 * `--tftp` adds keys to pxeherd's tftp section (to compare settings). `--detail` adds, per round,
 * where the time went: datagrams the server sent and received per transfer, its threads' CPU
 * (pxeherd: main thread and TFTP pump apart), and the completion-time distribution with the
 * client-side retries of the last 1 % of nodes.
 * Prints one line per round and server (stage p50/p99, all done, failures, datagrams the
 * server's kernel dropped, client and server CPU) and the median ratios (pxeherd / reference).
 * `--client-procs`: how many client processes share the nodes (default auto = one per core, at
 * most 4; see runClients): one process alone is the limit of a 1000-node TFTP stage on an idle
 * machine. `--detail` shows each process's CPU against the stage's wall time.
 * Needs root, dnsmasq and nginx, and a built dist/cli.js. Namespaces phstage*, 10.87.0.0/16.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { StormJob } from './storm-clients.js';
import {
  clientProcs,
  createStormLab,
  diffCounters,
  netCounters,
  registerSyntheticVnfs,
  runClients,
  startDnsmasq,
  startNginx,
  startPxeherd,
  stopProc,
  stormUnavailable,
  summarize,
  watchProc,
  writeStormConfig,
} from './storm-lab.js';

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}
const STAGE = opt('stage', 'tftp');
const NODES = Number(opt('nodes', '1000'));
const ROUNDS = Number(opt('rounds', '3'));
const KERNEL = Math.round(Number(opt('kernel-mib', '1')) * 1048576);
const INITRD = Math.round(Number(opt('initrd-mib', '4')) * 1048576);
const WARM = process.argv.includes('--warm');
const TFTP_EXTRA = opt('tftp', '');
const DETAIL = process.argv.includes('--detail');
const CLIENT_PROCS = clientProcs(opt('client-procs', 'auto'));

/** CPU seconds per thread name of a process (pxeherd: its main thread, the TFTP pump, libuv's pool). */
function threadCpu(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const name = Number(tid) === pid ? 'main' : fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / 100;
      } catch {
        /* thread ended */
      }
    }
  } catch {
    /* process ended */
  }
  return out;
}
const say = (s: string) => process.stderr.write(s + '\n');

interface Row {
  server: string;
  p50: number;
  p99: number;
  all: number;
  failures: number;
  drops: number;
  clientCpu?: number;
  serverCpu?: number;
  detail?: Record<string, unknown>;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  if (!['tftp', 'http', 'dhcp'].includes(STAGE)) throw new Error(`--stage must be tftp, http or dhcp, not ${STAGE}`);
  const ref = STAGE === 'http' ? 'nginx' : 'dnsmasq';
  const why = stormUnavailable([ref]);
  if (why) {
    say(`storm-stage: cannot run: ${why}`);
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phstage-'));
  // DHCP rounds need fresh addresses for every run.
  const runs = ROUNDS * 2 * (WARM ? 2 : 1);
  const lab = createStormLab({ name: 'phstage', net16: '10.87', poolSize: STAGE === 'dhcp' ? Math.min(60000, NODES * runs + 64) : 64 });
  try {
    const { config, statedir } = writeStormConfig(lab, { dir, kernelBytes: KERNEL, initrdBytes: INITRD, tftpExtra: TFTP_EXTRA || undefined });
    registerSyntheticVnfs(dir, config, KERNEL, INITRD);
    let tag = 0x50;
    const job = (server: string): StormJob => {
      const base = { server: lab.serverIp, httpPort: 8080, rampSeconds: 0, deadlineSeconds: 300, nodes: NODES, macTag: tag++ };
      if (STAGE === 'tftp') return { ...base, mode: 'tftp', tftpFile: 'undionly.kpxe' };
      if (STAGE === 'dhcp') return { ...base, mode: 'dhcp' };
      const paths = ['/vnfs/storm/vmlinuz?mac={mac}', '/vnfs/storm/initrd.img?mac={mac}'];
      return { ...base, mode: 'http', httpPaths: server === 'pxeherd' ? paths : paths.map((p) => p.replace('?mac={mac}', '')) };
    };
    const key = STAGE === 'http' ? 'kernel' : STAGE;
    const rows: Row[] = [];
    say(`storm-stage: ${STAGE} alone, ${NODES} clients in ${CLIENT_PROCS} process(es), ${ROUNDS} round(s), pxeherd vs ${ref}${WARM ? ', one warm-up round per server start' : ''}; logs in ${dir}`);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const server of ['pxeherd', ref]) {
        let pid: number;
        let stop: () => Promise<void>;
        if (server === 'pxeherd') {
          const p = await startPxeherd(lab, config, path.join(dir, `pxeherd-${round}.log`));
          pid = p.pid;
          stop = () => p.stop();
        } else {
          const p = server === 'nginx' ? await startNginx(lab, dir, statedir) : await startDnsmasq(lab, dir, path.join(statedir, 'tftproot'));
          pid = p.pid!;
          stop = () => stopProc(p);
        }
        try {
          if (WARM) await runClients(lab, job(server), undefined, CLIENT_PROCS);
          const before = netCounters(lab.ns);
          const w = watchProc(pid, 100);
          const threads0 = DETAIL ? threadCpu(pid) : {};
          const r = await runClients(lab, job(server), undefined, CLIENT_PROCS);
          const cpu = w.stop();
          const threads1 = DETAIL ? threadCpu(pid) : {};
          const s = summarize(r.results);
          const net = diffCounters(before, netCounters(lab.ns));
          const row: Row = {
            server,
            p50: s[key]?.p50 ?? NaN,
            p99: s[key]?.p99 ?? NaN,
            all: r.seconds,
            failures: r.results.filter((x) => !x.ok).length,
            drops: net.RcvbufErrors ?? 0,
            clientCpu: r.clientCpuSeconds,
            serverCpu: cpu?.cpuSeconds,
          };
          if (DETAIL) {
            const done = r.results.filter((x) => x.ok && x.doneAt !== undefined).sort((a, b) => a.doneAt! - b.doneAt!);
            const at = (q: number) => +(done[Math.min(done.length - 1, Math.floor(q * done.length))]!.doneAt! / 1000).toFixed(2);
            const last = done.slice(Math.floor(done.length * 0.99));
            const threads = Object.fromEntries(Object.keys(threads1).map((k) => [k, +(threads1[k]! - (threads0[k] ?? 0)).toFixed(2)]).filter(([, v]) => (v as number) > 0));
            row.detail = {
              serverOutPerTransfer: +((net.OutDatagrams ?? 0) / NODES).toFixed(1),
              serverInPerTransfer: +((net.InDatagrams ?? 0) / NODES).toFixed(1),
              sndbufErrors: net.SndbufErrors ?? 0,
              serverCpuMsPerTransfer: cpu ? +((cpu.cpuSeconds * 1000) / NODES).toFixed(2) : undefined,
              clientCpuMsPerTransfer: r.clientCpuSeconds !== undefined ? +((r.clientCpuSeconds * 1000) / NODES).toFixed(2) : undefined,
              // The busiest client process's CPU over the stage's wall time: near 1, the clients were the limit.
              clientProcs: r.clientProcs,
              busiestClientCpuOfWall: r.clientCpuMaxSeconds !== undefined ? +(r.clientCpuMaxSeconds / r.seconds).toFixed(2) : undefined,
              threads,
              clientRetries: r.results.reduce((n, x) => n + x.retries, 0),
              doneAt: { p10: at(0.1), p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1 - 1e-9) },
              last1pct: { retries: last.reduce((n, x) => n + x.retries, 0), stageSecondsMin: +(Math.min(...last.map((x) => x.stages.tftp ?? 0)) / 1000).toFixed(2) },
            };
            say(`  detail ${JSON.stringify(row.detail)}`);
          }
          rows.push(row);
          const extra = STAGE === 'http' && s.initrd ? ` initrd p50 ${s.initrd.p50.toFixed(3)} p99 ${s.initrd.p99.toFixed(3)}` : '';
          say(
            `round ${round} ${server.padEnd(8)} ${key} p50 ${row.p50.toFixed(3)} p99 ${row.p99.toFixed(3)}${extra} all ${row.all.toFixed(2)}s` +
              ` fail ${row.failures} drops ${row.drops} clientCPU ${row.clientCpu ?? '?'} serverCPU ${row.serverCpu ?? '?'}`,
          );
        } finally {
          await stop();
        }
      }
    }
    const of = (srv: string, k: 'p50' | 'p99' | 'all') => median(rows.filter((r) => r.server === srv).map((r) => r[k]));
    const ratio = (k: 'p50' | 'p99' | 'all') => +(of('pxeherd', k) / of(ref, k)).toFixed(2);
    const summary = { stage: STAGE, nodes: NODES, rounds: ROUNDS, clientProcs: CLIENT_PROCS, reference: ref, ratioP50: ratio('p50'), ratioP99: ratio('p99'), ratioTotal: ratio('all'), rows };
    say(`median ratio (pxeherd / ${ref}; below 1 = pxeherd faster): p50 ${summary.ratioP50} p99 ${summary.ratioP99} total ${summary.ratioTotal}`);
    process.stdout.write(JSON.stringify(summary) + '\n');
  } finally {
    lab.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  say(`storm-stage: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
});
