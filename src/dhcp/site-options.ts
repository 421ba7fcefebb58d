/**
 * Site options (`dhcp.options`, `dhcp.subnets[].options`): the DHCP options an admin adds to
 * the ones pxeherd computes itself — NTP servers, MTU, domain search list, static routes, or
 * any code as raw bytes. Pure: config values in, option bytes out, or an error that names the
 * key and says what is expected. The handler sends each one only to clients that list its code
 * in their parameter request list (option 55), as RFC 2131 §4.3.1 has it.
 */
import { ipToInt, prefixToMask } from './ip.js';
import { OPTION_NAMES } from './options.js';

export type SiteOptionValue = string | number | string[];

/** How a known option's value is written. */
type Kind = 'ips' | 'u16' | 'i32' | 'text' | 'domains' | 'routes' | 'u8';

interface Known {
  kind: Kind;
  min?: number;
  max?: number;
}

/**
 * Options with a type (RFC 2132 unless noted), by code; their names are OPTION_NAMES'. Any
 * other code: text, an IP list or hex:.
 */
const KNOWN: Record<number, Known> = {
  2: { kind: 'i32' }, // time-offset
  4: { kind: 'ips' }, // time-servers
  7: { kind: 'ips' }, // log-servers
  17: { kind: 'text' }, // root-path
  23: { kind: 'u8', min: 1, max: 255 }, // default-ip-ttl
  26: { kind: 'u16', min: 68, max: 65535 }, // interface-mtu
  33: { kind: 'ips' }, // static-routes
  40: { kind: 'text' }, // nis-domain
  41: { kind: 'ips' }, // nis-servers
  42: { kind: 'ips' }, // ntp-servers
  44: { kind: 'ips' }, // netbios-name-servers
  69: { kind: 'ips' }, // smtp-servers
  119: { kind: 'domains' }, // domain-search, RFC 3397
  121: { kind: 'routes' }, // classless-static-routes, RFC 3442
  252: { kind: 'text' }, // wpad-url
};

const CODE_BY_NAME = new Map(Object.entries(OPTION_NAMES).map(([code, name]) => [name, Number(code)]));

/**
 * Options pxeherd writes itself (from other keys, or from the protocol): an entry for one of
 * them would contradict what the server sends, so it is refused with the key to use instead.
 */
const MANAGED: Record<number, string> = {
  1: 'dhcp.netmask',
  3: 'dhcp.router',
  6: 'dhcp.dns',
  12: 'the node name (pxeherd node set name)',
  15: 'dhcp.domain',
  28: 'dhcp.netmask (the broadcast address follows from it)',
  43: 'the PXE boot logic',
  50: 'the protocol',
  51: 'dhcp.lease_seconds',
  52: 'the protocol',
  53: 'the protocol',
  54: 'the protocol',
  55: 'the client',
  56: 'the protocol',
  57: 'the client',
  58: 'dhcp.lease_seconds',
  59: 'dhcp.lease_seconds',
  60: 'the PXE boot logic',
  61: 'the client',
  66: 'the PXE boot logic',
  67: 'dhcp.boot_files',
  77: 'the client',
  82: 'the relay agent',
  93: 'the client',
  94: 'the client',
  97: 'the PXE boot logic',
  175: 'the PXE boot logic',
};

export class SiteOptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SiteOptionError';
  }
}

function ipList(where: string, v: SiteOptionValue): Buffer {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : undefined;
  if (!list || list.length === 0) throw new SiteOptionError(`${where}: expected a list of IPv4 addresses such as [10.0.0.1]`);
  const out = Buffer.alloc(list.length * 4);
  list.forEach((ip, i) => {
    const n = ipToInt(ip);
    if (n === undefined) throw new SiteOptionError(`${where}: ${JSON.stringify(ip)} is not an IPv4 address`);
    out.writeUInt32BE(n, i * 4);
  });
  return out;
}

