/**
 * `pxeherd serve` (the built CLI) inside a lab namespace, as the e2e suites run it: started with
 * its log in a file, awaited until the named services say they listen (or failing with the log
 * when the process exits first), stopped with SIGTERM and, after 5 s, SIGKILL.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor, type Lab } from './lab.js';
import { CLI } from '../helpers/cli.js';

/** Services whose "<name> listening" log line `startServe` waits for. */
export type ServeService = 'dhcp' | 'dhcp6' | 'tftp' | 'http' | 'provisiond';

/**
 * `ns`: the namespace to run in (default the lab's own). `failOn`: a log pattern that means the
 * server will never get ready (fail at once with the log instead of waiting out timeoutMs).
 */
export async function startServe(
  lab: Lab,
  config: string,
  log: string,
  services: ServeService[] = ['dhcp', 'tftp', 'http'],
  timeoutMs = 30_000,
  o: { ns?: string; failOn?: RegExp } = {},
): Promise<ChildProcess> {
  const proc = lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', config], { log, ns: o.ns });
  await waitFor(`pxeherd serve to listen (${services.join(', ')})`, timeoutMs, () => {
    const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
    if (proc.exitCode !== null) throw new Error(`pxeherd serve exited (code ${proc.exitCode}): ${text.slice(-4000)}`);
    if (o.failOn?.test(text)) throw new Error(`pxeherd serve will not get ready (${o.failOn}): ${text.slice(-4000)}`);
    return services.every((s) => new RegExp(`\\b${s} listening`).test(text));
  });
  return proc;
}

/** What one of several `pxeherd serve` on one PostgreSQL differs in (see startPgServe). */
export interface PgServeOptions {
  /** Directory for its config, log and state directory. */
  dir: string;
  /** server_id, and the file names under dir. */
  id: string;
  /** Namespace it runs in. */
  ns: string;
  /** postgres:// URL of the shared database. */
  url: string;
  /** Its IPv4 address (`address:`). */
  address: string;
  /** More top-level YAML lines: `dhcp: {...}`, `dhcp6: {...}`, `interface: ...`, `log: ...`. */
  yaml: string;
  services?: ServeService[];
  timeoutMs?: number;
  failOn?: RegExp;
}

/**
 * One of several `pxeherd serve` processes sharing one PostgreSQL (issue 19's tests): its config
 * written under dir (TFTP, provisiond and admin on free ports, HTTP on 8080 of its own address),
 * started in its namespace and awaited until its services listen. The caller kills it.
 */
export async function startPgServe(lab: Lab, o: PgServeOptions): Promise<{ proc: ChildProcess; log: string }> {
  const config = path.join(o.dir, `${o.id}.yaml`);
  fs.writeFileSync(
    config,
    `statedir: ${path.join(o.dir, o.id)}
database: "${o.url}"
server_id: ${o.id}
address: ${o.address}
tftp: { port: 0 }
http: { port: 8080 }
provisiond: { port: 0 }
admin: { port: 0 }
${o.yaml.trim()}
`,
  );
  const log = path.join(o.dir, `${o.id}.log`);
  const proc = await startServe(lab, config, log, o.services ?? ['dhcp'], o.timeoutMs ?? 30_000, { ns: o.ns, failOn: o.failOn });
  return { proc, log };
}

/** Stop a server started by `startServe`; `ip netns exec` passes the signal on to pxeherd. */
export async function stopServe(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
}
