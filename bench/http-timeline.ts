/**
 * Where the time of the HTTP kernel stage goes, per request, pxeherd against nginx in the same
 * run (each on a freshly started server, in the storm lab of bench/storm-stage.ts):
 *
 *   node --import tsx bench/http-timeline.ts [--nodes 200] [--rounds 1] [--kernel-mib 1] [--initrd-mib 4]
 *            [--http 'streams: 0'] [--prime] [--no-nginx] [--keep] [--perf DIR] [--strace PREFIX]
 *
 * The clients (a child process in the client namespace, as the storm's) fetch the kernel then
 * the initrd over a fresh connection each and record, per request: connected, response
 * headers, first body byte and last byte (ms since the start). Prints the median and p99 of
 * each step for the kernel, per server, and the kernel's p50 / p99 / all done. `PXEHERD_CLI`
 * runs another build as pxeherd. --http adds keys to pxeherd's `http:` config section; --prime
 * fetches each file once (curl) before the clients start, on both servers; --keep copies each
 * round's timelines to /tmp/tl-<server>-<round>-<pid>.json; --perf DIR records `perf record -g`
 * of pxeherd (JS frames named through --perf-basic-prof-only-functions); --strace PREFIX counts
 * its system calls (`strace -c`). Needs root and nginx.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawnIn } from '../test/lab/lab.js';
import { createStormLab, registerSyntheticVnfs, startNginx, startPxeherd, stopProc, stormUnavailable, watchProc, writeStormConfig, ROOT } from './storm-lab.js';

interface Timeline {
  node: number;
  file: string;
  start: number;
  connected: number;
  headers: number;
  first: number;
  end: number;
  bytes: number;
}

function opt(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

/** Client mode (inside the client namespace): one line of JSON, every request's timeline. */
async function clients(server: string, port: number, nodes: number, paths: string[], out: string): Promise<void> {
  const t0 = performance.now();
  const now = () => +(performance.now() - t0).toFixed(2);
  const lines: Timeline[] = [];
  const one = (node: number, p: string) =>
    new Promise<void>((resolve, reject) => {
      const t: Timeline = { node, file: path.basename(p.split('?')[0]!), start: now(), connected: 0, headers: 0, first: 0, end: 0, bytes: 0 };
      const mac = `02-77-5e-00-${((node >> 8) & 0xff).toString(16).padStart(2, '0')}-${(node & 0xff).toString(16).padStart(2, '0')}`;
      const req = http.get(`http://${server}:${port}${p.replace('{mac}', mac)}`, { agent: false }, (res) => {
        t.headers = now();
        res.on('data', (c: Buffer) => {
          if (!t.first) t.first = now();
          t.bytes += c.length;
        });
        res.on('end', () => {
          t.end = now();
          lines.push(t);
          resolve();
        });
        res.on('error', reject);
      });
      req.on('socket', (s) => s.once('connect', () => (t.connected = now())));
      req.on('error', reject);
    });
  await Promise.all(
    Array.from({ length: nodes }, async (_, i) => {
      for (const p of paths) await one(i, p);
    }),
  );
  fs.writeFileSync(out, JSON.stringify(lines));
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
};

