/**
 * IPv6 addresses as text, 16-byte buffers and bigints (for ranges). Pure; parse returns
 * undefined for anything that is not an address, never throws.
 */
import { isIPv6 } from 'node:net';

/** 16 bytes of an IPv6 address in text form (with `::`, and a dotted IPv4 tail), or undefined. */
export function ip6ToBuffer(text: string): Buffer | undefined {
  const s = text.replace(/%.*$/, ''); // zone (fe80::1%br0) is not part of the address
  if (!isIPv6(s)) return undefined;
  let head = s;
  let v4: number[] = [];
  const dot = s.lastIndexOf(':');
  if (s.includes('.')) {
    v4 = s.slice(dot + 1).split('.').map(Number);
    head = s.slice(0, dot + 1) + '0:0';
  }
  const [l, r] = head.split('::') as [string, string | undefined];
  const left = l ? l.split(':') : [];
  const right = r === undefined ? [] : r ? r.split(':') : [];
  const groups = r === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  if (groups.length !== 8) return undefined;
  const buf = Buffer.alloc(16);
  groups.forEach((g, i) => buf.writeUInt16BE(parseInt(g, 16), i * 2));
  if (v4.length === 4) Buffer.from(v4).copy(buf, 12);
  return buf;
}

/** RFC 5952 text: lower case, the longest run (2+) of zero groups as `::`. */
export function ip6FromBuffer(buf: Buffer, offset = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(offset + i * 2));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export function ip6ToBigInt(text: string): bigint | undefined {
  const b = ip6ToBuffer(text);
  return b ? BigInt(`0x${b.toString('hex')}`) : undefined;
}

export function bigIntToIp6(n: bigint): string {
  return ip6FromBuffer(Buffer.from(n.toString(16).padStart(32, '0'), 'hex'));
}

/** Canonical text of an address, or undefined when it is not one. */
export function normalizeIp6(text: string): string | undefined {
  const b = ip6ToBuffer(text);
  return b && ip6FromBuffer(b);
}

export interface Prefix6 {
  /** First address of the network. */
  network: bigint;
  length: number;
  text: string;
}

/** "fd00:77::/64" -> the network, or an error text. */
export function parsePrefix6(text: string): Prefix6 | string {
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(text);
  if (!m) return `"${text}" is not an IPv6 prefix such as fd00:77::/64`;
  const len = Number(m[2]);
  const n = ip6ToBigInt(m[1]!);
  if (n === undefined || len > 128) return `"${text}" is not an IPv6 prefix such as fd00:77::/64`;
  const mask = len === 0 ? 0n : ((1n << BigInt(len)) - 1n) << BigInt(128 - len);
  return { network: n & mask, length: len, text: `${bigIntToIp6(n & mask)}/${len}` };
}

export function inPrefix(p: Prefix6, n: bigint): boolean {
  return n >> BigInt(128 - p.length) === p.network >> BigInt(128 - p.length) || p.length === 0;
}

/** fe80::/10 */
export function isLinkLocal(buf: Buffer): boolean {
  return buf.length === 16 && buf[0] === 0xfe && (buf[1]! & 0xc0) === 0x80;
}

/**
 * The MAC inside a modified EUI-64 interface identifier (fe80::5054:ff:fe12:3456 ->
 * 52:54:00:12:34:56), which firmware (OVMF, iPXE) and Linux by default use for link-local
 * addresses; undefined for other identifiers (privacy, stable-privacy).
 */
export function macFromEui64(addr: Buffer): string | undefined {
  if (addr.length !== 16 || addr[11] !== 0xff || addr[12] !== 0xfe) return undefined;
  const mac = Buffer.from([addr[8]! ^ 0x02, addr[9]!, addr[10]!, addr[13]!, addr[14]!, addr[15]!]);
  if (mac[0]! & 1) return undefined; // a group address is no NIC's
  return macText(mac);
}

export function macText(b: Buffer): string {
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
