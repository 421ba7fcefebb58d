/**
 * The kernel's IPv4 neighbour (ARP) table against the number of machines this server talks to.
 * Linux keeps one table for every network namespace of the host; above gc_thresh2 (default 512)
 * it evicts entries after 5 s, and at gc_thresh3 (default 1024) it refuses new ones: the reply to
 * a further machine is dropped ("neighbour table overflow" in the kernel log). In a boot storm
 * those machines get no DHCP offer, no TFTP block, and give up. Seen in the two-server storm lab
 * (bench/storm-pg.ts): 1000 machines, both servers on one host, the second round lost 288-588
 * machines to "no Offer" while the kernel logged the overflow.
 */
import fs from 'node:fs';
import { ipToInt } from '../dhcp/ip.js';

export interface NeighbourLimits {
  thresh1: number;
  thresh2: number;
  thresh3: number;
}

const PROC = '/proc/sys/net/ipv4/neigh/default';

/** This host's limits, or nothing where they cannot be read (not Linux, /proc not mounted). */
export function readNeighbourLimits(read: (f: string) => string = (f) => fs.readFileSync(f, 'utf8')): NeighbourLimits | undefined {
  try {
    const n = (k: string) => Number(read(`${PROC}/gc_${k}`).trim());
    const l = { thresh1: n('thresh1'), thresh2: n('thresh2'), thresh3: n('thresh3') };
    return Object.values(l).every((v) => Number.isInteger(v) && v > 0) ? l : undefined;
  } catch {
    return undefined;
  }
}

/** Pure: how many addresses the DHCP ranges hold (an inverted or malformed range counts 0). */
export function rangeAddresses(ranges: Array<readonly [string, string] | undefined>): number {
  let total = 0;
  for (const r of ranges) {
    if (!r) continue;
    const a = ipToInt(r[0]);
    const b = ipToInt(r[1]);
    if (a !== undefined && b !== undefined && b >= a) total += b - a + 1;
  }
  return total;
}

/** Pure: limits with room for `machines` (thresh3 the next power of two at or above twice them, at least 1024). */
export function limitsFor(machines: number): NeighbourLimits {
  let t3 = 1024;
  while (t3 < machines * 2) t3 *= 2;
  return { thresh1: t3 / 4, thresh2: t3 / 2, thresh3: t3 };
}

/** Pure: `limits` as sysctl's name=value arguments. */
export function sysctlSettings(l: NeighbourLimits): string[] {
  return [`net.ipv4.neigh.default.gc_thresh1=${l.thresh1}`, `net.ipv4.neigh.default.gc_thresh2=${l.thresh2}`, `net.ipv4.neigh.default.gc_thresh3=${l.thresh3}`];
}

/**
 * Pure: the warning for an admin when `machines` (the DHCP ranges' addresses, or the known nodes
 * if more) exceed the soft limit, with the sysctl that lifts it (limitsFor); nothing when they fit.
 */
export function neighbourTableAdvice(machines: number, l: NeighbourLimits): string | undefined {
  if (machines <= l.thresh2) return undefined;
  const set = `sysctl -w ${sysctlSettings(limitsFor(machines)).join(' ')}`;
  return (
    `this server may talk to ${machines} machines, but the kernel's neighbour (ARP) table starts evicting above ${l.thresh2} entries and refuses new ones at ${l.thresh3} ` +
    `(net.ipv4.neigh.default.gc_thresh2/3, one table for the whole host): in a boot storm, replies to the machines beyond it are dropped ("neighbour table overflow" in dmesg). ` +
    `Raise it: ${set} (and in /etc/sysctl.d/ to keep it)`
  );
}
