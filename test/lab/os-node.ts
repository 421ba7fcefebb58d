/**
 * What the e2e suites that boot a real OS in QEMU share (stateless, capture, disk install):
 * one lab directory with a pxeherd config serving the lab bridge, the shared Debian image (or
 * the offline one), `pxeherd` run inside the lab namespace (nodes are reachable only there),
 * `pxeherd exec` on a node with its output stripped of the "node: " prefix, the store opened
 * for one look at a time, and booting a machine until its OS has checked in.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createLab, run, tmpDir, waitFor, type Lab } from './lab.js';
import { startVm, type Vm, type VmOptions } from './qemu.js';
import { sharedDebianImage, cloneSharedImage } from './image.js';
import { buildOfflineImage, mirrorReachable } from './offline-image.js';
import { CLI } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';

/** How long a machine may take to reach its OS under TCG, and its memory (the squashfs is held in RAM). */
export const OS_BOOT_MS = Number(process.env.PXEHERD_E2E_OS_BOOT_MS ?? 900_000);
export const OS_MEM_MB = Number(process.env.PXEHERD_E2E_OS_MEM_MB ?? 1536);

/** A suite's lab: the namespaces, its temporary directory, config and state directory. */
export interface OsLab {
  lab: Lab;
  dir: string;
  config: string;
  statedir: string;
}

/** The config every OS suite serves the lab with: full DHCP on br0, TFTP, HTTP on 8080. */
export function writeLabConfig(c: OsLab): void {
  fs.writeFileSync(
    c.config,
    `statedir: ${c.statedir}
interface: br0
address: ${c.lab.serverIp}
dhcp: { mode: full, range: [10.77.0.100, 10.77.0.200], router: 10.77.0.1, dns: [10.77.0.1], lease_seconds: 600 }
tftp: { port: 69 }
http: { port: 8080 }
provisiond: { port: 0 }
admin: { port: 0 }
nodescripts: { timeout_seconds: 60 }
`,
  );
}

/** A new lab (namespaces named after `name`) with its directory and config. */
export function createOsLab(o: { name: string; dirPrefix: string }): OsLab {
  const dir = tmpDir(o.dirPrefix);
  const c: OsLab = { dir, statedir: path.join(dir, 'var'), config: path.join(dir, 'pxeherd.yaml'), lab: undefined as unknown as Lab };
  fs.mkdirSync(c.statedir, { recursive: true });
  c.lab = createLab({ name: o.name });
  writeLabConfig(c);
  return c;
}

/**
 * The run's shared Debian image cloned into the lab's state directory, or, with no Debian
 * mirror, the offline image (vnfs import of this machine's packages); the config is written
 * again afterwards (the clone writes its own). Returns the image's current revision.
 */
export async function installLabImage(c: OsLab, name: string, say: (m: string) => void): Promise<number> {
  if (mirrorReachable()) {
    const img = await sharedDebianImage();
    cloneSharedImage(img, c.dir);
    say(`shared image ${img.name} r${img.rev} (${img.buildSeconds ? `built in ${img.buildSeconds} s` : "from this run's cache"})`);
  } else {
    buildOfflineImage({ dir: c.dir, config: c.config, name });
    say(`offline image ${name} (vnfs import of this machine's Debian packages)`);
  }
  writeLabConfig(c);
  const rev = withStore(c, (s) => s.vnfs.get(name)?.currentRev);
  if (!rev) throw new Error(`the lab image ${name} has no current revision`);
  return rev;
}

/** One look at the store: opened, read, closed (the server holds it too). */
export function withStore<T>(c: Pick<OsLab, 'statedir'>, fn: (s: Store) => T): T {
  const s = Store.open(c.statedir);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

/** A node's events since `since`, oldest first. */
export function eventsOf(c: Pick<OsLab, 'statedir'>, node: string, since: number): { kind: string; detail: Record<string, unknown> }[] {
  return withStore(c, (s) => s.events.query({ node, since, order: 'asc', limit: 10000 })).map((e) => ({ kind: e.kind, detail: (e.detail ?? {}) as Record<string, unknown> }));
}

/** `pxeherd ARGS` inside the lab namespace; a failure is a result with its exit code, never a throw. */
export async function cliInNs(c: OsLab, args: string[], o: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    // The config through the environment: after exec's `--`, --config would be part of the command.
    const r = await run(process.execPath, [CLI, ...args], { ns: c.lab.ns, timeoutMs: o.timeoutMs ?? 180_000, env: { ...process.env, PXEHERD_CONFIG: c.config, ...o.env } });
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
  }
}

/**
 * `pxeherd exec NODE -- COMMAND` (over SSH with the host key the master keeps): `out` is the
 * node's standard output without the "NODE: " prefix. The words are joined by one blank on
 * the node, as exec does: quote a shell command as one word.
 */
export async function execOnNode(c: OsLab, node: string, command: string | string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await cliInNs(c, ['exec', node, '--connect-timeout', '20', '--timeout', '150', '--', ...(typeof command === 'string' ? [command] : command)]);
  const strip = (s: string) => s.split('\n').filter((l) => l.startsWith(`${node}: `)).map((l) => l.slice(node.length + 2)).join('\n');
  return { code: r.code, out: strip(r.stdout), err: r.stderr };
}

/** Until the node's state is ready and its OS sent its first check-in since `since`; the console tail on a timeout. */
export async function waitForOsCheckin(c: OsLab, vm: Vm, node: string, since: number, ms = OS_BOOT_MS): Promise<void> {
  await waitFor(
    `${node}'s OS to check in`,
    ms,
    () =>
      withStore(c, (s) => {
        const n = s.nodes.byName(node);
        const ev = s.events.query({ node, since, kind: 'node.checkin', limit: 10 });
        return n?.state === 'ready' && ev.some((e) => (e.detail as { first?: boolean }).first === true);
      }),
    1000,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}; console tail:\n${vm.console().slice(-4000)}`);
  });
}

/**
 * Boot a machine stateless until its OS checked in (switch_root seen on the console, state
 * ready, the first node.checkin); the VM keeps running, and is killed when the boot fails.
 */
export async function bootToOs(
  c: OsLab,
  o: { name: string; mac: string; node: string; firmware?: VmOptions['firmware']; say?: (m: string) => void },
): Promise<{ vm: Vm; seconds: number }> {
  const since = Date.now();
  const vm = startVm({ lab: c.lab, name: o.name, mac: o.mac, firmware: o.firmware ?? 'bios', memMb: OS_MEM_MB, dir: c.dir });
  try {
    await vm.waitForConsole(/pxeherd-stage1: switching root to \/newroot \(\/sbin\/init\)/, OS_BOOT_MS);
    o.say?.(`${o.name}: switch_root after ${((Date.now() - vm.started) / 1000).toFixed(0)} s`);
    await waitForOsCheckin(c, vm, o.node, since);
    const seconds = (Date.now() - vm.started) / 1000;
    o.say?.(`${o.name}: OS checked in ${seconds.toFixed(0)} s after QEMU started`);
    return { vm, seconds };
  } catch (e) {
    vm.kill();
    throw e;
  }
}
