/**
 * Network-namespace lab for the DHCP integration tests and the bench. Only `phdhcp*`
 * namespaces and 10.79.0.0/16 / 10.80.0.0/16 addresses are used; everything is torn down by
 * `cleanup()`, which the tests call from t.after so a failing test leaves nothing behind.
 *
 * Topology: server namespace with bridge br0 (10.79.0.1/24, STP off, forward delay 0); a client
 * namespace on the bridge through a veth (eth0, no address); optional: a "site" namespace on the
 * bridge (10.79.0.2, for dnsmasq), a relay link (client ns 10.80.0.1 <-> server ns via 10.79.200.0/24).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Why namespace tests cannot run here, or undefined when they can. */
export function labUnavailable(bins: string[] = []): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch {
    return 'iproute2 "ip netns" not available';
  }
  for (const b of bins) {
    const found = ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => existsSync(path.join(d, b)));
    if (!found) return `${b} not installed (Debian package needed)`;
  }
  return undefined;
}

export function sh(cmd: string, args: string[], timeoutMs = 20_000) {
  return run(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
}

export function nsExec(ns: string, cmd: string, args: string[], timeoutMs = 20_000) {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
}

export interface Lab {
  server: string;
  client: string;
  site?: string;
  cleanup(): Promise<void>;
}

export interface LabOptions {
  site?: boolean;
  relay?: boolean;
  clientMac?: string;
}

export async function createLab(id: string, opts: LabOptions = {}): Promise<Lab> {
  const server = `phdhcp-s${id}`;
  const client = `phdhcp-c${id}`;
  const site = opts.site ? `phdhcp-d${id}` : undefined;
  const all = [server, client, ...(site ? [site] : [])];
  const cleanup = async () => {
    for (const ns of all) {
      // Kill whatever still runs in the namespace (only processes of this lab live there).
      try {
        const { stdout } = await sh('ip', ['netns', 'pids', ns]);
        for (const pid of stdout.split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      } catch {
        /* no such namespace */
      }
      await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
  };
  await cleanup(); // leftovers of an earlier, killed run
  const ip = (...a: string[]) => sh('ip', a);
  try {
    for (const ns of all) {
      await ip('netns', 'add', ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    await ip('-n', server, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await ip('-n', server, 'addr', 'add', '10.79.0.1/24', 'dev', 'br0');
    await ip('-n', server, 'link', 'set', 'br0', 'up');
    await ip('-n', server, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client);
    await ip('-n', server, 'link', 'set', 'p0', 'master', 'br0', 'up');
    if (opts.clientMac) await ip('-n', client, 'link', 'set', 'eth0', 'address', opts.clientMac);
    await ip('-n', client, 'link', 'set', 'eth0', 'up');
    if (site) {
      await ip('-n', server, 'link', 'add', 'p1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', site);
      await ip('-n', server, 'link', 'set', 'p1', 'master', 'br0', 'up');
      await ip('-n', site, 'addr', 'add', '10.79.0.2/24', 'dev', 'eth0');
      await ip('-n', site, 'link', 'set', 'eth0', 'up');
    }
    if (opts.relay) {
      await ip('-n', server, 'link', 'add', 'r0', 'type', 'veth', 'peer', 'name', 'rl0', 'netns', client);
      await ip('-n', server, 'addr', 'add', '10.79.200.1/24', 'dev', 'r0');
      await ip('-n', server, 'link', 'set', 'r0', 'up');
      await ip('-n', client, 'addr', 'add', '10.79.200.2/24', 'dev', 'rl0');
      await ip('-n', client, 'addr', 'add', '10.80.0.1/24', 'dev', 'rl0');
      await ip('-n', client, 'link', 'set', 'rl0', 'up');
      await ip('-n', server, 'route', 'add', '10.80.0.0/16', 'via', '10.79.200.2');
      await ip('-n', client, 'route', 'add', '10.79.0.0/24', 'via', '10.79.200.1');
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
  return { server, client, site, cleanup };
}

export interface RunningServer {
  proc: ChildProcess;
  output(): string;
  /** SIGTERM, then the counters and last events the runner printed. */
  stop(): Promise<{ counters: Record<string, number>; events: Array<{ kind: string; mac?: string; detail?: Record<string, unknown> }> }>;
}

/** Start test/integration/dhcp-runner.ts in a namespace; resolves once it printed READY. */
export function startServer(ns: string, config: unknown, timeoutMs = 60_000): Promise<RunningServer> {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', path.join(ROOT, 'test/integration/dhcp-runner.ts'), JSON.stringify(config)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
