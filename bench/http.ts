/**
 * VNFS download throughput: pxeherd's /vnfs router (express 5; the file served from its
 * in-memory copy, FileCache) against nginx serving the same 8 MiB initrd, in one run.
 *
 *   node --import tsx bench/http.ts [--clients 100] [--rounds 3] [--mib 8] [--no-cache [--hwm BYTES]]
 *
 * --no-cache streams every response with res.sendFile instead (the path for files too large
 * for the cache); --hwm sets its read buffer (default 1 MiB; 65536 is res.sendFile's own).
 *
 * The client is one curl process doing all downloads in parallel (--parallel), the same
 * for both servers; pxeherd runs in its own process (so the client never shares its event
 * loop) and nginx with one worker (pxeherd is one thread too); rounds alternate between
 * the servers and the median counts. Ports 18190-18191 on 127.0.0.1. Prints MB/s and the ratio.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PXE_PORT = 18190;
const NGINX_PORT = 18191;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

async function serveMode(): Promise<void> {
  // Child process: only the pxeherd side.
  const [root, port, hwm, noCache] = [process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]) || undefined, process.argv[6] === 'no-cache'];
  const { createHttpApp } = await import('../src/http/app.js');
  const { vnfsRouter } = await import('../src/http/vnfs.js');
  let n = 0;
  const app = createHttpApp({ routers: [vnfsRouter({ vnfsRoot: root, events: { record: () => void n++ }, backend: { vnfs: () => ({ kernel: 'vmlinuz', initrd: 'initrd.img' }), nodeName: () => undefined }, highWaterMark: hwm, cache: noCache ? false : undefined })] });
  const server = http.createServer(app);
  server.keepAliveTimeout = 5000;
  server.listen(port, '127.0.0.1', () => process.stdout.write('LISTENING\n'));
  process.on('SIGTERM', () => process.exit(0));
}

function waitFor(url: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tryOnce = () => {
      const req = http.get(url, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${url}: ${res.statusCode}`))));
      });
      req.on('error', () => (Date.now() > until ? reject(new Error(`${url} did not come up`)) : setTimeout(tryOnce, 100)));
    };
    tryOnce();
  });
}

/** All downloads at once with one curl; returns MB/s (10^6 bytes) over the wall time. */
function round(url: string, clients: number, size: number, dir: string): number {
  const cfg = path.join(dir, 'curl.cfg');
  fs.writeFileSync(cfg, Array.from({ length: clients }, () => `url = "${url}"\noutput = "/dev/null"\n`).join(''));
  const t0 = process.hrtime.bigint();
  const r = spawnSync('curl', ['-s', '--fail', '--parallel', '--parallel-immediate', '--parallel-max', String(clients), '-K', cfg, '-w', '%{size_download}\n'], { encoding: 'utf8', maxBuffer: 16 << 20 });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`curl failed (${r.status}): ${r.stderr}`);
  const got = r.stdout.trim().split('\n').map(Number);
  const total = got.reduce((a, b) => a + b, 0);
  if (got.length !== clients || total !== clients * size) throw new Error(`incomplete downloads: ${got.length} transfers, ${total} bytes`);
  return total / 1e6 / s;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const clients = arg('clients', 100);
  const rounds = arg('rounds', 3);
  const mib = arg('mib', 8);
  const size = mib << 20;
  const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
  if (!nginx) throw new Error('nginx not found: apt-get install nginx-light');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-bench-http-'));
  const procs: ChildProcess[] = [];
  const cleanup = () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    // nginx's worker runs as an unprivileged user: the tree must be world-readable.
    fs.chmodSync(dir, 0o755);
    const vdir = path.join(dir, 'vnfs', 'stage1');
    fs.mkdirSync(vdir, { recursive: true });
    fs.writeFileSync(path.join(vdir, 'initrd.img'), crypto.randomBytes(size));
    for (const d of ['logs', 'tmp']) fs.mkdirSync(path.join(dir, d));
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(
      conf,
      `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 5s;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  server {
    listen 127.0.0.1:${NGINX_PORT};
    root ${dir};
    default_type application/octet-stream;
  }
}
`,
    );
    const ng = spawn(nginx, ['-c', conf, '-p', dir, '-e', `${dir}/logs/error.log`], { stdio: 'ignore' });
    procs.push(ng);
    const self = fileURLToPath(import.meta.url);
    const hwm = arg('hwm', 0);
    const noCache = process.argv.includes('--no-cache');
    const px = spawn(process.execPath, ['--import', 'tsx', self, '--serve', path.join(dir, 'vnfs'), String(PXE_PORT), String(hwm), noCache ? 'no-cache' : 'cache'], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(px);
    const pxUrl = `http://127.0.0.1:${PXE_PORT}/vnfs/stage1/initrd.img?mac=52-54-00-00-00-01`;
    const ngUrl = `http://127.0.0.1:${NGINX_PORT}/vnfs/stage1/initrd.img`;
    await waitFor(pxUrl);
    await waitFor(ngUrl);

    console.log(`${clients} concurrent downloads of a ${mib} MiB initrd, ${rounds} rounds each (curl --parallel, loopback, ${os.cpus().length} cores, pxeherd ${noCache ? `streaming, read buffer ${hwm || 1 << 20} bytes` : 'from its in-memory copy'})`);
    const res = { pxeherd: [] as number[], nginx: [] as number[] };
    // Warm-up: page cache, JIT, TCP buffers; not counted.
    round(pxUrl, clients, size, dir);
    round(ngUrl, clients, size, dir);
    for (let i = 0; i < rounds; i++) {
      res.pxeherd.push(round(pxUrl, clients, size, dir));
      res.nginx.push(round(ngUrl, clients, size, dir));
      console.log(`round ${i + 1}: pxeherd ${res.pxeherd[i]!.toFixed(0)} MB/s, nginx ${res.nginx[i]!.toFixed(0)} MB/s`);
    }
    const p = median(res.pxeherd);
    const n = median(res.nginx);
    console.log(`pxeherd /vnfs: ${p.toFixed(0)} MB/s (median)`);
    console.log(`nginx:         ${n.toFixed(0)} MB/s (median)`);
    // Adjacent rounds share the machine's momentary load (2 shared cores): the median of
    // the per-round ratios is steadier than the ratio of the medians.
    const ratios = res.pxeherd.map((x, i) => x / res.nginx[i]!);
    console.log(`ratio pxeherd/nginx: ${median(ratios).toFixed(2)}x median of per-round ratios (${(p / n).toFixed(2)}x of medians; goal >= 1.00x)`);
  } finally {
    cleanup();
  }
}

if (process.argv[2] === '--serve') await serveMode();
else await main();