async function main(): Promise<void> {
  if (process.argv[2] === '--client') {
    const [server, port, nodes, paths, out] = process.argv.slice(3);
    return clients(server!, Number(port), Number(nodes), JSON.parse(paths!) as string[], out!);
  }
  const why = stormUnavailable(['nginx']);
  if (why) {
    process.stderr.write(`http-timeline: cannot run: ${why}\n`);
    process.exit(2);
  }
  const PERF = process.argv.includes('--perf') ? opt('perf', '') : '';
  const NODES = Number(opt('nodes', '200'));
  const ROUNDS = Number(opt('rounds', '1'));
  const KERNEL = Math.round(Number(opt('kernel-mib', '1')) * 1048576);
  const INITRD = Math.round(Number(opt('initrd-mib', '4')) * 1048576);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phtimeline-'));
  const lab = createStormLab({ name: 'phtl', net16: '10.88', poolSize: 16 });
  try {
    const { config, statedir } = writeStormConfig(lab, { dir, kernelBytes: KERNEL, initrdBytes: INITRD });
    registerSyntheticVnfs(dir, config, KERNEL, INITRD);
    // --http 'streams: 0' and the like: keys added to pxeherd's http section.
    const extra = opt('http', '');
    if (extra) fs.writeFileSync(config, fs.readFileSync(config, 'utf8').replace('http: { port: 8080 }', `http: { port: 8080, ${extra} }`));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const server of process.argv.includes('--no-nginx') ? ['pxeherd'] : ['pxeherd', 'nginx']) {
        let pid: number;
        let stop: () => Promise<void>;
        if (server === 'pxeherd') {
          const p = await startPxeherd(lab, config, path.join(dir, `pxeherd-${round}.log`), PERF ? { NODE_OPTIONS: '--perf-basic-prof-only-functions' } : {});
          pid = p.pid;
          stop = () => p.stop();
        } else {
          const p = await startNginx(lab, dir, statedir);
          pid = p.pid!;
          stop = () => stopProc(p);
        }
        try {
          const paths = ['/vnfs/storm/vmlinuz', '/vnfs/storm/initrd.img'].map((p) => (server === 'pxeherd' ? `${p}?mac={mac}` : p));
          const out = path.join(dir, `tl-${server}-${round}.json`);
          if (process.argv.includes('--prime')) for (const p of paths) execFileSync('ip', ['netns', 'exec', lab.clientNs, 'curl', '-s', '-o', '/dev/null', `http://${lab.serverIp}:8080${p.replace('{mac}', '02-77-5e-ff-ff-ff')}`]);
          const w = watchProc(pid, 100);
          const perf = PERF && server === 'pxeherd' ? spawn('perf', ['record', '-q', '-F', '1999', '-g', '-p', String(pid), '-o', path.join(PERF, `perf-${round}.data`)], { stdio: 'ignore' }) : undefined;
          const STRACE = opt('strace', '');
          const st = STRACE && server === 'pxeherd' ? spawn('strace', ['-c', '-f', '-p', String(pid), '-o', `${STRACE}-${round}.txt`], { stdio: 'ignore' }) : undefined;
          if (perf || st) await new Promise((r) => setTimeout(r, 500));
          await new Promise<void>((resolve, reject) => {
            const c = spawnIn(lab.clientNs, process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'http-timeline.ts'), '--client', lab.serverIp, '8080', String(NODES), JSON.stringify(paths), out], { pipe: true, cwd: ROOT });
            let err = '';
            c.stderr!.on('data', (d) => (err += d));
            c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`clients exited ${code}: ${err}`))));
          });
          const cpu = w.stop();
          if (st) {
            st.kill('SIGINT');
            await new Promise((r) => st.once('exit', r));
          }
          if (perf) {
            perf.kill('SIGINT');
            await new Promise((r) => perf.once('exit', r));
          }
          const tl = JSON.parse(fs.readFileSync(out, 'utf8')) as Timeline[];
          if (process.argv.includes('--keep')) fs.copyFileSync(out, `/tmp/tl-${server}-${round}-${process.pid}.json`);
          const k = tl.filter((t) => t.file === 'vmlinuz');
          const f = (sel: (t: Timeline) => number) => {
            const xs = k.map(sel);
            return `${pct(xs, 50).toFixed(0)}/${pct(xs, 99).toFixed(0)}`;
          };
          const all = Math.max(...tl.map((t) => t.end));
          process.stdout.write(
            `round ${round} ${server.padEnd(8)} kernel (ms p50/p99): connect ${f((t) => t.connected - t.start)} headers ${f((t) => t.headers - t.connected)} first ${f((t) => t.first - t.headers)} body ${f((t) => t.end - t.first)} ` +
              `total ${f((t) => t.end - t.start)}; kernel done at ${f((t) => t.end)}; all ${all.toFixed(0)} ms; server CPU ${cpu?.cpuSeconds ?? '?'} s\n`,
          );
        } finally {
          await stop();
        }
      }
    }
  } finally {
    lab.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`http-timeline: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
});
