/**
 * IPv4 helpers for the DHCP server. Addresses travel as dotted strings at the edges (config,
 * leases, events) and as unsigned 32-bit numbers inside pools, where arithmetic is needed.
 */

/** Dotted quad -> uint32; undefined unless exactly four decimal octets 0-255. Hot path: no regex. */
export function ipToInt(ip: string): number | undefined {
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return undefined;
    } else if (c === 46 && digits > 0 && dots < 3) {
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      return undefined;
    }
  }
  if (dots !== 3 || digits === 0) return undefined;
  return (n * 256 + octet) >>> 0;
}

export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function ipFromBuffer(buf: Buffer, offset = 0): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

export function ipToBuffer(ip: string): Buffer {
  const n = ipToInt(ip);
  if (n === undefined) throw new Error(`not an IPv4 address: "${ip}"`);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

export interface Cidr {
  network: number;
  prefix: number;
  mask: number;
}

export function parseCidr(text: string): Cidr | undefined {
  const [addr, len] = text.split('/');
  const a = ipToInt(addr ?? '');
  const prefix = Number(len);
  if (a === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) return undefined;
  const mask = prefixToMask(prefix);
  return { network: (a & mask) >>> 0, prefix, mask };
}

export function prefixToMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Prefix length of a dotted netmask (255.255.255.0 -> 24); undefined when not contiguous. */
export function maskToPrefix(mask: string): number | undefined {
  const n = ipToInt(mask);
  if (n === undefined) return undefined;
  for (let p = 0; p <= 32; p++) if (prefixToMask(p) === n) return p;
  return undefined;
}

export function inCidr(ip: number, c: Cidr): boolean {
  return ((ip & c.mask) >>> 0) === c.network;
}

export function cidrText(c: Cidr): string {
  return `${intToIp(c.network)}/${c.prefix}`;
}