function integer(where: string, v: SiteOptionValue, min: number, max: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new SiteOptionError(`${where}: expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

function text(where: string, v: SiteOptionValue): Buffer {
  if (typeof v !== 'string' || v === '') throw new SiteOptionError(`${where}: expected a non-empty string`);
  // Printable ASCII only: a DHCP client copies these into shell variables and config files.
  if (!/^[\x20-\x7e]+$/.test(v)) throw new SiteOptionError(`${where}: only printable ASCII is allowed (use hex: for other bytes)`);
  return Buffer.from(v, 'latin1');
}

const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** RFC 1035 §3.1 names, one after the other (RFC 3397), without compression. */
function domains(where: string, v: SiteOptionValue): Buffer {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : [];
  if (list.length === 0) throw new SiteOptionError(`${where}: expected a list of domain names such as [cluster.example.org]`);
  const parts: Buffer[] = [];
  for (const d of list) {
    const labels = d.replace(/\.$/, '').split('.');
    if (d.length > 253 || labels.some((l) => !LABEL.test(l))) throw new SiteOptionError(`${where}: ${JSON.stringify(d)} is not a domain name`);
    for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'ascii'));
    parts.push(Buffer.from([0]));
  }
  return Buffer.concat(parts);
}

/** RFC 3442: "NETWORK/PREFIX via GATEWAY" -> prefix, significant network octets, gateway. */
function routes(where: string, v: SiteOptionValue): Buffer {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
  if (list.length === 0) throw new SiteOptionError(`${where}: expected routes such as ["10.2.0.0/16 via 10.0.0.254", "0.0.0.0/0 via 10.0.0.1"]`);
  const parts: Buffer[] = [];
  for (const r of list) {
    const m = /^\s*(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})\s+via\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(r);
    const net = m ? ipToInt(m[1]!) : undefined;
    const gw = m ? ipToInt(m[3]!) : undefined;
    const prefix = m ? Number(m[2]) : NaN;
    if (!m || net === undefined || gw === undefined || prefix > 32) throw new SiteOptionError(`${where}: ${JSON.stringify(r)} is not "NETWORK/PREFIX via GATEWAY"`);
    if ((net & ~prefixToMask(prefix)) >>> 0 !== 0) throw new SiteOptionError(`${where}: ${r}: ${m[1]} has host bits set for /${prefix}`);
    const octets = Math.ceil(prefix / 8);
    const b = Buffer.alloc(1 + octets + 4);
    b[0] = prefix;
    for (let i = 0; i < octets; i++) b[1 + i] = (net >>> (24 - 8 * i)) & 255;
    b.writeUInt32BE(gw, 1 + octets);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

function encodeKnown(where: string, k: Known, v: SiteOptionValue): Buffer {
  switch (k.kind) {
    case 'ips':
      return ipList(where, v);
    case 'u8':
      return Buffer.from([integer(where, v, k.min ?? 0, k.max ?? 255)]);
    case 'u16': {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(integer(where, v, k.min ?? 0, k.max ?? 65535));
      return b;
    }
    case 'i32': {
      const b = Buffer.alloc(4);
      b.writeInt32BE(integer(where, v, -2147483648, 2147483647));
      return b;
    }
    case 'text':
      return text(where, v);
    case 'domains':
      return domains(where, v);
    case 'routes':
      return routes(where, v);
  }
}

/** An option by bare code: "hex:0a:00:00:01" raw bytes, a list of IPv4 addresses, or text. */
function encodeByCode(where: string, v: SiteOptionValue): Buffer {
  if (typeof v === 'string' && v.startsWith('hex:')) {
    const hex = v.slice(4).replace(/[:\s]/g, '');
    if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) throw new SiteOptionError(`${where}: "${v}" is not hex: followed by pairs of hex digits`);
    return Buffer.from(hex, 'hex');
  }
  if (Array.isArray(v)) return ipList(where, v);
  if (typeof v === 'number') throw new SiteOptionError(`${where}: a bare number is ambiguous for an option pxeherd does not know: write hex: bytes (e.g. "hex:00002328" for 9000 as 4 bytes)`);
  return text(where, v);
}

/**
 * Compile `dhcp.options` (name or code -> value) to option bytes by code, in the order given.
 * `key` names the config key in errors (dhcp.options, dhcp.subnets[0].options).
 */
export function compileSiteOptions(entries: Record<string, SiteOptionValue>, key = 'dhcp.options'): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const [name, value] of Object.entries(entries)) {
    const where = key ? `${key}.${name}` : name;
    let code: number;
    if (/^\d{1,3}$/.test(name)) {
      code = Number(name);
      if (code < 1 || code > 254) throw new SiteOptionError(`${where}: option codes run from 1 to 254`);
    } else {
      const named = CODE_BY_NAME.get(name);
      if (named !== undefined && MANAGED[named]) throw new SiteOptionError(`${where}: option ${named} (${name}) is written by pxeherd from ${MANAGED[named]}; set it there`);
      if (named === undefined || !KNOWN[named]) {
        const names = Object.keys(KNOWN).map((c) => OPTION_NAMES[Number(c)]);
        throw new SiteOptionError(`${where}: unknown option name; use one of ${names.join(', ')}, or a code number (1-254)`);
      }
      code = named;
    }
    const known = KNOWN[code];
    const bytes = known ? encodeKnown(where, known, value) : encodeByCode(where, value);
    const managedBy = MANAGED[code];
    if (managedBy) throw new SiteOptionError(`${where}: option ${code} (${OPTION_NAMES[code] ?? 'reserved'}) is written by pxeherd from ${managedBy}; set it there`);
    if (bytes.length > 255 * 4) throw new SiteOptionError(`${where}: ${bytes.length} bytes is too long for a DHCP reply`);
    if (out.has(code)) throw new SiteOptionError(`${where}: option ${code} is given twice`);
    out.set(code, bytes);
  }
  return out;
}
