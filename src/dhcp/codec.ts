/**
 * BOOTP/DHCP wire codec (RFC 951, RFC 2131 §2, RFC 2132, RFC 3396). Pure and total: decode
 * returns a packet or a typed error and never throws, because every byte it reads comes from
 * the network. Options are kept as raw bytes in arrival order; their meaning lives in
 * options.ts, so the codec never has to understand an option to carry it.
 */
import { ipFromBuffer, ipToInt } from './ip.js';

export const MAGIC_COOKIE = 0x63825363;
/** Fixed BOOTP header (236 bytes) plus the magic cookie. */
export const HEADER_LEN = 240;
/** RFC 951 packets are at least 300 bytes; several PXE ROMs drop shorter replies. */
export const MIN_PACKET = 300;
/** Every DHCP host accepts 576-byte IP datagrams: 576 - 20 (IP) - 8 (UDP). */
export const DEFAULT_MAX_MESSAGE = 548;

export const OPT_PAD = 0;
export const OPT_OVERLOAD = 52;
export const OPT_END = 255;

export interface DhcpPacket {
  /** 1 BOOTREQUEST, 2 BOOTREPLY */
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** 16 bytes as on the wire; the MAC is the first `hlen` of them for Ethernet. */
  chaddr: Buffer;
  sname: string;
  file: string;
  /** Option code -> value, in first-appearance order; repeated options are concatenated (RFC 3396). */
  options: Map<number, Buffer>;
}

export type DecodeError =
  | 'short'
  | 'bad-op'
  | 'bad-hlen'
  | 'no-cookie'
  | 'truncated-option'
  | 'bad-overload';

export type DecodeResult = { ok: true; packet: DhcpPacket } | { ok: false; error: DecodeError; detail: string };

function fail(error: DecodeError, detail: string): DecodeResult {
  return { ok: false, error, detail };
}

function cString(buf: Buffer): string {
  const nul = buf.indexOf(0);
  return buf.toString('latin1', 0, nul < 0 ? buf.length : nul);
}

/** Walk one option area; appends into `into`. Returns an error text or undefined. */
function readOptions(area: Buffer, into: Map<number, Buffer>): string | undefined {
  let i = 0;
  while (i < area.length) {
    const code = area[i]!;
    if (code === OPT_PAD) {
      i++;
      continue;
    }
    if (code === OPT_END) return undefined;
    if (i + 1 >= area.length) return `option ${code} has no length byte`;
    const len = area[i + 1]!;
    if (i + 2 + len > area.length) return `option ${code} claims ${len} bytes, ${area.length - i - 2} left`;
    const prev = into.get(code);
    const val = area.subarray(i + 2, i + 2 + len);
    // A repeated option is one value in pieces (RFC 3396), concatenated in the order read; a
    // single piece stays a view into the datagram (no copy). Option 52: its first piece only.
    if (prev === undefined) into.set(code, val);
    else if (code !== OPT_OVERLOAD) into.set(code, Buffer.concat([prev, val]));
    i += 2 + len;
  }
  // Some clients omit the END option; the area simply runs out. Accept that.
  return undefined;
}

/**
 * The DHCP message type (option 53) of a datagram, read without decoding it: a scan of the
 * options area for code 53 (not of overloaded file/sname fields, where a DHCP client never
 * puts it). undefined when absent or the datagram is not DHCP. For queueing decisions only;
 * decode() remains the judge of what the datagram is.
 */
export function peekMessageType(buf: Buffer): number | undefined {
  if (buf.length < HEADER_LEN + 3 || buf.readUInt32BE(236) !== MAGIC_COOKIE) return undefined;
  let i = HEADER_LEN;
  while (i < buf.length) {
    const code = buf[i]!;
    if (code === OPT_PAD) {
      i++;
      continue;
    }
    if (code === OPT_END || i + 1 >= buf.length) return undefined;
    const len = buf[i + 1]!;
    if (code === 53) return len === 1 && i + 2 < buf.length ? buf[i + 2] : undefined;
    i += 2 + len;
  }
  return undefined;
}

