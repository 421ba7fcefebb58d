import { readFileSync } from 'node:fs';
import { parseMac } from '../nodes/mac.js';

/**
 * MAC for an IPv4 address from the kernel's neighbour table (/proc/net/arp text). Pure so it
 * is tested on sample text; backends use it after the lease table (arpLookup reads the file).
 *   IP address       HW type     Flags       HW address            Mask     Device
 *   10.0.0.5         0x1         0x2         52:54:00:12:34:56     *        br0
 * Incomplete entries (flags 0x0, all-zero address) are not answers.
 */
export function macFromArpTable(text: string, ip: string): string | undefined {
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[0] !== ip) continue;
    const flags = parseInt(f[2]!, 16);
    if (!(flags & 0x2)) continue; // ATF_COM: completed entry
    const m = parseMac(f[3]!);
    if (m.ok && m.mac !== '00:00:00:00:00:00') return m.mac;
  }
  return undefined;
}

export function arpLookup(ip: string, file = '/proc/net/arp'): string | undefined {
  try {
    return macFromArpTable(readFileSync(file, 'utf8'), ip);
  } catch {
    return undefined;
  }
}
