/**
 * TFTP packet codec (RFC 1350, options RFC 2347). Pure and total: `decode` returns a
 * packet or a typed error and never throws, `encode` is its inverse. The transfer hot
 * path does not use `decode` for ACKs (see `ackBlock`) so that a lock-step transfer
 * allocates no objects per packet.
 */

export const OP_RRQ = 1;
export const OP_WRQ = 2;
export const OP_DATA = 3;
export const OP_ACK = 4;
export const OP_ERROR = 5;
export const OP_OACK = 6;

/** RFC 1350 / 2347 error codes. */
export const ErrorCode = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  /** RFC 2347: the client refuses the options in an OACK (UEFI firmware's tsize probe ends this way). */
  OPTION_REFUSED: 8,
} as const;

export type Options = Record<string, string>;

export interface RequestPacket {
  op: 'rrq' | 'wrq';
  filename: string;
  /** Lower-cased transfer mode as sent: 'octet', 'netascii' or 'mail'. */
  mode: string;
  /** Option names lower-cased; the first occurrence of a repeated option wins. */
  options: Options;
  /** Option names in the order the client sent them (OACK answers in the same order). */
  optionOrder: string[];
}
export interface DataPacket {
  op: 'data';
  block: number;
  data: Buffer;
}
export interface AckPacket {
  op: 'ack';
  block: number;
}
export interface ErrorPacket {
  op: 'error';
  code: number;
  message: string;
}
export interface OackPacket {
  op: 'oack';
  options: Options;
  optionOrder: string[];
}
export type Packet = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

export type DecodeError = { error: 'short' | 'opcode' | 'unterminated' | 'mode' | 'options' | 'filename'; detail: string };
export type DecodeResult = { ok: true; packet: Packet } | ({ ok: false } & DecodeError);

const MODES = new Set(['octet', 'netascii', 'mail']);

function bad(error: DecodeError['error'], detail: string): DecodeResult {
  return { ok: false, error, detail };
}

/** Split a run of NUL-terminated strings. Returns undefined when the last one is not terminated. */
function nulStrings(buf: Buffer, start: number): string[] | undefined {
  const out: string[] = [];
  let i = start;
  while (i < buf.length) {
    const end = buf.indexOf(0, i);
    if (end < 0) return undefined;
    // latin1 keeps every byte as one char; paths.ts decides what a name may contain.
    out.push(buf.toString('latin1', i, end));
    i = end + 1;
  }
  return out;
}

export function decode(buf: Buffer): DecodeResult {
  if (buf.length < 2) return bad('short', `packet of ${buf.length} bytes`);
  const op = buf.readUInt16BE(0);
  switch (op) {
    case OP_RRQ:
    case OP_WRQ: {
      const parts = nulStrings(buf, 2);
      if (!parts) return bad('unterminated', 'request strings are not NUL-terminated');
      if (parts.length < 2) return bad('short', 'request lacks filename or mode');
      const [filename, rawMode, ...rest] = parts as [string, string, ...string[]];
      if (filename.length === 0) return bad('filename', 'empty filename');
      const mode = rawMode.toLowerCase();
      if (!MODES.has(mode)) return bad('mode', `unknown transfer mode "${rawMode}"`);
      // An odd trailing string is a malformed option list; RFC 2347 lets us ignore
      // options we don't understand, but not a broken packet.
      if (rest.length % 2 !== 0) return bad('options', 'option without a value');
      const options: Options = {};
      const optionOrder: string[] = [];
      for (let i = 0; i < rest.length; i += 2) {
        const name = rest[i]!.toLowerCase();
        if (name.length === 0) return bad('options', 'empty option name');
        if (Object.prototype.hasOwnProperty.call(options, name)) continue;
        options[name] = rest[i + 1]!;
        optionOrder.push(name);
      }
      return { ok: true, packet: { op: op === OP_RRQ ? 'rrq' : 'wrq', filename, mode, options, optionOrder } };
    }
    case OP_DATA:
      if (buf.length < 4) return bad('short', 'DATA without block number');
      return { ok: true, packet: { op: 'data', block: buf.readUInt16BE(2), data: buf.subarray(4) } };
    case OP_ACK:
      if (buf.length < 4) return bad('short', 'ACK without block number');
      return { ok: true, packet: { op: 'ack', block: buf.readUInt16BE(2) } };
    case OP_ERROR: {
      if (buf.length < 4) return bad('short', 'ERROR without code');
      const code = buf.readUInt16BE(2);
      // Some clients omit the terminating NUL; the message is informational, accept it.
      const end = buf.indexOf(0, 4);
      const message = buf.toString('latin1', 4, end < 0 ? buf.length : end);
      return { ok: true, packet: { op: 'error', code, message } };
    }
    case OP_OACK: {
      const parts = nulStrings(buf, 2);
      if (!parts) return bad('unterminated', 'OACK strings are not NUL-terminated');
      if (parts.length % 2 !== 0) return bad('options', 'option without a value');
      const options: Options = {};
      const optionOrder: string[] = [];
      for (let i = 0; i < parts.length; i += 2) {
        const name = parts[i]!.toLowerCase();
        if (Object.prototype.hasOwnProperty.call(options, name)) continue;
        options[name] = parts[i + 1]!;
        optionOrder.push(name);
      }
      return { ok: true, packet: { op: 'oack', options, optionOrder } };
    }
    default:
      return bad('opcode', `unknown opcode ${op}`);
  }
}

