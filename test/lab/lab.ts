/**
 * The test lab: network namespaces joined by a bridge, the one way the tests and benches create
 * links, run commands inside them and tear them down. The server namespace has bridge br0
 * holding the server's address; a client namespace sits on br0 through a veth (eth0); QEMU
 * machines get tap devices on br0 (`addTap`). Options add what some suites need: more bridges,
 * more single-homed hosts, a routed link (a DHCP relay's subnet), a /16 and many client
 * addresses (the storm). Nothing touches the host's own interfaces or routes. Everything
 * created is recorded and removed by `destroy()`, also when a test fails or creation fails
 * half-way.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** argv of `cmd args`, run inside namespace `ns` when given. */
function argv(ns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return ns ? ['ip', ['netns', 'exec', ns, cmd, ...args]] : [cmd, args];
}

/** Run a command (in a namespace when `ns` is set) to completion; its stdout. */
export function sh(cmd: string, args: string[], opts: { ns?: string; allowFail?: boolean; input?: string } = {}): string {
  const [c, a] = argv(opts.ns, cmd, args);
  try {
    return execFileSync(c, a, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input: opts.input });
  } catch (e) {
    if (opts.allowFail) return '';
    const err = e as { stderr?: string; message: string };
    throw new Error(`${[c, ...a].join(' ')} failed: ${err.stderr || err.message}`);
  }
}

/**
 * `sh` without blocking the event loop, for clients that take seconds while servers in this
 * process must keep running. A failure rejects with the child's `stdout` and `stderr` attached
 * (tests read a client's partial output from it).
 */
export function run(cmd: string, args: string[], opts: { ns?: string; timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
  const [c, a] = argv(opts.ns, cmd, args);
  return execFileP(c, a, { encoding: 'utf8', timeout: opts.timeoutMs ?? 20_000, maxBuffer: 16 << 20, cwd: opts.cwd, env: opts.env });
}

/**
 * Start a long-lived process inside namespace `ns`: output to `log` (appended), to pipes
 * (`pipe: true`), or discarded. Callers that do not track the process themselves use
 * `Lab.spawnInNs`, which `destroy()` kills.
 */
export function spawnIn(ns: string, cmd: string, args: string[], o: { log?: string; pipe?: boolean; env?: NodeJS.ProcessEnv; cwd?: string } = {}): ChildProcess {
  const fd = o.log ? fs.openSync(o.log, 'a') : undefined;
  const stdio: StdioOptions = fd !== undefined ? ['ignore', fd, fd] : o.pipe ? ['ignore', 'pipe', 'pipe'] : 'ignore';
  try {
    return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio, cwd: o.cwd, env: { ...process.env, ...o.env } });
  } finally {
    if (fd !== undefined) fs.closeSync(fd); // the child has its own copy
  }
}

export function which(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, bin);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/** Why the lab cannot run here, or undefined when it can; `needs` are further binaries. */
export function labUnavailable(needs: string[] = []): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces (run as root; CI does)';
  if (!which('ip')) return 'needs iproute2 (apt-get install iproute2)';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch {
    return 'iproute2 "ip netns" does not work here (no network namespace support)';
  }
  for (const b of needs) if (!which(b)) return `needs ${b} (Debian package; .ci/run installs it)`;
  return undefined;
}

/** Kill whatever runs in a namespace (only lab processes live there), then delete it. */
function removeNs(ns: string): void {
  const pids = sh('ip', ['netns', 'pids', ns], { allowFail: true }).split(/\s+/).filter(Boolean);
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
  sh('ip', ['netns', 'del', ns], { allowFail: true });
}

export interface LabOptions {
  /** Prefix of generated namespace names (`<name><pid><n>`, client `…c`): concurrent test files never collide. */
  name?: string;
  /** Fixed namespace names instead; whatever a killed earlier run left under them is removed first. */
  names?: { server: string; client: string };
  /** The bridge network's first three octets; the server is <subnet>.1 on br0. */
  subnet?: string;
  /** Prefix length of br0's network (a /16 holds a storm's pool). */
  prefixLen?: number;
  /** MAC address of the client's eth0 (the kernel picks one otherwise). */
  clientMac?: string;
  /** Addresses of the client's eth0, all with `prefixLen`, added in one `ip -batch`. */
  clientAddrs?: string[];
  /** A default route out of the client's eth0, so its broadcasts to 255.255.255.255 leave there. */
  clientDefaultRoute?: boolean;
  /** Further bridges in the server namespace: name -> the server's address/prefix on it. */
  bridges?: Record<string, string>;
  /** Further hosts: each a namespace of its own with eth0 on a bridge (br0 unless named). */
  hosts?: Array<{ ns: string; bridge?: string; mac?: string; addr?: string }>;
  /**
   * A veth straight from the server namespace (r0) to the client namespace (rl0), not bridged:
   * a subnet behind a router, as a DHCP relay has. Routes go to the given prefixes via the
   * other side's first address.
   */
  routed?: { server: string; client: string[]; serverRoutes?: string[]; clientRoutes?: string[] };
  /**
   * IPv6 on br0: the server gets <prefix>1/64 (no duplicate address detection, so it is usable
   * at once). Clients get theirs from the server under test (DHCPv6, SLAAC).
   */
  ipv6?: { prefix: string };
  /** false: br0 holds no IPv4 address (an IPv6-only link). Default true. */
  ipv4?: boolean;
}

