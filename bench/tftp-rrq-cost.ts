/**
 * What one TFTP request costs `pxeherd serve`, in CPU time measured per thread, next to dnsmasq
 * in the same run: far less sensitive to a shared machine than wall-clock ratios (a busy
 * neighbour stretches the wall clock, not the CPU time a request takes).
 *
 *   node --import tsx bench/tftp-rrq-cost.ts [--nodes 1000] [--rounds 3] [--file undionly.kpxe]
 *        [--blksize 1432] [--streams N] [--hold-ms MS] [--no-reference] [--cpu-prof DIR] [--json]
 *
 * `pxeherd serve` (the production path: events stored, native DATA pump) and dnsmasq take
 * turns (both answer on port 69), each started fresh per round and warmed up with one unmeasured
 * run, then measured with `--nodes`
 * simulated PXE ROMs (bench/storm-clients.ts, mode tftp) fetching `--file` all at once. For each
 * round: the stage's p50 / p99 / all-done wall times, and from /proc/PID/task/TID/schedstat
 * (nanoseconds on CPU, per thread) the server's own thread in µs per request, the DATA pump
 * threads (`pxeherd-tftp`) in µs per DATA block, and the rest of the process (GC, libuv pool,
 * checkpoint worker). dnsmasq is one thread: its µs per request include its DATA.
 * `--streams N` and `--hold-ms MS` set tftp.streams and tftp.stream_hold_ms for pxeherd. `--cpu-prof DIR` runs pxeherd with node's
 * the V8 sampling profiler on (200 µs; one
 * .cpuprofile per server start in DIR; analyse with bench/cpuprofile-top.ts).
 * Needs root, dnsmasq and a built dist/cli.js. Namespaces phrrq*, 10.89.0.0/16.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { StormJob } from './storm-clients.js';
import type { StormLab } from './storm-lab.js';

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}
const NODES = Number(opt('nodes', '1000'));
const ROUNDS = Number(opt('rounds', '3'));
const FILE = opt('file', 'undionly.kpxe');
const BLKSIZE = Number(opt('blksize', '1432'));
const STREAMS = opt('streams', '');
const HOLD = opt('hold-ms', '');
const PROF = opt('cpu-prof', '');
const REFERENCE = !process.argv.includes('--no-reference');
const JSON_OUT = process.argv.includes('--json');
const say = (s: string) => process.stderr.write(s + '\n');

// NODE_OPTIONS may not carry --cpu-prof, and storm-lab starts `node CLI serve`: with --cpu-prof
// the CLI is a small wrapper that profiles through node:inspector and writes the profile at exit
// (the in-process inspector answers synchronously, so an exit handler can still save it).
if (PROF) {
  const real = process.env.PXEHERD_CLI ?? path.resolve(import.meta.dirname, '..', 'dist', 'cli.js');
  const wrapper = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'phrrq-prof-')), 'cli.mjs');
  fs.mkdirSync(PROF, { recursive: true });
  fs.writeFileSync(
    wrapper,
    `import inspector from 'node:inspector';
import fs from 'node:fs';
const s = new inspector.Session();
s.connect();
s.post('Profiler.enable');
s.post('Profiler.setSamplingInterval', { interval: 200 });
s.post('Profiler.start');
process.on('exit', () => s.post('Profiler.stop', (e, r) => { if (!e) fs.writeFileSync(${JSON.stringify(path.resolve(PROF))} + '/pxeherd-' + process.pid + '.cpuprofile', JSON.stringify(r.profile)); }));
await import(${JSON.stringify(pathToFileURL(real).href)});
`,
  );
  process.env.PXEHERD_CLI = wrapper;
}
const { createStormLab, runClients, startDnsmasq, startPxeherd, stopProc, stormUnavailable, summarize, writeStormConfig } = await import('./storm-lab.js');

/** CPU nanoseconds of each thread of `pid`, by thread id, with its name. */
function threadCpu(pid: number): Map<number, { comm: string; ns: number }> {
  const out = new Map<number, { comm: string; ns: number }>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      out.set(Number(tid), { comm, ns });
    } catch {
      /* thread ended meanwhile */
    }
  }
  return out;
}

/** CPU ms spent between two samples: the main thread, the DATA pump threads, everything else. */
function cpuSplit(pid: number, a: ReturnType<typeof threadCpu>, b: ReturnType<typeof threadCpu>) {
  let main = 0;
  let pump = 0;
  let other = 0;
  const others: Record<string, number> = {};
  for (const [tid, t] of b) {
    const d = (t.ns - (a.get(tid)?.ns ?? 0)) / 1e6;
    if (tid === pid) main += d;
    else if (t.comm === 'pxeherd-tftp') pump += d;
    else {
      other += d;
      others[t.comm] = (others[t.comm] ?? 0) + d;
    }
  }
  return { mainMs: main, pumpMs: pump, otherMs: other, others };
}

