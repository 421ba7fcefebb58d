import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../util/log.js';

export const RA_HELPER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'ra', 'pxeherd-ra');

/**
 * What the advertisement says when DHCPv6 serves the link (RFC 4861 §4.2, §4.6.2): M and O
 * send hosts to DHCPv6 for addresses and configuration; the prefix is on-link (L) and, with
 * `autonomous`, usable for SLAAC (A). Without it: the empty advertisement described below.
 */
export interface RaAdvert {
  managed: boolean;
  other: boolean;
  prefix?: string;
  autonomous?: boolean;
  /** Valid and preferred lifetime of the prefix. */
  lifetimeSeconds?: number;
}

export function raArgs(a: RaAdvert | undefined): string[] {
  if (!a) return [];
  const out: string[] = [];
  if (a.managed) out.push('-M');
  if (a.other) out.push('-O');
  if (a.prefix) out.push('-p', a.prefix, ...(a.autonomous ? ['-A'] : []), '-l', String(a.lifetimeSeconds ?? 3600));
  return out;
}

/**
 * The router-advertisement helper (native/ra): started with the DHCP server on its interface
 * so iPXE's IPv6 configuration finishes at once instead of timing out. Optional: without it
 * boots work, each iPXE start just takes ~16 s longer.
 */
export function startRaHelper(iface: string, log: Logger, helper = RA_HELPER, adv?: RaAdvert): { stop(): void } | undefined {
  if (!iface) {
    log.info('dhcp.ipv6_ra: no `interface` configured, not answering IPv6 router solicitations (iPXE may wait ~16 s for IPv6)');
    return undefined;
  }
  if (!fs.existsSync(helper)) {
    log.warn(`dhcp.ipv6_ra: ${helper} is not built (make -C native): iPXE will wait ~16 s for IPv6 on each boot`);
    return undefined;
  }
  let child: ChildProcess | undefined;
  let stopped = false;
  const run = () => {
    child = spawn(helper, [...raArgs(adv), iface], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n').filter(Boolean)) log.info({ service: 'ra' }, line);
    });
    child.on('exit', (code, sig) => {
      if (stopped) return;
      log.warn({ service: 'ra', code, signal: sig }, `router-advertisement helper exited (${code ?? sig}); not restarted`);
    });
  };
  run();
  return {
    stop() {
      stopped = true;
      child?.kill('SIGTERM');
    },
  };
}
