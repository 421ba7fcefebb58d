/**
 * The DHCP integration tests' (and bench/dhcp.ts's) lab on test/lab/lab.ts. Only `phdhcp*`
 * namespaces and 10.79.0.0/16 / 10.80.0.0/16 addresses are used; everything is torn down by
 * `cleanup()`, which the tests call from t.after so a failing test leaves nothing behind.
 *
 * Topology: server namespace with bridge br0 (10.79.0.1/24, STP off, forward delay 0); a client
 * namespace on the bridge through a veth (eth0, no address); optional: a "site" namespace on the
 * bridge (10.79.0.2, for dnsmasq), a relay link (client ns 10.80.0.1 <-> server ns via
 * 10.79.200.0/24), a second bridge br1 (10.79.1.1/24) with a host namespace of its own.
 * Namespace names are fixed per test file (`phdhcp-s<id>`, `-c<id>`, `-d<id>`), so a run
 * removes what a killed earlier run of the same file left behind.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLab as createNsLab, run, spawnIn, type Lab as NsLab } from '../lab/lab.js';

export { labUnavailable } from '../lab/lab.js';
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** test/lab's `run` in the argument order these tests (and bench/dhcp.ts) use. */
export function sh(cmd: string, args: string[], timeoutMs = 20_000) {
  return run(cmd, args, { timeoutMs });
}

export function nsExec(ns: string, cmd: string, args: string[], timeoutMs = 20_000) {
  return run(cmd, args, { ns, timeoutMs });
}

export interface Lab extends NsLab {
  server: string;
  client: string;
  site?: string;
  /** The host namespace on br1 (`opts.second`). */
  second?: string;
  cleanup(): Promise<void>;
}

export interface LabOptions {
  site?: boolean;
  relay?: boolean;
  clientMac?: string;
  /** Bridge br1 (10.79.1.1/24) with one more host namespace on it, named `name`, eth0 with `mac`. */
  second?: { name: string; mac?: string };
}

export async function createLab(id: string, opts: LabOptions = {}): Promise<Lab> {
  const site = opts.site ? `phdhcp-d${id}` : undefined;
  const lab = createNsLab({
    names: { server: `phdhcp-s${id}`, client: `phdhcp-c${id}` },
    subnet: '10.79.0',
    clientMac: opts.clientMac,
    bridges: opts.second ? { br1: '10.79.1.1/24' } : undefined,
    hosts: [...(site ? [{ ns: site, addr: '10.79.0.2/24' }] : []), ...(opts.second ? [{ ns: opts.second.name, bridge: 'br1', mac: opts.second.mac }] : [])],
    routed: opts.relay ? { server: '10.79.200.1/24', client: ['10.79.200.2/24', '10.80.0.1/24'], serverRoutes: ['10.80.0.0/16'], clientRoutes: ['10.79.0.0/24'] } : undefined,
  });
  return { ...lab, server: lab.ns, client: lab.clientNs, site, second: opts.second?.name, cleanup: async () => lab.destroy() };
}

export interface RunningServer {
  proc: ChildProcess;
  output(): string;
  /** SIGTERM, then the counters and last events the runner printed. */
  stop(): Promise<{ counters: Record<string, number>; events: Array<{ kind: string; mac?: string; detail?: Record<string, unknown> }> }>;
}

/** Start test/integration/dhcp-runner.ts in a namespace; resolves once it printed READY. */
export function startServer(ns: string, config: unknown, timeoutMs = 60_000): Promise<RunningServer> {
  // PXEHERD_DHCP_CPU_PROF=DIR: the server writes a V8 CPU profile there when it stops (bench profiling).
  const prof = process.env.PXEHERD_DHCP_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.PXEHERD_DHCP_CPU_PROF] : [];
  const proc = spawnIn(ns, process.execPath, [...prof, '--import', 'tsx', path.join(ROOT, 'test/integration/dhcp-runner.ts'), JSON.stringify(config)], { cwd: ROOT, pipe: true });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const handle: RunningServer = {
    proc,
    output: () => out + err,
    stop: () =>
      new Promise((resolve) => {
        const parse = () => {
          const c = /^COUNTERS (.*)$/m.exec(out);
          const e = /^EVENTS (.*)$/m.exec(out);
          resolve({ counters: c ? JSON.parse(c[1]!) : {}, events: e ? JSON.parse(e[1]!) : [] });
        };
        if (proc.exitCode !== null) return parse();
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        proc.once('exit', () => {
          clearTimeout(t);
          parse();
        });
        proc.kill('SIGTERM');
      }),
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`DHCP runner did not start in ${timeoutMs} ms: ${out}${err}`));
    }, timeoutMs);
    const check = () => {
      if (out.includes('READY')) {
        clearTimeout(timer);
        resolve(handle);
      } else if (/^ERROR /m.test(out)) {
        clearTimeout(timer);
        reject(new Error(out.trim()));
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      if (!out.includes('READY')) reject(new Error(`DHCP runner exited ${code}: ${out}${err}`));
    });
  });
}

/** Script for udhcpc/dhclient that prints its environment on one line per event. */
export const ENV_SCRIPT = '#!/bin/sh\necho "EVENT $1 $reason"\nenv | sort | sed "s/^/ENV /"\nexit 0\n';

/** ENV_SCRIPT written to <dir>/env.sh, executable; its path (for udhcpc -s). */
export function writeEnvScript(dir: string): string {
  const file = path.join(dir, 'env.sh');
  writeFileSync(file, ENV_SCRIPT);
  chmodSync(file, 0o755);
  return file;
}

/** KEY=value pairs of the event block of `EVENT <name>` in a client's output. */
export function eventEnv(output: string, event: string): Record<string, string> | undefined {
  const blocks = output.split(/^EVENT /m).slice(1);
  const b = blocks.reverse().find((x) => x.split('\n')[0]!.trim().split(/\s+/).includes(event));
  if (!b) return undefined;
  const env: Record<string, string> = {};
  for (const line of b.split('\n')) {
    const m = /^ENV ([A-Za-z_0-9]+)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}
