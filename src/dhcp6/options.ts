/**
 * DHCPv6 option meanings: codes, typed readers over the raw bytes the codec keeps, writers
 * for the replies, and text for `explain`. The codec has already checked the lengths of the
 * options listed in its LENGTHS table and the structure of encapsulating options, so readers
 * here only guard what the codec does not know (list element lengths inside a value).
 */
import { OPTION6_NAMES, type Dhcp6Option } from './codec.js';
import { ip6FromBuffer, ip6ToBuffer, macText } from './ip6.js';
import { enc } from '../dhcp/options.js';

export const Opt6 = {
  ClientId: 1,
  ServerId: 2,
  IaNa: 3,
  IaTa: 4,
  IaAddr: 5,
  Oro: 6,
  Preference: 7,
  ElapsedTime: 8,
  RelayMsg: 9,
  StatusCode: 13,
  RapidCommit: 14,
  UserClass: 15,
  VendorClass: 16,
  VendorOpts: 17,
  InterfaceId: 18,
  DnsServers: 23,
  DomainList: 24,
  IaPd: 25,
  InfoRefreshTime: 32,
  Fqdn: 39,
  BootfileUrl: 59,
  BootfileParam: 60,
  ClientArchType: 61,
  Nii: 62,
  ClientLinkLayerAddr: 79,
} as const;

/** RFC 8415 §21.13 status codes. */
export const Status = {
  Success: 0,
  UnspecFail: 1,
  NoAddrsAvail: 2,
  NoBinding: 3,
  NotOnLink: 4,
  UseMulticast: 5,
} as const;

export const STATUS_NAMES: Record<number, string> = { 0: 'Success', 1: 'UnspecFail', 2: 'NoAddrsAvail', 3: 'NoBinding', 4: 'NotOnLink', 5: 'UseMulticast', 6: 'NoPrefixAvail' };

export function first(options: Dhcp6Option[], code: number): Buffer | undefined {
  for (const o of options) if (o.code === code) return o.data;
  return undefined;
}

export function all(options: Dhcp6Option[], code: number): Buffer[] {
  const out: Buffer[] = [];
  for (const o of options) if (o.code === code) out.push(o.data);
  return out;
}

// ---- DUID (RFC 8415 §11) ---------------------------------------------------------------------

export const DuidType = { LLT: 1, EN: 2, LL: 3, UUID: 4 } as const;

/** The Ethernet MAC a DUID-LLT or DUID-LL carries (hardware type 1, 6 bytes), else undefined. */
export function macFromDuid(duid: Buffer): string | undefined {
  if (duid.length < 2) return undefined;
  const type = duid.readUInt16BE(0);
  if (type === DuidType.LLT && duid.length === 14 && duid.readUInt16BE(2) === 1) return ethernet(duid.subarray(8));
  if (type === DuidType.LL && duid.length === 10 && duid.readUInt16BE(2) === 1) return ethernet(duid.subarray(4));
  return undefined;
}

function ethernet(b: Buffer): string | undefined {
  if (b.every((x) => x === 0) || b[0]! & 1) return undefined;
  return macText(b);
}

/** DUID-LL of an Ethernet MAC: the server's identifier (stable, no clock in it). */
export function duidLl(mac: string): Buffer {
  return Buffer.concat([Buffer.from([0, DuidType.LL, 0, 1]), Buffer.from(mac.replace(/[:-]/g, ''), 'hex')]);
}

export function formatDuid(d: Buffer): string {
  const type = d.length >= 2 ? d.readUInt16BE(0) : -1;
  const name = { 1: 'LLT', 2: 'EN', 3: 'LL', 4: 'UUID' }[type] ?? `type ${type}`;
  const mac = macFromDuid(d);
  return `${d.toString('hex')} (DUID-${name}${mac ? ` ${mac}` : ''})`;
}

/** RFC 6939 option 79 (added by relays): hardware type 1 and a 6-byte address. */
export function macFromLinkLayerOption(v: Buffer | undefined): string | undefined {
  if (!v || v.length !== 8 || v.readUInt16BE(0) !== 1) return undefined;
  return ethernet(v.subarray(2));
}

// ---- IA_NA / IAADDR (RFC 8415 §21.4, §21.6) --------------------------------------------------