export function decode(buf: Buffer): DecodeResult {
  if (buf.length < HEADER_LEN) return fail('short', `${buf.length} bytes, need at least ${HEADER_LEN}`);
  const op = buf[0]!;
  if (op !== 1 && op !== 2) return fail('bad-op', `op ${op}`);
  const hlen = buf[2]!;
  if (hlen > 16) return fail('bad-hlen', `hlen ${hlen}`);
  if (buf.readUInt32BE(236) !== MAGIC_COOKIE) return fail('no-cookie', 'no DHCP magic cookie (plain BOOTP is not served)');
  // Single-piece values are views into `buf` (no copy): callers must not reuse the datagram buffer.
  const options = new Map<number, Buffer>();
  let err = readOptions(buf.subarray(HEADER_LEN), options);
  if (err) return fail('truncated-option', err);
  // Empty in nearly every request: no string made then.
  let sname = buf[44] === 0 ? '' : cString(buf.subarray(44, 108));
  let file = buf[108] === 0 ? '' : cString(buf.subarray(108, 236));
  const v = options.get(OPT_OVERLOAD);
  if (v) {
    if (v.length !== 1 || v[0]! < 1 || v[0]! > 3) return fail('bad-overload', `option 52 value ${v.toString('hex')}`);
    // RFC 2131 §4.1: file is read before sname.
    if (v[0]! & 1) {
      err = readOptions(buf.subarray(108, 236), options);
      if (err) return fail('truncated-option', `in file field: ${err}`);
      file = '';
    }
    if (v[0]! & 2) {
      err = readOptions(buf.subarray(44, 108), options);
      if (err) return fail('truncated-option', `in sname field: ${err}`);
      sname = '';
    }
    options.delete(OPT_OVERLOAD);
  }
  return {
    ok: true,
    packet: {
      op,
      htype: buf[1]!,
      hlen,
      hops: buf[3]!,
      xid: buf.readUInt32BE(4),
      secs: buf.readUInt16BE(8),
      flags: buf.readUInt16BE(10),
      ciaddr: ipFromBuffer(buf, 12),
      yiaddr: ipFromBuffer(buf, 16),
      siaddr: ipFromBuffer(buf, 20),
      giaddr: ipFromBuffer(buf, 24),
      chaddr: Buffer.from(buf.subarray(28, 44)),
      sname,
      file,
      options,
    },
  };
}

export interface EncodeOptions {
  /** Largest datagram the peer accepts (option 57); options spill into file/sname when they are free. */
  maxSize?: number;
}

/** Bytes of one option, split into 255-byte pieces (RFC 3396) when longer. */
function optionBytes(code: number, value: Buffer): Buffer[] {
  const out: Buffer[] = [];
  if (value.length === 0) {
    out.push(Buffer.from([code, 0]));
    return out;
  }
  for (let off = 0; off < value.length; off += 255) {
    const part = value.subarray(off, off + 255);
    out.push(Buffer.from([code, part.length]), part);
  }
  return out;
}

function writeIp(buf: Buffer, ip: string, offset: number): void {
  buf.writeUInt32BE(ipToInt(ip) ?? 0, offset);
}

/**
 * Serialize a packet. Options go in map order; when they do not fit in `maxSize` and the
 * file/sname fields are empty, the rest overflows there with option 52 (RFC 2131 §4.1).
 * An option never fitting anywhere is dropped rather than producing an invalid packet.
 */
