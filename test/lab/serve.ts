/**
 * `pxeherd serve` (the built CLI) inside a lab namespace, as the e2e suites run it: started with
 * its log in a file, awaited until the named services say they listen (or failing with the log
 * when the process exits first), stopped with SIGTERM and, after 5 s, SIGKILL.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { waitFor, type Lab } from './lab.js';
import { CLI } from '../helpers/cli.js';

/** Services whose "<name> listening" log line `startServe` waits for. */
export type ServeService = 'dhcp' | 'dhcp6' | 'tftp' | 'http' | 'provisiond';

export async function startServe(lab: Lab, config: string, log: string, services: ServeService[] = ['dhcp', 'tftp', 'http'], timeoutMs = 30_000): Promise<ChildProcess> {
  const proc = lab.spawnInNs(process.execPath, [CLI, 'serve', '--config', config], { log });
  await waitFor(`pxeherd serve to listen (${services.join(', ')})`, timeoutMs, () => {
    const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '';
    if (proc.exitCode !== null) throw new Error(`pxeherd serve exited (code ${proc.exitCode}): ${text}`);
    return services.every((s) => new RegExp(`\\b${s} listening`).test(text));
  });
  return proc;
}

/** Stop a server started by `startServe`; `ip netns exec` passes the signal on to pxeherd. */
export async function stopServe(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const done = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
}
