import os from 'node:os';

/** A peer's address as nodes are known by it: IPv4-mapped IPv6 (::ffff:10.0.0.5) is the IPv4 node. */
export function peerIp(addr: string | undefined): string | undefined {
  if (!addr) return undefined;
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** A dotted-quad IPv4 address, each part 0-255 without leading zeros. */
export const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The address nodes reach the master at: config.address, else the interface's, else the first non-loopback IPv4. */
export function resolveServerAddress(address: string, iface: string): { address: string; source: string } {
  if (address) return { address, source: 'address' };
  const nets = os.networkInterfaces();
  if (iface) {
    const a = (nets[iface] ?? []).find((n) => n.family === 'IPv4');
    if (a) return { address: a.address, source: `interface ${iface}` };
  }
  for (const [name, list] of Object.entries(nets)) {
    const a = (list ?? []).find((n) => n.family === 'IPv4' && !n.internal);
    if (a) return { address: a.address, source: `first interface with IPv4 (${name})` };
  }
  return { address: '127.0.0.1', source: 'loopback (no other IPv4 address found)' };
}

/**
 * The IPv6 address nodes reach the master at: `address` when set, else the first global
 * (not link-local) IPv6 address of `iface`, else of any non-loopback interface.
 */
export function resolveServerAddress6(address: string, iface: string): { address: string; source: string } | undefined {
  if (address) return { address, source: 'dhcp6.address' };
  const nets = os.networkInterfaces();
  const global = (n: os.NetworkInterfaceInfo) => n.family === 'IPv6' && !n.internal && !/^fe[89ab]/i.test(n.address);
  if (iface) {
    const a = (nets[iface] ?? []).find(global);
    return a ? { address: a.address, source: `interface ${iface}` } : undefined;
  }
  for (const [name, list] of Object.entries(nets)) {
    const a = (list ?? []).find(global);
    if (a) return { address: a.address, source: `first interface with a global IPv6 address (${name})` };
  }
  return undefined;
}

/** The MAC of `iface` (or of the first interface that has one), for the DHCPv6 server DUID. */
export function interfaceMac(iface: string): string | undefined {
  const nets = os.networkInterfaces();
  const ok = (m: string | undefined) => (m && m !== '00:00:00:00:00:00' ? m : undefined);
  if (iface) return ok(nets[iface]?.[0]?.mac);
  for (const list of Object.values(nets)) {
    const m = ok(list?.find((n) => !n.internal)?.mac);
    if (m) return m;
  }
  return undefined;
}
