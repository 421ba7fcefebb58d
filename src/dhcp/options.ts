/**
 * DHCP option meanings: codes, names, and typed readers/writers over the raw bytes the codec
 * keeps. Readers return undefined for a malformed value instead of throwing, so a client that
 * sends a two-byte lease time is treated as not having sent one.
 */
import { ipFromBuffer, ipToBuffer } from './ip.js';

export const Opt = {
  SubnetMask: 1,
  Router: 3,
  DNS: 6,
  Hostname: 12,
  DomainName: 15,
  Broadcast: 28,
  VendorSpecific: 43,
  RequestedIp: 50,
  LeaseTime: 51,
  Overload: 52,
  MessageType: 53,
  ServerId: 54,
  ParamRequestList: 55,
  Message: 56,
  MaxMessageSize: 57,
  RenewalTime: 58,
  RebindingTime: 59,
  VendorClass: 60,
  ClientId: 61,
  TftpServer: 66,
  BootFile: 67,
  UserClass: 77,
  RelayAgent: 82,
  ClientArch: 93,
  ClientNdi: 94,
  ClientGuid: 97,
  Ipxe: 175,
} as const;

export const OPTION_NAMES: Record<number, string> = {
  1: 'subnet-mask',
  2: 'time-offset',
  3: 'router',
  4: 'time-servers',
  6: 'dns-server',
  7: 'log-servers',
  12: 'hostname',
  15: 'domain-name',
  17: 'root-path',
  23: 'default-ip-ttl',
  26: 'interface-mtu',
  28: 'broadcast-address',
  33: 'static-routes',
  40: 'nis-domain',
  41: 'nis-servers',
  42: 'ntp-servers',
  44: 'netbios-name-servers',
  43: 'vendor-encapsulated',
  50: 'requested-ip',
  51: 'lease-time',
  52: 'overload',
  53: 'message-type',
  54: 'server-id',
  55: 'parameter-request-list',
  56: 'message',
  57: 'max-message-size',
  58: 'renewal-time',
  59: 'rebinding-time',
  60: 'vendor-class',
  61: 'client-id',
  66: 'tftp-server',
  67: 'bootfile-name',
  69: 'smtp-servers',
  77: 'user-class',
  82: 'relay-agent-information',
  93: 'client-arch',
  94: 'client-ndi',
  97: 'client-guid',
  119: 'domain-search',
  121: 'classless-static-routes',
  175: 'ipxe-encapsulated',
  252: 'wpad-url',
};

export enum MessageType {
  Discover = 1,
  Offer = 2,
  Request = 3,
  Decline = 4,
  Ack = 5,
  Nak = 6,
  Release = 7,
  Inform = 8,
}

export const MESSAGE_NAMES: Record<number, string> = {
  1: 'DISCOVER',
  2: 'OFFER',
  3: 'REQUEST',
  4: 'DECLINE',
  5: 'ACK',
  6: 'NAK',
  7: 'RELEASE',
  8: 'INFORM',
};

/** PXE vendor sub-options inside option 43 (PXE spec 2.1, table 2-1). */
export const PxeSub = {
  DiscoveryControl: 6,
  BootServers: 8,
  BootMenu: 9,
  MenuPrompt: 10,
  BootItem: 71,
} as const;

/** iPXE sub-options inside option 175. */
export const IpxeSub = { NoPxeDhcp: 176, BusId: 177 } as const;

export type Options = Map<number, Buffer>;

export function getU8(o: Options, code: number): number | undefined {
  const v = o.get(code);
  return v && v.length === 1 ? v[0] : undefined;
}

export function getU16(o: Options, code: number): number | undefined {
  const v = o.get(code);
  return v && v.length === 2 ? v.readUInt16BE(0) : undefined;
}

export function getU32(o: Options, code: number): number | undefined {
  const v = o.get(code);
  return v && v.length === 4 ? v.readUInt32BE(0) : undefined;
}

export function getIp(o: Options, code: number): string | undefined {
  const v = o.get(code);
  return v && v.length === 4 ? ipFromBuffer(v) : undefined;
}

export function getIps(o: Options, code: number): string[] | undefined {
  const v = o.get(code);
  if (!v || v.length === 0 || v.length % 4 !== 0) return undefined;
  const out: string[] = [];
  for (let i = 0; i < v.length; i += 4) out.push(ipFromBuffer(v, i));
  return out;
}

/** Text option, cut at the first NUL (some clients NUL-terminate). */
export function getString(o: Options, code: number): string | undefined {
  const v = o.get(code);
  if (!v) return undefined;
  const nul = v.indexOf(0);
  return v.toString('latin1', 0, nul < 0 ? v.length : nul);
}

export function messageType(o: Options): MessageType | undefined {
  const t = getU8(o, Opt.MessageType);
  return t !== undefined && t >= 1 && t <= 8 ? (t as MessageType) : undefined;
}

/**
 * User classes (option 77). RFC 3004 says length-prefixed items; iPXE and others send the bare
 * string ("iPXE"). Decide by whether the length-prefixed reading consumes the value exactly.
 */
