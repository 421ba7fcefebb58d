/**
 * Nodescript throughput: N nodes x S small executable scripts, all nodes asking for `init` at
 * once over HTTP, compared in the same run with two floors measured without a server:
 *   - the same N*S script runs started from Node's child_process at the same parallelism;
 *   - the same runs from two plain `sh` loops (one per core).
 *
 *   node --import tsx bench/nodescripts.ts [--nodes 1000] [--scripts 10] [--parallel 8]
 *                                          [--spawner auto|native|child_process|both] [--floors 0]
 *
 * Build the native spawner first for the fast path: make -C native/spawner
 */
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { spawn } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { MemoryProvisionBackend } from '../src/provision/memory-backend.js';
import { ProvisionService } from '../src/provision/service.js';
import { provisionRouter } from '../src/provision/http.js';
import { NodescriptEngine } from '../src/nodescripts/engine.js';
import { createSpawner } from '../src/nodescripts/helper-spawner.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}
const NODES = Number(arg('nodes', '1000'));
const SCRIPTS = Number(arg('scripts', '10'));
const PARALLEL = Number(arg('parallel', '8'));
const SPAWNER = arg('spawner', 'auto');
const FLOORS = arg('floors', '1') !== '0';
const PORT = 19880;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pxeherd-bench-'));
const dir = path.join(tmp, 'ns');
mkdirSync(path.join(dir, 'init/all'), { recursive: true });
const scriptPaths: string[] = [];
for (let s = 0; s < SCRIPTS; s++) {
  const p = path.join(dir, 'init/all', `${String(s * 5).padStart(2, '0')}-step${s}`);
  writeFileSync(p, `#!/bin/sh\necho "echo step ${s} for $NODENAME ($NODEID)"\n`);
  chmodSync(p, 0o755);
  scriptPaths.push(p);
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function serverRun(kind: 'auto' | 'native' | 'child_process'): Promise<{ total: number; p50: number; p99: number; failures: number; spawner: string }> {
  const backend = new MemoryProvisionBackend();
  const macs: string[] = [];
  for (let i = 0; i < NODES; i++) {
    const mac = `52:54:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    backend.add({ mac, name: `n${String(i).padStart(5, '0')}` });
    macs.push(mac);
  }
  const spawner = createSpawner({ prefer: kind, log: (m) => console.error(m) });
  const engine = new NodescriptEngine({ dir, statedir: tmp, maxParallel: PARALLEL, spawner, events: backend.events });
  const app = express();
  app.use(provisionRouter(new ProvisionService(backend, engine)));
  const server = await new Promise<http.Server>((r) => {
    const s = app.listen(PORT, '127.0.0.1', () => r(s));
  });
  server.maxConnections = NODES + 100;
  // With the child_process spawner the event loop stalls in fork() for long stretches on a
  // busy machine; Node's default request/headers timeouts then reset waiting clients, which
  // would measure Node's HTTP defaults rather than the nodescript engine.
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const lat: number[] = [];
  let failures = 0;
  const t0 = performance.now();
  await Promise.all(
    macs.map(
      (mac) =>
        new Promise<void>((resolve) => {
          const s = performance.now();
          http
            .get({ host: '127.0.0.1', port: PORT, path: `/provision/init?mac=${mac}`, agent }, (res) => {
              let body = '';
              res.setEncoding('utf8');
              res.on('data', (d: string) => (body += d));
              res.on('end', () => {
                const lines = body.split('\n').filter((l) => l.startsWith('echo step'));
                if (res.statusCode !== 200 || lines.length !== SCRIPTS || !body.endsWith('# NODESCRIPT END\n')) {
                  if (failures++ < 3) console.error(`failure for ${mac}: HTTP ${res.statusCode}\n${body.slice(-400)}`);
                }
                lat.push(performance.now() - s);
                resolve();
              });
            })
            .on('error', (e) => {
              if (failures++ < 3) console.error(`failure for ${mac}: ${e.message}`);
              resolve();
            });
        }),
    ),
  );
  const total = performance.now() - t0;
  await new Promise((r) => server.close(r));
  agent.destroy();
  await engine.close();
  lat.sort((a, b) => a - b);
  return { total, p50: pct(lat, 50), p99: pct(lat, 99), failures, spawner: spawner.kind };
}

/** Every one of the NODES × SCRIPTS runs through `runOne`, PARALLEL at a time; total ms. */
async function runAllScripts(runOne: (path: string) => Promise<unknown>): Promise<number> {
  const total = NODES * SCRIPTS;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < total) await runOne(scriptPaths[next++ % SCRIPTS]!);
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return performance.now() - t0;
}

const floorEnv = { PATH: '/usr/bin:/bin', NODENAME: 'n00000', NODEID: '52:54:00:00:00:00' };

/** Floor 1: the same script runs from Node's child_process, PARALLEL at a time. */
function childProcessFloor(): Promise<number> {
  return runAllScripts(
    (p) =>
      new Promise<void>((resolve) => {
        const c = spawn(p, [], { env: floorEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
        c.stdout.resume();
        c.stderr.resume();
        c.on('close', () => resolve());
      }),
  );
}

/** Reference: the native helper alone (no HTTP, no engine), PARALLEL at a time. */
async function helperAlone(): Promise<number | undefined> {
  const spawner = createSpawner({ prefer: 'native', log: () => {} });
  if (spawner.kind !== 'native-helper') return undefined;
  const ms = await runAllScripts((p) => spawner.run({ path: p, cwd: tmp, env: floorEnv, timeoutMs: 60_000, graceMs: 1000, maxStdout: 1 << 20, maxStderr: 65536 }));
  await spawner.close();
  return ms;
}

/** Floor 2: two plain sh loops, each running half of the script runs. */
async function shFloor(): Promise<number> {
  const per = Math.ceil(NODES / 2);
  const loop = `i=0; while [ $i -lt ${per} ]; do for s in ${scriptPaths.join(' ')}; do "$s" >/dev/null; done; i=$((i+1)); done`;
  const t0 = performance.now();
  await Promise.all(
    [0, 1].map(
      () =>
        new Promise<void>((resolve) => {
          const c = spawn('sh', ['-c', loop], { env: { PATH: '/usr/bin:/bin', NODENAME: 'n00000', NODEID: '52:54:00:00:00:00' }, stdio: 'ignore' });
          c.on('close', () => resolve());
        }),
    ),
  );
  return performance.now() - t0;
}

const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function main() {
  console.log(`pxeherd nodescripts bench: ${NODES} nodes x ${SCRIPTS} scripts = ${NODES * SCRIPTS} runs, max_parallel ${PARALLEL}, ${os.cpus().length} CPUs`);
  const kinds: ('auto' | 'native' | 'child_process')[] = SPAWNER === 'both' ? ['native', 'child_process'] : [SPAWNER as 'auto'];
  const results = [];
  for (const k of kinds) {
    const r = await serverRun(k);
    results.push(r);
    console.log(`server over HTTP [${r.spawner}]: total ${fmt(r.total)}, per node p50 ${fmt(r.p50)} p99 ${fmt(r.p99)}, failures ${r.failures}`);
  }
  if (results.some((r) => r.failures > 0)) process.exitCode = 1;
  if (!FLOORS) return;
  const cp = await childProcessFloor();
  console.log(`floor: child_process from Node, parallel ${PARALLEL}: ${fmt(cp)}`);
  const sh = await shFloor();
  console.log(`floor: two plain sh loops: ${fmt(sh)}`);
  const ha = await helperAlone();
  if (ha !== undefined) console.log(`reference: native helper alone (no HTTP), parallel ${PARALLEL}: ${fmt(ha)} (${(ha / sh).toFixed(2)} x sh floor)`);
  for (const r of results) {
    console.log(`ratio [${r.spawner}]: server/child_process floor ${(r.total / cp).toFixed(2)}, server/sh floor ${(r.total / sh).toFixed(2)}`);
  }
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => rmSync(tmp, { recursive: true, force: true }));