export interface Lab {
  ns: string;
  clientNs: string;
  /** The namespaces of `opts.hosts`, in order. */
  hostNs: string[];
  bridge: string;
  serverIp: string;
  /** The server's IPv6 address on br0 (`opts.ipv6`), else ''. */
  serverIp6: string;
  clientIf: string;
  prefix: string;
  taps: string[];
  addTap(): string;
  /** Run a long-lived process inside the server namespace (or `opts.ns`); `destroy()` kills it. */
  spawnInNs(cmd: string, args: string[], opts?: { ns?: string; log?: string; pipe?: boolean; env?: NodeJS.ProcessEnv; cwd?: string }): ChildProcess;
  destroy(): void;
}

let counter = 0;

const BRIDGE_ARGS = ['type', 'bridge', 'stp_state', '0', 'forward_delay', '0'];

export function createLab(opts: LabOptions = {}): Lab {
  const id = `${process.pid % 10000}${counter++}`;
  const ns = opts.names?.server ?? `${opts.name ?? 'phlab'}${id}`;
  const clientNs = opts.names?.client ?? `${ns}c`;
  const hostNs = (opts.hosts ?? []).map((h) => h.ns);
  const all = [ns, clientNs, ...hostNs];
  const subnet = opts.subnet ?? '10.77.0';
  const len = opts.prefixLen ?? 24;
  const bridge = 'br0';
  const procs: ChildProcess[] = [];
  const taps: string[] = [];
  // Leftovers of an earlier, killed run under the same names (fixed names, or a reused pid).
  for (const n of all) if (fs.existsSync(`/run/netns/${n}`)) removeNs(n);
  const lab: Lab = {
    ns,
    clientNs,
    hostNs,
    bridge,
    serverIp: `${subnet}.1`,
    serverIp6: opts.ipv6 ? `${opts.ipv6.prefix}1` : '',
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
      const p = spawnIn(o.ns ?? ns, cmd, args, o);
      procs.push(p);
      return p;
    },
    destroy() {
      for (const p of procs) {
        if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      }
      // Anything still running inside the namespaces (dhclient, QEMU) goes too.
      for (const n of all) removeNs(n);
    },
  };
  const ip = (n: string, ...a: string[]) => sh('ip', ['-n', n, ...a]);
  /** A veth from bridge `br` in the server namespace to eth0 of namespace `peer`. */
  const attach = (peer: string, outer: string, br: string, mac?: string) => {
    ip(ns, 'link', 'add', outer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer);
    ip(ns, 'link', 'set', outer, 'master', br, 'up');
    if (mac) ip(peer, 'link', 'set', 'eth0', 'address', mac);
    ip(peer, 'link', 'set', 'eth0', 'up');
  };
  try {
    for (const n of all) {
      sh('ip', ['netns', 'add', n]);
      ip(n, 'link', 'set', 'lo', 'up');
    }
    for (const [br, addr] of Object.entries({ [bridge]: `${lab.serverIp}/${len}`, ...opts.bridges })) {
      ip(ns, 'link', 'add', br, ...BRIDGE_ARGS);
      if (br !== bridge || opts.ipv4 !== false) ip(ns, 'addr', 'add', addr, 'dev', br);
      ip(ns, 'link', 'set', br, 'up');
    }
    if (opts.ipv6) ip(ns, '-6', 'addr', 'add', `${lab.serverIp6}/64`, 'dev', bridge, 'nodad');
    // A plain Linux client host on a veth pair.
    attach(clientNs, 'vc0', bridge, opts.clientMac);
    if (opts.clientAddrs?.length) sh('ip', ['-n', clientNs, '-batch', '-'], { input: opts.clientAddrs.map((a) => `addr add ${a}/${len} dev eth0\n`).join('') });
    if (opts.clientDefaultRoute) ip(clientNs, 'route', 'add', 'default', 'dev', 'eth0');
    (opts.hosts ?? []).forEach((h, i) => {
      attach(h.ns, `vh${i}`, h.bridge ?? bridge, h.mac);
      if (h.addr) ip(h.ns, 'addr', 'add', h.addr, 'dev', 'eth0');
    });
    const r = opts.routed;
    if (r) {
      ip(ns, 'link', 'add', 'r0', 'type', 'veth', 'peer', 'name', 'rl0', 'netns', clientNs);
      ip(ns, 'addr', 'add', r.server, 'dev', 'r0');
      ip(ns, 'link', 'set', 'r0', 'up');
      for (const a of r.client) ip(clientNs, 'addr', 'add', a, 'dev', 'rl0');
      ip(clientNs, 'link', 'set', 'rl0', 'up');
      const via = (cidr: string) => cidr.split('/')[0]!;
      for (const to of r.serverRoutes ?? []) ip(ns, 'route', 'add', to, 'via', via(r.client[0]!));
      for (const to of r.clientRoutes ?? []) ip(clientNs, 'route', 'add', to, 'via', via(r.server));
    }
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

/**
 * A dhclient -6 script (-sf) that configures the leased address in the client's namespace and
 * nothing else. Debian's own dhclient-script would also rewrite /etc/resolv.conf, and a
 * namespace shares the host's file system: the host would lose its name server.
 */
export function writeDhclient6Script(dir: string): string {
  const file = path.join(dir, 'dhclient6.sh');
  fs.writeFileSync(
    file,
    `#!/bin/sh
case "$reason" in
  BOUND6|RENEW6|REBIND6|REBOOT6) [ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/\${new_ip6_prefixlen:-128}" dev "$interface" nodad ;;
  RELEASE6|EXPIRE6|STOP6) [ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/\${old_ip6_prefixlen:-128}" dev "$interface" 2>/dev/null ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  return file;
}
