/**
 * MAC of an IPv6 neighbour from the kernel's table (`ip -6 neigh show`; IPv6 has no
 * /proc/net/arp). Only used for a client whose DUID and link-local address carry no MAC, so
 * the cost of running `ip` stays off the common path.
 *   fe80::a:b:c:d dev br0 lladdr 52:54:00:12:34:56 REACHABLE
 */
import { execFileSync } from 'node:child_process';
import { ip6ToBuffer } from './ip6.js';

export function macFromNeighbourTable(text: string, address: string): string | undefined {
  const want = ip6ToBuffer(address);
  if (!want) return undefined;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const i = f.indexOf('lladdr');
    if (i < 0 || f.includes('FAILED') || f.includes('INCOMPLETE')) continue;
    const a = ip6ToBuffer(f[0] ?? '');
    const mac = (f[i + 1] ?? '').toLowerCase();
    if (a && a.equals(want) && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) && mac !== '00:00:00:00:00:00') return mac;
  }
  return undefined;
}

export function neighbourMac(address: string): string | undefined {
  const [addr, dev] = address.split('%') as [string, string | undefined];
  try {
    const out = execFileSync('ip', ['-6', 'neigh', 'show', addr, ...(dev ? ['dev', dev] : [])], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    return macFromNeighbourTable(out.split('\n').map((l) => `${addr} ${l}`).join('\n'), addr);
  } catch {
    return undefined;
  }
}
