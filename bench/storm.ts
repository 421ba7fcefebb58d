/**
 * Boot storm: N simulated machines boot at once (or on a ramp) against `pxeherd serve`
 * running in a network namespace, each walking the whole path (DHCP DORA as a PXE ROM, TFTP
 * of undionly.kpxe, DORA as iPXE, the iPXE script, kernel and initrd over HTTP, provision
 * `init` with the node's token, then `ready`). Then the same clients run the stages that have
 * a reference server — DHCP and TFTP against dnsmasq, kernel+initrd against nginx — and
 * against pxeherd alone, and the ratios are printed.
 *
 *   npm run storm -- --nodes 1000 [--ramp SECONDS] [--kernel-mib 1] [--initrd-mib 4]
 *                    [--image-mib 0] [--tftp-max-transfers N] [--client-procs auto|N]
 *                    [--no-compare] [--json] [--keep]
 *
 * --client-procs N: the simulated nodes run in N client processes (node i in process i % N),
 * started together. Default auto = one per core, at most 4 (2 on a 2-core machine): a single
 * Node.js process running 1000 TFTP clients is busy for the whole stage, so it, not the server,
 * set the stage's time. `--client-procs 1` gives the single-process figures of earlier runs.
 * The comparison lines show the busiest client process's CPU as a share of the stage's wall
 * time ("client busy"): near 1.0 the clients were the limit.
 *
 * --image-mib N adds the stateless rootfs stage: after init, each node downloads an N MiB
 * image (/vnfs/storm/r1/rootfs.squashfs, as 10-vnfs-root's wget does). The comparison then
 * also runs that stage alone against pxeherd and nginx (same file, same clients), and measures
 * the namespace link itself — raw TCP transfers over the same veth, same number of
 * connections, no HTTP — to give the link limit: total image bytes / link throughput.
 *   (= node --import tsx bench/storm.ts ...)
 *
 * Needs root (network namespaces), dnsmasq and nginx for the comparison, and a built
 * dist/cli.js (npm run build). Namespaces phstorm*, addresses 10.84.0.0/16 inside them.
 * With --json the last line is
 *   {"nodes":N,"ready":R,"failures":F,"seconds":S,"stages":{"dhcp":{"p50":..,"p99":..},...},...}
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NodeResult, StormJob } from './storm-clients.js';
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
  type StormProgress,
  summarize,
  watchProc,
  writeStormConfig,
  type StageSummary,
} from './storm-lab.js';

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const NODES = Number(opt('nodes', '1000'));
const RAMP = Number(opt('ramp', '0'));
const KERNEL = Math.round(Number(opt('kernel-mib', '1')) * 1048576);
const INITRD = Math.round(Number(opt('initrd-mib', '4')) * 1048576);
const IMAGE = Math.round(Number(opt('image-mib', '0')) * 1048576);
const IMAGE_PATH = '/vnfs/storm/r1/rootfs.squashfs';
const COMPARE = !flag('no-compare');
const JSON_OUT = flag('json');
const KEEP = flag('keep');
const TFTP_MAX = Number(opt('tftp-max-transfers', '0'));
const CLIENT_PROCS = clientProcs(opt('client-procs', 'auto'));
const say = (s: string) => process.stderr.write(s + '\n');

/**
 * Progress of one client run on stderr: rewritten in place on a terminal, else one line every
 * 5 s (logs stay short). Returns the callback for runClients and a function ending the line.
 */
function progressLine(what: string, total: number): [(p: StormProgress) => void, () => void] {
  const tty = process.stderr.isTTY;
  let lastPrinted = 0;
  let shown = false;
  const show = (p: StormProgress) => {
    if (!tty && p.seconds - lastPrinted < 5) return;
    lastPrinted = p.seconds;
    const line = `storm: ${what}: ${p.done}/${total} done (${p.ok} ok, ${p.failed} failed) after ${p.seconds.toFixed(1)} s`;
    if (tty) {
      process.stderr.write(`\r${line}\x1b[K`);
      shown = true;
    } else say(line);
  };
  const end = () => {
    if (shown) process.stderr.write('\r\x1b[K');
  };
  return [show, end];
}

/** runClients with a progress line. */
async function runWithProgress(lab: Parameters<typeof runClients>[0], job: StormJob, what: string) {
  const [show, end] = progressLine(what, job.nodes);
  try {
    return await runClients(lab, job, show, CLIENT_PROCS);
  } finally {
    end();
  }
}

