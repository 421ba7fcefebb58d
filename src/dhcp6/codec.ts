/**
 * DHCPv6 wire codec (RFC 8415 §8 client/server messages, §9 relay messages, §21 option
 * format). Pure and total: decode returns a message or a typed error and never throws, since
 * every byte comes from the network. Options stay raw bytes in arrival order (DHCPv6 allows
 * repeats: one IA_NA per interface association); the options that encapsulate others (IA_NA,
 * IA_TA, IA_PD, IAADDR, IAPREFIX, relay message) are walked here so a malformed inner option
 * is caught once, at the edge, and the typed readers in options.ts cannot trip on structure.
 * encode() is decode()'s inverse: encode(decode(b)) === b for every accepted datagram.
 */

export const MsgType = {
  Solicit: 1,
  Advertise: 2,
  Request: 3,
  Confirm: 4,
  Renew: 5,
  Rebind: 6,
  Reply: 7,
  Release: 8,
  Decline: 9,
  Reconfigure: 10,
  InformationRequest: 11,
  RelayForw: 12,
  RelayRepl: 13,
} as const;

export const MSG_NAMES: Record<number, string> = {
  1: 'SOLICIT',
  2: 'ADVERTISE',
  3: 'REQUEST',
  4: 'CONFIRM',
  5: 'RENEW',
  6: 'REBIND',
  7: 'REPLY',
  8: 'RELEASE',
  9: 'DECLINE',
  10: 'RECONFIGURE',
  11: 'INFORMATION-REQUEST',
  12: 'RELAY-FORW',
  13: 'RELAY-REPL',
};

export interface Dhcp6Option {
  code: number;
  /** The option's value (without code and length); a view into the datagram. */
  data: Buffer;
}

/** Client/server message (RFC 8415 §8). */
export interface Dhcp6Message {
  type: number;
  /** 24-bit transaction id. */
  xid: number;
  options: Dhcp6Option[];
}

/** Relay-forward / relay-reply (RFC 8415 §9). */
export interface Dhcp6Relay {
  type: 12 | 13;
  hopCount: number;
  /** 16 bytes each, as on the wire. */
  linkAddress: Buffer;
  peerAddress: Buffer;
  options: Dhcp6Option[];
}

export type Dhcp6Packet = Dhcp6Message | Dhcp6Relay;

export function isRelay(p: Dhcp6Packet): p is Dhcp6Relay {
  return p.type === MsgType.RelayForw || p.type === MsgType.RelayRepl;
}

export type Decode6Error = 'short' | 'bad-type' | 'truncated-option' | 'bad-option-length' | 'too-deep';

export type Decode6Result = { ok: true; packet: Dhcp6Packet } | { ok: false; error: Decode6Error; detail: string };

/** Options holding options, and where their inner options start (RFC 8415 §21.4-21.6, 21.21, 21.22). */
const ENCAPSULATING: Record<number, number> = {
  3: 12, // IA_NA: IAID, T1, T2
  4: 4, // IA_TA: IAID
  5: 24, // IAADDR: address, preferred, valid
  25: 12, // IA_PD: IAID, T1, T2
  26: 25, // IAPREFIX: preferred, valid, prefix length, prefix
};

/** Fixed or minimum lengths of options whose readers assume them. [min, max, multiple-of]. */
const LENGTHS: Record<number, [number, number, number]> = {
  1: [2, 130, 1], // CLIENTID: a DUID is 2..130 bytes (RFC 8415 §11.1)
  2: [2, 130, 1], // SERVERID
  6: [0, 65535, 2], // ORO: list of codes
  7: [1, 1, 1], // PREFERENCE
  8: [2, 2, 1], // ELAPSED_TIME
  12: [16, 16, 1], // UNICAST
  13: [2, 65535, 1], // STATUS_CODE
  14: [0, 0, 1], // RAPID_COMMIT
  16: [4, 65535, 1], // VENDOR_CLASS: enterprise number first
  17: [4, 65535, 1], // VENDOR_OPTS
  23: [0, 65535, 16], // DNS_SERVERS
  61: [2, 65535, 2], // CLIENT_ARCH_TYPE: list of u16
  62: [3, 3, 1], // NII
  79: [2, 65535, 1], // CLIENT_LINKLAYER_ADDR: type, address
};

/** Relays nest relay messages; RFC 8415 §7.6 HOP_COUNT_LIMIT is 8. */
const MAX_DEPTH = 34;

type Walk = { ok: true; options: Dhcp6Option[] } | { ok: false; error: Decode6Error; detail: string };

function walk(area: Buffer, depth: number, where: string): Walk {
  const options: Dhcp6Option[] = [];
  let i = 0;
  while (i < area.length) {
    if (i + 4 > area.length) return { ok: false, error: 'truncated-option', detail: `${where}: ${area.length - i} stray bytes after the last option` };
    const code = area.readUInt16BE(i);
    const len = area.readUInt16BE(i + 2);
    if (i + 4 + len > area.length) return { ok: false, error: 'truncated-option', detail: `${where}: option ${code} claims ${len} bytes, ${area.length - i - 4} left` };
    const data = area.subarray(i + 4, i + 4 + len);
    const bad = checkOption(code, data, depth, where);
    if (bad) return bad;
    options.push({ code, data });
    i += 4 + len;
  }
  return { ok: true, options };
}