export interface IaAddr {
  address: string;
  preferred: number;
  valid: number;
  options: Dhcp6Option[];
}

export interface IaNa {
  iaid: number;
  t1: number;
  t2: number;
  options: Dhcp6Option[];
  addresses: IaAddr[];
}

/** Inner options of a value whose first `skip` bytes are fixed fields (walked by the codec already). */
function inner(v: Buffer, skip: number): Dhcp6Option[] {
  const out: Dhcp6Option[] = [];
  for (let i = skip; i + 4 <= v.length; ) {
    const code = v.readUInt16BE(i);
    const len = v.readUInt16BE(i + 2);
    out.push({ code, data: v.subarray(i + 4, i + 4 + len) });
    i += 4 + len;
  }
  return out;
}

export function parseIaNa(v: Buffer): IaNa {
  const options = inner(v, 12);
  const addresses = all(options, Opt6.IaAddr).map((a) => ({
    address: ip6FromBuffer(a, 0),
    preferred: a.readUInt32BE(16),
    valid: a.readUInt32BE(20),
    options: inner(a, 24),
  }));
  return { iaid: v.readUInt32BE(0), t1: v.readUInt32BE(4), t2: v.readUInt32BE(8), options, addresses };
}

export function statusOption(code: number, message: string): Dhcp6Option {
  const m = Buffer.from(message, 'utf8');
  const v = Buffer.alloc(2 + m.length);
  v.writeUInt16BE(code, 0);
  m.copy(v, 2);
  return { code: Opt6.StatusCode, data: v };
}

export function parseStatus(v: Buffer): { code: number; message: string } {
  return { code: v.readUInt16BE(0), message: v.toString('utf8', 2) };
}

function optionBytes(options: Dhcp6Option[]): Buffer {
  return Buffer.concat(
    options.flatMap((o) => {
      const h = Buffer.alloc(4);
      h.writeUInt16BE(o.code, 0);
      h.writeUInt16BE(o.data.length, 2);
      return [h, o.data];
    }),
  );
}

export function iaAddrOption(address: string, preferred: number, valid: number, options: Dhcp6Option[] = []): Dhcp6Option {
  const v = Buffer.alloc(24);
  (ip6ToBuffer(address) ?? Buffer.alloc(16)).copy(v, 0);
  v.writeUInt32BE(preferred >>> 0, 16);
  v.writeUInt32BE(valid >>> 0, 20);
  return { code: Opt6.IaAddr, data: Buffer.concat([v, optionBytes(options)]) };
}

export function iaNaOption(iaid: number, t1: number, t2: number, options: Dhcp6Option[]): Dhcp6Option {
  const v = Buffer.alloc(12);
  v.writeUInt32BE(iaid >>> 0, 0);
  v.writeUInt32BE(t1 >>> 0, 4);
  v.writeUInt32BE(t2 >>> 0, 8);
  return { code: Opt6.IaNa, data: Buffer.concat([v, optionBytes(options)]) };
}

// ---- lists -------------------------------------------------------------------------------

/** ORO: the option codes the client asks for. */
export function requested(options: Dhcp6Option[]): number[] {
  const v = first(options, Opt6.Oro);
  if (!v) return [];
  const out: number[] = [];
  for (let i = 0; i + 1 < v.length; i += 2) out.push(v.readUInt16BE(i));
  return out;
}