export function getUserClasses(o: Options): string[] {
  const v = o.get(Opt.UserClass);
  if (!v || v.length === 0) return [];
  const items: string[] = [];
  let i = 0;
  while (i < v.length) {
    const len = v[i]!;
    if (len === 0 || i + 1 + len > v.length) break;
    items.push(v.toString('latin1', i + 1, i + 1 + len));
    i += 1 + len;
  }
  if (i === v.length && items.length > 0) return items;
  return [getString(o, Opt.UserClass) ?? ''];
}

/** Client system architectures (option 93, RFC 4578): a list of 16-bit types; the first counts. */
export function getArchs(o: Options): number[] | undefined {
  const v = o.get(Opt.ClientArch);
  if (!v || v.length === 0 || v.length % 2 !== 0) return undefined;
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 2) out.push(v.readUInt16BE(i));
  return out;
}

/** Sub-options of an encapsulated option (43, 82, 175): code/len/value until END or the end. */
export function decodeSubOptions(v: Buffer | undefined): Map<number, Buffer> | undefined {
  if (!v) return undefined;
  const out = new Map<number, Buffer>();
  let i = 0;
  while (i < v.length) {
    const code = v[i]!;
    if (code === 0) {
      i++;
      continue;
    }
    if (code === 255) break;
    if (i + 1 >= v.length) return undefined;
    const len = v[i + 1]!;
    if (i + 2 + len > v.length) return undefined;
    out.set(code, Buffer.from(v.subarray(i + 2, i + 2 + len)));
    i += 2 + len;
  }
  return out;
}

export function encodeSubOptions(subs: Map<number, Buffer>, terminate = false): Buffer {
  const parts: Buffer[] = [];
  for (const [code, val] of subs) parts.push(Buffer.from([code, val.length]), val.subarray(0, 255));
  if (terminate) parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}

export const enc = {
  u8: (n: number) => Buffer.from([n & 255]),
  u16: (n: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n & 0xffff);
    return b;
  },
  u32: (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0);
    return b;
  },
  ip: (ip: string) => ipToBuffer(ip),
  ips: (ips: string[]) => Buffer.concat(ips.map(ipToBuffer)),
  str: (s: string) => Buffer.from(s, 'latin1'),
};

/** Human-readable value of an option, for `pxeherd explain` and event details. */
export function formatOption(code: number, v: Buffer): string {
  const o: Options = new Map([[code, v]]);
  switch (code) {
    case 1:
    case 28:
    case 50:
    case 54:
      return getIp(o, code) ?? v.toString('hex');
    case 3:
    case 4:
    case 6:
    case 7:
    case 33:
    case 41:
    case 42:
    case 44:
    case 69:
      return getIps(o, code)?.join(', ') ?? v.toString('hex');
    case 26:
      return String(getU16(o, code) ?? v.toString('hex'));
    case 119:
      return decodeDomainList(v)?.join(', ') ?? v.toString('hex');
    case 121:
      return decodeRoutes(v)?.join(', ') ?? v.toString('hex');
    case 17:
    case 40:
    case 252:
    case 12:
    case 15:
    case 56:
    case 60:
    case 66:
    case 67:
      return getString(o, code) ?? '';
    case 51:
    case 58:
    case 59: {
      const n = getU32(o, code);
      return n === undefined ? v.toString('hex') : `${n}s`;
    }
    case 53:
      return MESSAGE_NAMES[v[0] ?? 0] ?? v.toString('hex');
    case 57:
      return String(getU16(o, code) ?? v.toString('hex'));
    case 77:
      return getUserClasses(o).join(', ');
    case 93:
      return getArchs(o)?.join(', ') ?? v.toString('hex');
    case 55:
      return Array.from(v).join(', ');
    case 43:
    case 82:
    case 175: {
      const subs = decodeSubOptions(v);
      if (!subs) return v.toString('hex');
      return Array.from(subs, ([c, b]) => `${code}.${c}=${b.toString('hex')}`).join(' ');
    }
    default:
      return v.toString('hex');
  }
}

/** RFC 1035 names one after the other (no compression pointers followed), or undefined. */
export function decodeDomainList(v: Buffer): string[] | undefined {
  const out: string[] = [];
  let labels: string[] = [];
  for (let i = 0; i < v.length; ) {
    const len = v[i]!;
    if (len === 0) {
      out.push(labels.join('.'));
      labels = [];
      i++;
      continue;
    }
    if (len > 63 || i + 1 + len > v.length) return undefined;
    labels.push(v.toString('latin1', i + 1, i + 1 + len));
    i += 1 + len;
  }
  return labels.length ? undefined : out;
}

/** RFC 3442 routes as "NET/PREFIX via GW", or undefined when malformed. */
export function decodeRoutes(v: Buffer): string[] | undefined {
  const out: string[] = [];
  for (let i = 0; i < v.length; ) {
    const prefix = v[i]!;
    const octets = Math.ceil(prefix / 8);
    if (prefix > 32 || i + 1 + octets + 4 > v.length) return undefined;
    const net = [0, 0, 0, 0].map((_, k) => (k < octets ? v[i + 1 + k]! : 0));
    const gw = Array.from(v.subarray(i + 1 + octets, i + 5 + octets));
    out.push(`${net.join('.')}/${prefix} via ${gw.join('.')}`);
    i += 5 + octets;
  }
  return out;
}