export function encode(p: DhcpPacket, opts: EncodeOptions = {}): Buffer {
  const maxSize = Math.max(DEFAULT_MAX_MESSAGE, Math.min(opts.maxSize ?? DEFAULT_MAX_MESSAGE, 65507));
  // Every reply the server sends takes this path: all options in the main area, none longer
  // than 255 bytes. Written straight into the datagram (the general path below builds and
  // joins a buffer per option: ~9 % of the CPU of a DHCP exchange).
  let direct = HEADER_LEN + 1;
  for (const [code, value] of p.options) {
    if (value.length > 255) {
      direct = Infinity;
      break;
    }
    if (code !== OPT_PAD && code !== OPT_END && code !== OPT_OVERLOAD) direct += 2 + value.length;
  }
  if (direct <= maxSize) return encodeDirect(p, direct);
  // Whole options (each with all its pieces), the END byte is added per area.
  const items: Buffer[] = [];
  for (const [code, value] of p.options) {
    if (code === OPT_PAD || code === OPT_END || code === OPT_OVERLOAD) continue;
    items.push(Buffer.concat(optionBytes(code, value)));
  }
  const mainRoom = maxSize - HEADER_LEN - 1 - 3; // END, and room for an overload option
  const main: Buffer[] = [];
  const fileArea: Buffer[] = [];
  const snameArea: Buffer[] = [];
  let used = 0;
  let fileUsed = 0;
  let snameUsed = 0;
  const fileFree = p.file === '';
  const snameFree = p.sname === '';
  const total = items.reduce((n, b) => n + b.length, 0);
  const fitsAll = total + 1 <= maxSize - HEADER_LEN;
  for (const item of items) {
    if (fitsAll || used + item.length <= mainRoom) {
      main.push(item);
      used += item.length;
    } else if (fileFree && fileUsed + item.length <= 127) {
      fileArea.push(item);
      fileUsed += item.length;
    } else if (snameFree && snameUsed + item.length <= 63) {
      snameArea.push(item);
      snameUsed += item.length;
    }
    // else: dropped; the client's size limit leaves no room for it.
  }
  const overload = (fileArea.length ? 1 : 0) | (snameArea.length ? 2 : 0);
  if (overload) main.push(Buffer.from([OPT_OVERLOAD, 1, overload]));
  main.push(Buffer.from([OPT_END]));
  const optBuf = Buffer.concat(main);
  const len = Math.max(MIN_PACKET, HEADER_LEN + optBuf.length);
  const buf = Buffer.alloc(len);
  writeHeader(buf, p);
  if (overload & 2) Buffer.concat([...snameArea, Buffer.from([OPT_END])]).copy(buf, 44);
  else buf.write(p.sname.slice(0, 63), 44, 'latin1');
  if (overload & 1) Buffer.concat([...fileArea, Buffer.from([OPT_END])]).copy(buf, 108);
  else buf.write(p.file.slice(0, 127), 108, 'latin1');
  optBuf.copy(buf, HEADER_LEN);
  return buf;
}

/** encode() when every option fits in the main area unsplit: `size` is header + options + END. */
function encodeDirect(p: DhcpPacket, size: number): Buffer {
  const buf = Buffer.alloc(Math.max(MIN_PACKET, size));
  writeHeader(buf, p);
  if (p.sname !== '') buf.write(p.sname.slice(0, 63), 44, 'latin1');
  if (p.file !== '') buf.write(p.file.slice(0, 127), 108, 'latin1');
  let off = HEADER_LEN;
  for (const [code, value] of p.options) {
    if (code === OPT_PAD || code === OPT_END || code === OPT_OVERLOAD) continue;
    buf[off] = code;
    buf[off + 1] = value.length;
    value.copy(buf, off + 2);
    off += 2 + value.length;
  }
  buf[off] = OPT_END;
  return buf;
}

/** The fixed fields before sname (0-43) and the magic cookie. */
function writeHeader(buf: Buffer, p: DhcpPacket): void {
  buf[0] = p.op;
  buf[1] = p.htype;
  buf[2] = p.hlen;
  buf[3] = p.hops;
  buf.writeUInt32BE(p.xid >>> 0, 4);
  buf.writeUInt16BE(p.secs & 0xffff, 8);
  buf.writeUInt16BE(p.flags & 0xffff, 10);
  writeIp(buf, p.ciaddr, 12);
  writeIp(buf, p.yiaddr, 16);
  writeIp(buf, p.siaddr, 20);
  writeIp(buf, p.giaddr, 24);
  p.chaddr.copy(buf, 28, 0, Math.min(16, p.chaddr.length));
  buf.writeUInt32BE(MAGIC_COOKIE, 236);
}

/** A blank packet, for building requests in tests and replies in the handler. */
export function emptyPacket(op: 1 | 2): DhcpPacket {
  return {
    op,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0,
    secs: 0,
    flags: 0,
    ciaddr: '0.0.0.0',
    yiaddr: '0.0.0.0',
    siaddr: '0.0.0.0',
    giaddr: '0.0.0.0',
    chaddr: Buffer.alloc(16),
    sname: '',
    file: '',
    options: new Map(),
  };
}