/** RFC 8415 §21.15/21.16: 2-byte-length-prefixed opaque items; undefined when they overrun. */
export function opaqueList(v: Buffer, start = 0): Buffer[] | undefined {
  const out: Buffer[] = [];
  for (let i = start; i < v.length; ) {
    if (i + 2 > v.length) return undefined;
    const len = v.readUInt16BE(i);
    if (i + 2 + len > v.length) return undefined;
    out.push(v.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return out;
}

export function userClasses(options: Dhcp6Option[]): string[] {
  return all(options, Opt6.UserClass).flatMap((v) => (opaqueList(v) ?? []).map((b) => b.toString('latin1')));
}

/** Vendor class data strings (option 16, any enterprise), e.g. "HTTPClient:Arch:00016:UNDI:003016". */
export function vendorClasses(options: Dhcp6Option[]): string[] {
  return all(options, Opt6.VendorClass).flatMap((v) => (opaqueList(v, 4) ?? []).map((b) => b.toString('latin1')));
}

export function clientArchs(options: Dhcp6Option[]): number[] {
  const v = first(options, Opt6.ClientArchType);
  if (!v) return [];
  const out: number[] = [];
  for (let i = 0; i + 1 < v.length; i += 2) out.push(v.readUInt16BE(i));
  return out;
}

export const enc6 = {
  // Fixed-width integers are big-endian in both protocols.
  u8: enc.u8,
  u16: enc.u16,
  u32: enc.u32,
  addrs: (list: string[]) => Buffer.concat(list.map((a) => ip6ToBuffer(a) ?? Buffer.alloc(16))),
  str: (s: string) => Buffer.from(s, 'utf8'),
  opaqueList: (items: string[]) =>
    Buffer.concat(
      items.map((s) => {
        const d = Buffer.from(s, 'utf8');
        const h = Buffer.alloc(2);
        h.writeUInt16BE(d.length);
        return Buffer.concat([h, d]);
      }),
    ),
  /** RFC 1035 §3.1 names, as option 24 wants them. */
  domains: (names: string[]) =>
    Buffer.concat(
      names.map((n) =>
        Buffer.concat([
          ...n
            .split('.')
            .filter(Boolean)
            .map((l) => Buffer.concat([Buffer.from([Buffer.byteLength(l)]), Buffer.from(l)])),
          Buffer.from([0]),
        ]),
      ),
    ),
};

// ---- text ----------------------------------------------------------------------------------

function addrList(v: Buffer): string {
  const out: string[] = [];
  for (let i = 0; i + 16 <= v.length; i += 16) out.push(ip6FromBuffer(v, i));
  return out.join(', ');
}

/** One option's value as text, for `explain` and logs. Never throws on odd values. */
export function formatOption6(o: Dhcp6Option): string {
  const v = o.data;
  try {
    switch (o.code) {
      case Opt6.ClientId:
      case Opt6.ServerId:
        return formatDuid(v);
      case Opt6.IaNa: {
        const ia = parseIaNa(v);
        const parts = ia.addresses.map((a) => `${a.address} preferred ${a.preferred}s valid ${a.valid}s`);
        const st = first(ia.options, Opt6.StatusCode);
        if (st) parts.push(formatStatus(st));
        return `iaid ${ia.iaid} T1 ${ia.t1}s T2 ${ia.t2}s: ${parts.join('; ') || 'no address'}`;
      }
      case Opt6.Oro:
        return requested([o]).map((c) => `${c} ${OPTION6_NAMES[c] ?? ''}`.trim()).join(', ');
      case Opt6.Preference:
        return String(v[0]);
      case Opt6.ElapsedTime:
        return `${v.readUInt16BE(0) * 10} ms`;
      case Opt6.StatusCode:
        return formatStatus(v);
      case Opt6.RapidCommit:
        return '(present)';
      case Opt6.UserClass:
        return (opaqueList(v) ?? []).map((b) => JSON.stringify(b.toString('latin1'))).join(', ');
      case Opt6.VendorClass:
        return `enterprise ${v.readUInt32BE(0)}: ${(opaqueList(v, 4) ?? []).map((b) => JSON.stringify(b.toString('latin1'))).join(', ')}`;
      case Opt6.DnsServers:
        return addrList(v);
      case Opt6.BootfileUrl:
        return v.toString('utf8');
      case Opt6.BootfileParam:
        return (opaqueList(v) ?? []).map((b) => JSON.stringify(b.toString('utf8'))).join(' ');
      case Opt6.ClientArchType:
        return clientArchs([o]).join(', ');
      case Opt6.ClientLinkLayerAddr:
        return `type ${v.readUInt16BE(0)} ${macText(v.subarray(2))}`;
      case Opt6.InfoRefreshTime:
        return `${v.readUInt32BE(0)} s`;
      default:
        return v.toString('hex');
    }
  } catch {
    return v.toString('hex');
  }
}

function formatStatus(v: Buffer): string {
  const s = parseStatus(v);
  return `${STATUS_NAMES[s.code] ?? s.code}${s.message ? `: ${s.message}` : ''}`;
}