function checkOption(code: number, data: Buffer, depth: number, where: string): Extract<Walk, { ok: false }> | undefined {
  const lim = LENGTHS[code];
  if (lim && (data.length < lim[0] || data.length > lim[1] || data.length % lim[2] !== 0)) {
    return { ok: false, error: 'bad-option-length', detail: `${where}: option ${code} (${OPTION6_NAMES[code] ?? 'unknown'}) has ${data.length} bytes` };
  }
  const inner = ENCAPSULATING[code];
  if (inner !== undefined) {
    if (data.length < inner) return { ok: false, error: 'bad-option-length', detail: `${where}: option ${code} (${OPTION6_NAMES[code]}) has ${data.length} bytes, needs at least ${inner}` };
    if (depth >= MAX_DEPTH) return { ok: false, error: 'too-deep', detail: `${where}: options nested more than ${MAX_DEPTH} deep` };
    const w = walk(data.subarray(inner), depth + 1, `${where} > ${OPTION6_NAMES[code]}`);
    if (!w.ok) return w;
  }
  if (code === 26 && data[8]! > 128) return { ok: false, error: 'bad-option-length', detail: `${where}: IAPREFIX prefix length ${data[8]}` };
  if (code === 9) {
    // RELAY_MSG carries a whole message: check it as one.
    if (depth >= MAX_DEPTH) return { ok: false, error: 'too-deep', detail: `${where}: relay messages nested more than ${MAX_DEPTH} deep` };
    const r = decodeAt(data, depth + 1, `${where} > relay-message`);
    if (!r.ok) return r;
  }
  return undefined;
}

function decodeAt(buf: Buffer, depth: number, where: string): Decode6Result {
  if (buf.length < 4) return { ok: false, error: 'short', detail: `${where}: ${buf.length} bytes, a DHCPv6 message has at least 4` };
  const type = buf[0]!;
  if (type === 0 || type > 13) return { ok: false, error: 'bad-type', detail: `${where}: message type ${type}` };
  if (type === MsgType.RelayForw || type === MsgType.RelayRepl) {
    if (buf.length < 34) return { ok: false, error: 'short', detail: `${where}: ${buf.length} bytes, a relay message has at least 34` };
    const w = walk(buf.subarray(34), depth, where);
    if (!w.ok) return w;
    return { ok: true, packet: { type, hopCount: buf[1]!, linkAddress: buf.subarray(2, 18), peerAddress: buf.subarray(18, 34), options: w.options } };
  }
  const w = walk(buf.subarray(4), depth, where);
  if (!w.ok) return w;
  return { ok: true, packet: { type, xid: buf.readUIntBE(1, 3), options: w.options } };
}

/** Decode one UDP payload. Option values are views into `buf`: do not reuse the buffer. */
export function decode(buf: Buffer): Decode6Result {
  return decodeAt(buf, 0, MSG_NAMES[buf[0] ?? 0] ?? 'message');
}

function optionsBytes(options: Dhcp6Option[]): Buffer[] {
  const out: Buffer[] = [];
  for (const o of options) {
    const h = Buffer.alloc(4);
    h.writeUInt16BE(o.code & 0xffff, 0);
    h.writeUInt16BE(o.data.length, 2);
    out.push(h, o.data);
  }
  return out;
}

/** Serialize a message; an option longer than 65535 bytes cannot exist and throws (a bug, not input). */
export function encode(p: Dhcp6Packet): Buffer {
  for (const o of p.options) if (o.data.length > 0xffff) throw new Error(`DHCPv6 option ${o.code} is ${o.data.length} bytes, more than 65535`);
  if (isRelay(p)) {
    const h = Buffer.alloc(34);
    h[0] = p.type;
    h[1] = p.hopCount;
    p.linkAddress.copy(h, 2, 0, 16);
    p.peerAddress.copy(h, 18, 0, 16);
    return Buffer.concat([h, ...optionsBytes(p.options)]);
  }
  const h = Buffer.alloc(4);
  h[0] = p.type;
  h.writeUIntBE(p.xid & 0xffffff, 1, 3);
  return Buffer.concat([h, ...optionsBytes(p.options)]);
}

/** Names for logs and `explain` (IANA "DHCPv6 Option Codes"). */
export const OPTION6_NAMES: Record<number, string> = {
  1: 'client-id',
  2: 'server-id',
  3: 'ia-na',
  4: 'ia-ta',
  5: 'iaaddr',
  6: 'oro',
  7: 'preference',
  8: 'elapsed-time',
  9: 'relay-message',
  11: 'auth',
  12: 'unicast',
  13: 'status-code',
  14: 'rapid-commit',
  15: 'user-class',
  16: 'vendor-class',
  17: 'vendor-opts',
  18: 'interface-id',
  19: 'reconf-msg',
  20: 'reconf-accept',
  23: 'dns-servers',
  24: 'domain-list',
  25: 'ia-pd',
  26: 'iaprefix',
  32: 'information-refresh-time',
  39: 'client-fqdn',
  59: 'bootfile-url',
  60: 'bootfile-param',
  61: 'client-arch-type',
  62: 'nii',
  79: 'client-linklayer-addr',
};
