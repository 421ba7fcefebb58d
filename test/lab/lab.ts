/**
 * The test lab: a network namespace with a bridge that holds the server's address, tap
 * devices for QEMU machines and a veth to a second namespace playing a plain client host.
 * Nothing touches the host's own interfaces or routes. Everything created is recorded and
 * removed by `destroy()`, also when a test fails.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function sh(cmd: string, args: string[], opts: { ns?: string; allowFail?: boolean; input?: string } = {}): string {
  const full = opts.ns ? ['ip', ['netns', 'exec', opts.ns, cmd, ...args]] : [cmd, args];
  try {
    return execFileSync(full[0] as string, full[1] as string[], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input: opts.input });
  } catch (e) {
    if (opts.allowFail) return '';
    const err = e as { stderr?: string; message: string };
    throw new Error(`${[full[0], ...(full[1] as string[])].join(' ')} failed: ${err.stderr || err.message}`);
  }
}

export function which(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, bin);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** Why the lab cannot run here, or undefined when it can. */
export function labUnavailable(needs: string[] = []): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (run as root; CI does)';
  if (!which('ip')) return 'needs iproute2 (apt-get install iproute2)';
  for (const b of needs) if (!which(b)) return `needs ${b} (Debian package; .ci/run installs it)`;
  return undefined;
}

export interface Lab {
  ns: string;
  clientNs: string;
  bridge: string;
  serverIp: string;
  clientIf: string;
  prefix: string;
  taps: string[];
  addTap(): string;
  /** Run a long-lived process inside the server namespace. */
  spawnInNs(cmd: string, args: string[], opts?: { ns?: string; log?: string; env?: NodeJS.ProcessEnv }): ChildProcess;
  destroy(): void;
}

let counter = 0;

export function createLab(opts: { name?: string; subnet?: string } = {}): Lab {
  const id = `${process.pid % 10000}${counter++}`;
  const ns = `${opts.name ?? 'phlab'}${id}`;
  const clientNs = `${ns}c`;
  const subnet = opts.subnet ?? '10.77.0';
  const bridge = 'br0';
  const procs: ChildProcess[] = [];
  const taps: string[] = [];
  sh('ip', ['netns', 'add', ns]);
  const lab: Lab = {
    ns,
    clientNs,
    bridge,
    serverIp: `${subnet}.1`,
    clientIf: 'eth0',
    prefix: subnet,
    taps,
    addTap() {
      const tap = `tap${taps.length}`;
      sh('ip', ['tuntap', 'add', tap, 'mode', 'tap'], { ns });
      sh('ip', ['link', 'set', tap, 'master', bridge], { ns });
      sh('ip', ['link', 'set', tap, 'up'], { ns });
      taps.push(tap);
      return tap;
    },
    spawnInNs(cmd, args, o = {}) {
      const out = o.log ? fs.openSync(o.log, 'a') : 'ignore';
      const p = spawn('ip', ['netns', 'exec', o.ns ?? ns, cmd, ...args], { stdio: ['ignore', out, out], env: { ...process.env, ...o.env } });
      procs.push(p);
      return p;
    },
    destroy() {
      for (const p of procs) {
        if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      }
      // Anything still running inside the namespaces (dhclient, QEMU) goes too.
      for (const n of [ns, clientNs]) {
        const pids = sh('ip', ['netns', 'pids', n], { allowFail: true }).split(/\s+/).filter(Boolean);
        for (const pid of pids) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* gone already */
          }
        }
        sh('ip', ['netns', 'del', n], { allowFail: true });
      }
    },
  };
  try {
    sh('ip', ['link', 'set', 'lo', 'up'], { ns });
    sh('ip', ['link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0'], { ns });
    sh('ip', ['addr', 'add', `${lab.serverIp}/24`, 'dev', bridge], { ns });
    sh('ip', ['link', 'set', bridge, 'up'], { ns });
    // A plain Linux client host on a veth pair.
    sh('ip', ['netns', 'add', clientNs]);
    sh('ip', ['link', 'add', 'vc0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', clientNs], { ns });
    sh('ip', ['link', 'set', 'vc0', 'master', bridge], { ns });
    sh('ip', ['link', 'set', 'vc0', 'up'], { ns });
    sh('ip', ['link', 'set', 'lo', 'up'], { ns: clientNs });
    sh('ip', ['link', 'set', 'eth0', 'up'], { ns: clientNs });
  } catch (e) {
    lab.destroy();
    throw e;
  }
  return lab;
}

/** Wait until `pred()` is true, polling; throws with `what` after `ms`. */
export async function waitFor<T>(what: string, ms: number, pred: () => T | undefined | false | Promise<T | undefined | false>, every = 200): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