interface Row {
  server: string;
  round: number;
  p50: number;
  p99: number;
  all: number;
  failures: number;
  retries: number;
  /** µs of the server's thread per request (dnsmasq: its only thread, DATA included). */
  mainUsPerRrq: number;
  /** µs of the DATA pump threads per DATA block sent (pxeherd only). */
  pumpUsPerBlock?: number;
  /** µs of the whole process per request. */
  totalUsPerRrq: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function measure(lab: StormLab, server: string, pid: number, round: number, job: StormJob, fileBytes: number): Promise<Row> {
  const before = threadCpu(pid);
  const r = await runClients(lab, job);
  const after = threadCpu(pid);
  const cpu = cpuSplit(pid, before, after);
  const s = summarize(r.results).tftp;
  const retries = r.results.reduce((n, x) => n + x.retries, 0);
  const rrqs = NODES;
  const blocks = NODES * (Math.floor(fileBytes / BLKSIZE) + 1);
  const row: Row = {
    server,
    round,
    p50: s?.p50 ?? NaN,
    p99: s?.p99 ?? NaN,
    all: r.seconds,
    failures: r.results.filter((x) => !x.ok).length,
    retries,
    mainUsPerRrq: +((cpu.mainMs * 1000) / rrqs).toFixed(1),
    pumpUsPerBlock: server === 'pxeherd' ? +((cpu.pumpMs * 1000) / blocks).toFixed(2) : undefined,
    totalUsPerRrq: +(((cpu.mainMs + cpu.pumpMs + cpu.otherMs) * 1000) / rrqs).toFixed(1),
  };
  say(
    `round ${round} ${server.padEnd(8)} p50 ${row.p50.toFixed(3)} p99 ${row.p99.toFixed(3)} all ${row.all.toFixed(2)} s, fail ${row.failures}, retries ${row.retries}; ` +
      `CPU per request: main thread ${row.mainUsPerRrq} µs, whole process ${row.totalUsPerRrq} µs` +
      (row.pumpUsPerBlock !== undefined ? `; pump ${row.pumpUsPerBlock} µs per block (${cpu.pumpMs.toFixed(0)} ms), other threads ${cpu.otherMs.toFixed(0)} ms (${Object.entries(cpu.others).filter(([, v]) => v >= 1).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')})` : ''),
  );
  return row;
}

async function main(): Promise<void> {
  const why = stormUnavailable(REFERENCE ? ['dnsmasq'] : []);
  if (why) {
    say(`tftp-rrq-cost: cannot run: ${why}`);
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phrrq-'));
  const lab = createStormLab({ name: 'phrrq', net16: '10.89', poolSize: 64 });
  const stops: Array<() => Promise<void>> = [];
  try {
    const { config, statedir } = writeStormConfig(lab, { dir, kernelBytes: 1 << 20, initrdBytes: 1 << 20, });
    if (STREAMS) fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('tftp: { port: 69', `tftp: { port: 69, streams: ${Number(STREAMS)}`));
    if (HOLD) fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('tftp: { port: 69', `tftp: { port: 69, stream_hold_ms: ${Number(HOLD)}`));
    const root = path.join(statedir, 'tftproot');
    let tag = 0x60;
    const job = (): StormJob => ({ mode: 'tftp', tftpFile: FILE, blksize: BLKSIZE, server: lab.serverIp, httpPort: 8080, rampSeconds: 0, deadlineSeconds: 300, nodes: NODES, macTag: tag++ });
    say(`tftp-rrq-cost: ${NODES} clients fetch ${FILE} (blksize ${BLKSIZE}) at once; ${ROUNDS} round(s), each server started fresh and warmed up with one unmeasured run${STREAMS ? `; tftp.streams ${STREAMS}` : ''}${HOLD ? `; tftp.stream_hold_ms ${HOLD}` : ''}; load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    const rows: Row[] = [];
    let fileBytes = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      for (const server of REFERENCE ? ['pxeherd', 'dnsmasq'] : ['pxeherd']) {
        // Both answer on port 69 of the same bridge: one at a time.
        let pid: number;
        let stop: () => Promise<void>;
        if (server === 'pxeherd') {
          const px = await startPxeherd(lab, config, path.join(dir, `pxeherd-${round}.log`));
          pid = px.pid;
          stop = () => px.stop();
        } else {
          const d = await startDnsmasq(lab, dir, root);
          pid = d.pid!;
          stop = () => stopProc(d);
        }
        stops.push(stop);
        try {
          fileBytes = fs.statSync(path.join(root, FILE)).size;
          await runClients(lab, job());
          rows.push(await measure(lab, server, pid, round, job(), fileBytes));
        } finally {
          stops.pop();
          await stop();
        }
      }
    }
    const of = (srv: string, k: keyof Row) => median(rows.filter((r) => r.server === srv).map((r) => Number(r[k])));
    const summary: Record<string, unknown> = {
      nodes: NODES,
      file: FILE,
      fileBytes,
      blksize: BLKSIZE,
      streams: STREAMS ? Number(STREAMS) : 'default',
      holdMs: HOLD ? Number(HOLD) : 'default',
      rounds: ROUNDS,
      loadavg: os.loadavg(),
      pxeherd: { mainUsPerRrq: of('pxeherd', 'mainUsPerRrq'), pumpUsPerBlock: of('pxeherd', 'pumpUsPerBlock'), totalUsPerRrq: of('pxeherd', 'totalUsPerRrq') },
      rows,
    };
    if (REFERENCE) {
      summary.dnsmasq = { usPerRrq: of('dnsmasq', 'totalUsPerRrq') };
      const ratio = (k: 'p50' | 'p99' | 'all') => +(of('pxeherd', k) / of('dnsmasq', k)).toFixed(2);
      summary.ratio = { p50: ratio('p50'), p99: ratio('p99'), total: ratio('all') };
    }
    say(
      `median: pxeherd main thread ${of('pxeherd', 'mainUsPerRrq')} µs/request, whole process ${of('pxeherd', 'totalUsPerRrq')} µs/request` +
        (REFERENCE ? `; dnsmasq ${of('dnsmasq', 'totalUsPerRrq')} µs/request; wall ratio p50 / p99 / total ${JSON.stringify(summary.ratio)}` : ''),
    );
    if (JSON_OUT) process.stdout.write(JSON.stringify(summary) + '\n');
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    lab.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  say(`tftp-rrq-cost: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
});