function strings(op: number, list: string[]): Buffer {
  let len = 2;
  for (const s of list) len += Buffer.byteLength(s, 'latin1') + 1;
  const buf = Buffer.alloc(len);
  buf.writeUInt16BE(op, 0);
  let o = 2;
  for (const s of list) {
    o += buf.write(s, o, 'latin1');
    buf[o++] = 0;
  }
  return buf;
}

function optionList(options: Options, order?: string[]): string[] {
  const names = order ?? Object.keys(options);
  const out: string[] = [];
  for (const n of names) if (options[n] !== undefined) out.push(n, options[n]!);
  return out;
}

export function encode(p: Packet): Buffer {
  switch (p.op) {
    case 'rrq':
    case 'wrq':
      return strings(p.op === 'rrq' ? OP_RRQ : OP_WRQ, [p.filename, p.mode, ...optionList(p.options, p.optionOrder)]);
    case 'data': {
      const buf = Buffer.allocUnsafe(4 + p.data.length);
      buf.writeUInt16BE(OP_DATA, 0);
      buf.writeUInt16BE(p.block & 0xffff, 2);
      p.data.copy(buf, 4);
      return buf;
    }
    case 'ack':
      return ackPacket(p.block);
    case 'error':
      return errorPacket(p.code, p.message);
    case 'oack':
      return strings(OP_OACK, optionList(p.options, p.optionOrder));
  }
}

export function ackPacket(block: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt16BE(OP_ACK, 0);
  buf.writeUInt16BE(block & 0xffff, 2);
  return buf;
}

export function errorPacket(code: number, message: string): Buffer {
  // Messages are ASCII by construction; replace anything else so the packet stays netascii.
  const clean = message.replace(/[^\x20-\x7e]/g, '?').slice(0, 400);
  const buf = Buffer.alloc(4 + clean.length + 1);
  buf.writeUInt16BE(OP_ERROR, 0);
  buf.writeUInt16BE(code & 0xffff, 2);
  buf.write(clean, 4, 'latin1');
  return buf;
}

/** 4-byte DATA header for `block` (the 16-bit wire number). */
export function dataHeader(block: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf[0] = 0;
  buf[1] = OP_DATA;
  buf[2] = (block >>> 8) & 0xff;
  buf[3] = block & 0xff;
  return buf;
}

/** Fast path for the transfer socket: the ACK's block number, or -1 when `buf` is not an ACK. */
export function ackBlock(buf: Buffer): number {
  if (buf.length < 4 || buf[0] !== 0 || buf[1] !== OP_ACK) return -1;
  return (buf[2]! << 8) | buf[3]!;
}

/**
 * netascii (RFC 764 as used by TFTP): LF -> CR LF, CR -> CR NUL. The converted size is
 * what tsize must report for a netascii transfer, so we convert whole buffers up front.
 */
export function toNetascii(src: Buffer): Buffer {
  let extra = 0;
  for (let i = 0; i < src.length; i++) if (src[i] === 0x0a || src[i] === 0x0d) extra++;
  if (extra === 0) return src;
  const out = Buffer.allocUnsafe(src.length + extra);
  let o = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x0a) {
      out[o++] = 0x0d;
      out[o++] = 0x0a;
    } else if (c === 0x0d) {
      out[o++] = 0x0d;
      out[o++] = 0x00;
    } else out[o++] = c;
  }
  return out;
}