function failuresByReason(rs: NodeResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rs) if (!r.ok) {
    const k = (r.error ?? 'unknown').replace(/[0-9a-f]{2}(:[0-9a-f]{2}){5}/g, 'MAC').slice(0, 120);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

function stageTable(title: string, s: Record<string, StageSummary>): string {
  const rows = Object.entries(s).map(([k, v]) => `  ${k.padEnd(10)} n=${String(v.n).padStart(5)}  p50 ${v.p50.toFixed(3).padStart(7)} s  p99 ${v.p99.toFixed(3).padStart(7)} s  max ${v.max.toFixed(3).padStart(7)} s`);
  return [title, ...rows].join('\n');
}

interface StageRun {
  seconds: number;
  ok: number;
  failures: number;
  stages: Record<string, StageSummary>;
  /** Requests the server's kernel dropped for a full socket buffer (each costs a retransmission). */
  serverDrops: number;
  clientCpuSeconds?: number;
  /** The busiest client process's CPU / the stage's wall time (near 1: the clients were the limit). */
  clientBusy?: number;
  /** The server's CPU during the stage (process and children): per node, the CPU per request. */
  serverCpuSeconds?: number;
}

/** A synthetic image file of `bytes` (not zeros, so nothing on the way can compress it away). */
function writeImageFile(file: string, bytes: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(1 << 20);
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2246822519) >>> 0, i);
  for (let off = 0; off < bytes; off += block.length) fs.writeSync(fd, block, 0, Math.min(block.length, bytes - off));
  fs.closeSync(fd);
}

interface LinkRun {
  /** Connections at once (as many as nodes), bytes each, total seconds, bytes per second. */
  connections: number;
  bytesEach: number;
  seconds: number;
  bytesPerSecond: number;
}

interface ImageReport {
  pxeherd: StageRun;
  nginx: StageRun;
  link: LinkRun;
  totalBytes: number;
}

/**
 * The namespace link's throughput: raw TCP from the server namespace to the same client
 * process kind, one connection per node, 64 MiB each (the rate, not the volume, is what counts).
 */
async function measureLink(lab: Parameters<typeof runClients>[0], dir: string, nodes: number, base: Omit<StormJob, 'mode' | 'nodes' | 'macTag'>): Promise<LinkRun> {
  const port = 9099;
  const bytesEach = 64 * 1048576;
  const src = lab.spawnInNs(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'storm-tcp-source.ts'), lab.serverIp, String(port), String(bytesEach)], { log: path.join(dir, 'tcp-source.log'), cwd: path.resolve(import.meta.dirname, '..') });
  try {
    const t0 = Date.now();
    while (!fs.existsSync(path.join(dir, 'tcp-source.log')) || !fs.readFileSync(path.join(dir, 'tcp-source.log'), 'utf8').includes('LISTENING')) {
      if (Date.now() - t0 > 20_000) throw new Error(`the TCP source did not start: ${fs.readFileSync(path.join(dir, 'tcp-source.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await runWithProgress(lab, { ...base, mode: 'tcp', nodes, macTag: 0x40, tcpPort: port, imageBytes: bytesEach }, 'raw TCP over the namespace link');
    const ok = r.results.filter((x) => x.ok).length;
    if (ok < nodes) throw new Error(`raw TCP: ${nodes - ok} of ${nodes} transfers failed: ${JSON.stringify(failuresByReason(r.results))}`);
    return { connections: nodes, bytesEach, seconds: +r.seconds.toFixed(2), bytesPerSecond: Math.round((bytesEach * nodes) / r.seconds) };
  } finally {
    await stopProc(src);
  }
}

const gib = (b: number) => `${(b / 1073741824).toFixed(2)} GiB`;
const mibs = (bps: number) => `${(bps / 1048576).toFixed(0)} MiB/s`;

function imageJson(x: ImageReport) {
  const limit = x.totalBytes / x.link.bytesPerSecond;
  const side = (s: StageRun) => ({
    p50: s.stages.image?.p50 ?? null,
    p99: s.stages.image?.p99 ?? null,
    seconds: s.seconds,
    failures: s.failures,
    bytesPerSecond: Math.round(x.totalBytes / s.seconds),
    vsLinkLimit: +(s.seconds / limit).toFixed(2),
  });
  return {
    totalBytes: x.totalBytes,
    link: { ...x.link, limitSeconds: +limit.toFixed(2) },
    pxeherd: side(x.pxeherd),
    nginx: side(x.nginx),
    ratioP50: x.pxeherd.stages.image && x.nginx.stages.image ? +(x.pxeherd.stages.image.p50 / x.nginx.stages.image.p50).toFixed(2) : null,
    ratioP99: x.pxeherd.stages.image && x.nginx.stages.image ? +(x.pxeherd.stages.image.p99 / x.nginx.stages.image.p99).toFixed(2) : null,
    ratioTotal: +(x.pxeherd.seconds / x.nginx.seconds).toFixed(2),
  };
}

function imageTable(x: ImageReport): string {
  const j = imageJson(x);
  const row = (name: string, s: ReturnType<typeof imageJson>['pxeherd']) =>
    `  ${name.padEnd(8)} p50 ${s.p50?.toFixed(2)} s  p99 ${s.p99?.toFixed(2)} s  all ${s.seconds} s  ${mibs(s.bytesPerSecond)}  ${s.vsLinkLimit}x the link limit  fail ${s.failures}`;
  return [
    `\nimage stage alone: ${x.pxeherd.ok + x.pxeherd.failures} clients x ${(x.totalBytes / (x.pxeherd.ok + x.pxeherd.failures) / 1048576).toFixed(0)} MiB = ${gib(x.totalBytes)}`,
    `  link     raw TCP, ${x.link.connections} connections x ${x.link.bytesEach / 1048576} MiB in ${x.link.seconds} s = ${mibs(x.link.bytesPerSecond)}: limit for ${gib(x.totalBytes)} = ${j.link.limitSeconds} s`,
    row('pxeherd', j.pxeherd),
    row('nginx', j.nginx),
    `  ratio pxeherd / nginx: p50 ${j.ratioP50} p99 ${j.ratioP99} total ${j.ratioTotal}`,
  ].join('\n');
}

async function main(): Promise<void> {
  const why = stormUnavailable(COMPARE ? ['dnsmasq', 'nginx'] : []);
  if (why) {
    say(`storm: cannot run: ${why}`);
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phstorm-'));
  // Room for the storm and the stage-only DHCP runs (fresh MACs each).
  const lab = createStormLab({ name: 'phstorm', net16: '10.84', poolSize: Math.min(60000, NODES * 2 + 64) });
  const cleanup = () => {
    lab.destroy();
    if (!KEEP) fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  try {
    const { config, statedir } = writeStormConfig(lab, { dir, kernelBytes: KERNEL, initrdBytes: INITRD, tftpMaxTransfers: TFTP_MAX || undefined });
    registerSyntheticVnfs(dir, config, KERNEL, INITRD);
    if (IMAGE) writeImageFile(path.join(statedir, 'vnfs', 'storm', 'r1', 'rootfs.squashfs'), IMAGE);
    const server = await startPxeherd(lab, config, path.join(dir, 'pxeherd.log'));
    say(`storm: ${NODES} nodes ${RAMP ? `arriving over ${RAMP} s` : 'all at once'} in ${CLIENT_PROCS} client process(es), kernel ${KERNEL} B, initrd ${INITRD} B${IMAGE ? `, image ${IMAGE} B` : ''}; pxeherd pid ${server.pid}, logs in ${dir}`);
    const base: Omit<StormJob, 'mode' | 'nodes' | 'macTag'> = { server: lab.serverIp, httpPort: 8080, rampSeconds: RAMP, deadlineSeconds: 900, ...(IMAGE ? { imageBytes: IMAGE } : {}) };

    const watch = watchProc(server.pid);
    const net0 = { server: netCounters(lab.ns), clients: netCounters(lab.clientNs) };
    const storm = await runWithProgress(lab, { ...base, mode: 'full', nodes: NODES, macTag: 0x10, ...(IMAGE ? { imagePath: IMAGE_PATH } : {}) }, 'full boot path');
    const proc = watch.stop();
    const kernelDrops = { server: diffCounters(net0.server, netCounters(lab.ns)), clients: diffCounters(net0.clients, netCounters(lab.clientNs)) };
    const ready = storm.results.filter((r) => r.ok);
    const lastReady = Math.max(0, ...ready.map((r) => r.doneAt ?? 0)) / 1000;
    const stages = summarize(storm.results);
    const retries = storm.results.reduce((n, r) => n + r.retries, 0);
    const retriesByStage: Record<string, number> = {};
    for (const r of storm.results) for (const [k, v] of Object.entries(r.stageRetries ?? {})) retriesByStage[k] = (retriesByStage[k] ?? 0) + v;
    say(stageTable(`\nfull boot path, pxeherd (${ready.length}/${NODES} ready in ${lastReady.toFixed(2)} s, ${retries} retries ${JSON.stringify(retriesByStage)}):`, stages));
    if (ready.length < NODES) say(`failures: ${JSON.stringify(failuresByReason(storm.results))}`);
    say(`pxeherd process (with its children): ${proc ? `${proc.cpuSeconds} CPU s (${proc.cpuPercent}% of one core), peak RSS ${proc.peakRssMiB} MiB (VmHWM ${proc.hwmMiB} MiB)` : 'not sampled'}`);
    say(`kernel drops during the storm: server namespace ${JSON.stringify(kernelDrops.server)}, client namespace ${JSON.stringify(kernelDrops.clients)}`);

    /** One stage alone, with the datagrams the server namespace dropped meanwhile. */
    const stageRun = async (job: StormJob, ref = 'pxeherd', pid?: number): Promise<StageRun> => {
      const before = netCounters(lab.ns);
      const w = pid ? watchProc(pid, 100) : undefined;
      const r = await runWithProgress(lab, job, `${job.mode} alone against ${ref}`);
      const cpu = w?.stop();
      const drops = diffCounters(before, netCounters(lab.ns));
      return {
        seconds: +r.seconds.toFixed(2),
        ok: r.results.filter((x) => x.ok).length,
        failures: r.results.filter((x) => !x.ok).length,
        stages: summarize(r.results),
        serverDrops: drops.RcvbufErrors ?? 0,
        clientCpuSeconds: r.clientCpuSeconds,
        clientBusy: r.clientCpuMaxSeconds !== undefined ? +(r.clientCpuMaxSeconds / r.seconds).toFixed(2) : undefined,
        serverCpuSeconds: cpu?.cpuSeconds,
      };
    };
    let imageReport: ImageReport | undefined;
    const comparisons: Record<string, { pxeherd: StageRun; reference: StageRun; ref: string; ratioP50: number; ratioP99: number; ratioTotal: number }> = {};
    if (COMPARE) {
      const tftpRoot = path.join(statedir, 'tftproot');
      const httpPaths = ['/vnfs/storm/vmlinuz?mac={mac}', '/vnfs/storm/initrd.img?mac={mac}'];
      // The same clients, one stage at a time, against pxeherd…
      const px = {
        dhcp: await stageRun({ ...base, mode: 'dhcp', nodes: NODES, macTag: 0x20 }, 'pxeherd', server.pid),
        tftp: await stageRun({ ...base, mode: 'tftp', nodes: NODES, macTag: 0x21, tftpFile: 'undionly.kpxe' }, 'pxeherd', server.pid),
        http: await stageRun({ ...base, mode: 'http', nodes: NODES, macTag: 0x22, httpPaths }, 'pxeherd', server.pid),
        image: IMAGE ? await stageRun({ ...base, mode: 'http', nodes: NODES, macTag: 0x23, httpPaths: [`${IMAGE_PATH}?mac={mac}`], httpNames: ['image'] }, 'pxeherd', server.pid) : undefined,
      };
      await server.stop();
      // …and against the references on the same bridge and pool.
      const dns = await startDnsmasq(lab, dir, tftpRoot);
      const refDhcp = await stageRun({ ...base, mode: 'dhcp', nodes: NODES, macTag: 0x30 }, 'dnsmasq', dns.pid);
      const refTftp = await stageRun({ ...base, mode: 'tftp', nodes: NODES, macTag: 0x31, tftpFile: 'undionly.kpxe' }, 'dnsmasq', dns.pid);
      await stopProc(dns);
      const ngx = await startNginx(lab, dir, statedir);
      const refHttp = await stageRun({ ...base, mode: 'http', nodes: NODES, macTag: 0x32, httpPaths: httpPaths.map((p) => p.replace('?mac={mac}', '')) }, 'nginx', ngx.pid);
      const refImage = IMAGE ? await stageRun({ ...base, mode: 'http', nodes: NODES, macTag: 0x33, httpPaths: [IMAGE_PATH], httpNames: ['image'] }, 'nginx', ngx.pid) : undefined;
      await stopProc(ngx);
      if (IMAGE && px.image && refImage) {
        const link = await measureLink(lab, dir, NODES, base);
        imageReport = { pxeherd: px.image, nginx: refImage, link, totalBytes: IMAGE * NODES };
      }
      const pair = (name: string, stage: string, a: StageRun, b: StageRun, ref: string) => {
        const sa = a.stages[stage];
        const sb = b.stages[stage];
        comparisons[name] = {
          pxeherd: a,
          reference: b,
          ref,
          ratioP50: sa && sb ? +(sa.p50 / sb.p50).toFixed(2) : NaN,
          ratioP99: sa && sb ? +(sa.p99 / sb.p99).toFixed(2) : NaN,
          ratioTotal: +(a.seconds / b.seconds).toFixed(2),
        };
      };
      pair('dhcp', 'dhcp', px.dhcp, refDhcp, 'dnsmasq');
      pair('tftp', 'tftp', px.tftp, refTftp, 'dnsmasq');
      pair('kernel', 'kernel', px.http, refHttp, 'nginx');
      pair('initrd', 'initrd', px.http, refHttp, 'nginx');
      if (px.image && refImage) pair('image', 'image', px.image, refImage, 'nginx');
      say(`\nstage alone, ${NODES} clients, pxeherd vs reference (ratio = pxeherd / reference; below 1 = pxeherd faster):`);
      for (const [k, c] of Object.entries(comparisons)) {
        const a = c.pxeherd.stages[k];
        const b = c.reference.stages[k];
        say(
          `  ${k.padEnd(7)} pxeherd p50 ${a?.p50.toFixed(3)} p99 ${a?.p99.toFixed(3)} all ${c.pxeherd.seconds}s fail ${c.pxeherd.failures} drops ${c.pxeherd.serverDrops} client busy ${c.pxeherd.clientBusy} server CPU ${c.pxeherd.serverCpuSeconds ?? '?'}s` +
            ` | ${c.ref.padEnd(7)} p50 ${b?.p50.toFixed(3)} p99 ${b?.p99.toFixed(3)} all ${c.reference.seconds}s fail ${c.reference.failures} drops ${c.reference.serverDrops} client busy ${c.reference.clientBusy} server CPU ${c.reference.serverCpuSeconds ?? '?'}s` +
            ` | ratio p50 ${c.ratioP50} p99 ${c.ratioP99} total ${c.ratioTotal}`,
        );
      }
      if (imageReport) say(imageTable(imageReport));
    } else {
      await server.stop();
    }

    const summary = {
      nodes: NODES,
      clientProcs: CLIENT_PROCS,
      ready: ready.length,
      failures: NODES - ready.length,
      seconds: +lastReady.toFixed(2),
      stages: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, { p50: v.p50, p99: v.p99 }])),
      retries,
      retriesByStage,
      arrival: RAMP ? `ramp ${RAMP}s` : 'all',
      kernelBytes: KERNEL,
      initrdBytes: INITRD,
      server: proc,
      kernelDrops,
      compare: Object.fromEntries(Object.entries(comparisons).map(([k, c]) => [k, { ref: c.ref, ratioP50: c.ratioP50, ratioP99: c.ratioP99, ratioTotal: c.ratioTotal, pxeherdSeconds: c.pxeherd.seconds, referenceSeconds: c.reference.seconds, pxeherdFailures: c.pxeherd.failures, referenceFailures: c.reference.failures, pxeherdDrops: c.pxeherd.serverDrops, referenceDrops: c.reference.serverDrops, pxeherdClientCpuSeconds: c.pxeherd.clientCpuSeconds, referenceClientCpuSeconds: c.reference.clientCpuSeconds, pxeherdClientBusy: c.pxeherd.clientBusy, referenceClientBusy: c.reference.clientBusy, pxeherdServerCpuSeconds: c.pxeherd.serverCpuSeconds, referenceServerCpuSeconds: c.reference.serverCpuSeconds }])),
      failureReasons: failuresByReason(storm.results),
      ...(imageReport ? { image: imageJson(imageReport) } : {}),
    };
    if (JSON_OUT) process.stdout.write(JSON.stringify(summary) + '\n');
    else say(`\nsummary: ${JSON.stringify(summary)}`);
    process.exitCode = summary.failures === 0 ? 0 : 1;
  } finally {
    cleanup();
  }
}

main().catch((e) => {
  say(`storm: ${(e as Error).stack ?? e}`);
  process.exit(1);
});
