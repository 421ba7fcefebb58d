/**
 * A streaming reader of tar headers: ustar, POSIX pax (`x` per entry, `g` global) and GNU
 * long names (`L`, `K`). Pure: bytes in, events out, no files touched. Written here rather
 * than taken from npm because pxeherd's only tar dependency is GNU tar itself (no tar parser
 * is a dependency), the checks that matter (checksums, truncation, the end-of-archive block,
 * pax `size`/`path` overrides) are ~250 lines, and one reader serves both the validation of
 * a layer and the reading of OCI/Docker archives into the blob cache.
 *
 * Use: `for (const ev of reader.push(chunk)) ...` for every chunk, then `reader.end()`.
 * Events borrow slices of the chunk they came from.
 */
import { ImageError } from './errors.js';

export type TarKind = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  /** The member name as stored (after pax/GNU long-name overrides), not normalized. */
  name: string;
  kind: TarKind;
  /** Hard link or symlink target, as stored. */
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow the header (0 for links, directories, devices). */
  size: number;
  mtime: number;
  devmajor: number;
  devminor: number;
  /** Extended attributes from pax `SCHILY.xattr.*` records. */
  xattrs: Map<string, Buffer>;
  /** Byte offset of the header in the (uncompressed) stream. */
  offset: number;
}

export type TarEvent =
  | { type: 'entry'; header: TarHeader }
  | { type: 'data'; header: TarHeader; chunk: Buffer }
  | { type: 'entryEnd'; header: TarHeader };

const BLOCK = 512;
/** pax and GNU long-name records are metadata: more than this is not a real archive. */
const MAX_META = 8 << 20;

const KINDS: Record<string, TarKind> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file', // contiguous file: a regular file everywhere that matters
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

/** Types whose size field never counts data (as GNU tar and Go's archive/tar read them). */
const HEADER_ONLY = new Set<TarKind>(['hardlink', 'symlink', 'char', 'block', 'dir', 'fifo']);

function cstring(b: Buffer, start: number, len: number): string {
  const field = b.subarray(start, start + len);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

/** An octal field, or GNU base-256 when the top bit of its first byte is set. */
function numeric(b: Buffer, start: number, len: number, what: string, near: string): number {
  const field = b.subarray(start, start + len);
  if (field[0] & 0x80) {
    if (field[0] === 0xff) throw new ImageError(`tar header of "${near}": negative ${what}`, near);
    let n = field[0] & 0x7f;
    for (let i = 1; i < len; i++) {
      n = n * 256 + field[i];
      if (n > Number.MAX_SAFE_INTEGER) throw new ImageError(`tar header of "${near}": ${what} too large`, near);
    }
    return n;
  }
  const s = field.toString('latin1').replace(/[\0 ]+$/, '').replace(/^[ \0]+/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new ImageError(`tar header of "${near}": ${what} "${s}" is not an octal number: the archive is corrupt`, near);
  return parseInt(s, 8);
}

function checksumOk(b: Buffer): boolean {
  const stored = cstring(b, 148, 8).trim();
  if (!/^[0-7]+$/.test(stored)) return false;
  const want = parseInt(stored, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : b[i];
    unsigned += v;
    signed += v > 127 ? v - 256 : v;
  }
  return want === unsigned || want === signed;
}

/** `"%d key=value\n"` records; values are bytes (xattrs need not be UTF-8). */
export function parsePax(data: Buffer, near: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // some writers pad the record block with NULs
    const sp = data.indexOf(0x20, pos);
    const len = sp < 0 ? NaN : Number(data.subarray(pos, sp).toString('latin1'));
    if (!Number.isInteger(len) || len <= sp - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new ImageError(`pax header before "${near}" is malformed at byte ${pos}: the archive is corrupt`, near);
    }
    const rec = data.subarray(sp + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new ImageError(`pax header before "${near}": record without "=": the archive is corrupt`, near);
    out.set(rec.subarray(0, eq).toString('utf8'), rec.subarray(eq + 1));
    pos += len;
  }
  return out;
}

type Meta = 'pax' | 'global' | 'longname' | 'longlink';

export class TarReader {
  private pending = Buffer.alloc(0);
  private offset = 0;
  /** Data bytes still to deliver for the current entry, then padding to skip. */
  private remaining = 0;
  private padding = 0;
  private current: TarHeader | undefined;
  private meta: { kind: Meta; parts: Buffer[]; size: number } | undefined;
  private pax = new Map<string, Buffer>();
  private global = new Map<string, Buffer>();
  private longname: string | undefined;
  private longlink: string | undefined;
  private ended = false;
  /** The last member seen, to name where a corrupt or truncated archive went wrong. */
  lastName = '(start of archive)';

  push(chunk: Buffer): TarEvent[] {
    const events: TarEvent[] = [];
    let buf = chunk;
    while (buf.length > 0) {
      if (this.ended) return events; // what follows the end-of-archive block is ignored, as GNU tar does
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, buf.length);
        const part = buf.subarray(0, n);
        if (this.meta) this.meta.parts.push(Buffer.from(part));
        else events.push({ type: 'data', header: this.current!, chunk: part });
        this.remaining -= n;
        this.offset += n;
        buf = buf.subarray(n);
        if (this.remaining === 0) this.finishData(events);
        continue;
      }
      if (this.padding > 0) {
        const n = Math.min(this.padding, buf.length);
        this.padding -= n;
        this.offset += n;
        buf = buf.subarray(n);
        continue;
      }
      // A header: gather 512 bytes.
      const need = BLOCK - this.pending.length;
      const take = buf.subarray(0, need);
      this.pending = this.pending.length ? Buffer.concat([this.pending, take]) : Buffer.from(take);
      buf = buf.subarray(take.length);
      if (this.pending.length < BLOCK) break;
      const block = this.pending;
      this.pending = Buffer.alloc(0);
      this.header(block, events);
      this.offset += BLOCK;
    }
    return events;
  }

  /** The stream is over: anything but a clean end-of-archive is a truncated archive. */
  end(): void {
    if (this.ended) return;
    const where = this.current ? `inside "${this.current.name}"` : this.meta ? `inside the extended header before "${this.lastName}"` : `after "${this.lastName}"`;
    throw new ImageError(
      `the archive is truncated: it ends ${where} at byte ${this.offset + this.pending.length} without the end-of-archive block: re-download or re-create it`,
      this.current?.name ?? this.lastName,
    );
  }

  get done(): boolean {
    return this.ended;
  }

  private finishData(events: TarEvent[]): void {
    if (this.meta) {
      const data = Buffer.concat(this.meta.parts);
      const kind = this.meta.kind;
      this.meta = undefined;
      if (kind === 'pax') for (const [k, v] of parsePax(data, this.lastName)) this.pax.set(k, v);
      else if (kind === 'global') for (const [k, v] of parsePax(data, this.lastName)) this.global.set(k, v);
      else {
        const nul = data.indexOf(0);
        const s = data.subarray(0, nul < 0 ? data.length : nul).toString('utf8');
        if (kind === 'longname') this.longname = s;
        else this.longlink = s;
      }
    } else {
      events.push({ type: 'entryEnd', header: this.current! });
      this.current = undefined;
    }
  }

  private header(block: Buffer, events: TarEvent[]): void {
    if (block.every((b) => b === 0)) {
      if (this.meta || this.longname !== undefined || this.pax.size) {
        throw new ImageError(`the archive is corrupt: an extended header before the end of the archive (after "${this.lastName}") has no entry`, this.lastName);
      }
      this.ended = true;
      return;
    }
    if (!checksumOk(block)) {
      throw new ImageError(`the archive is corrupt: bad tar header checksum at byte ${this.offset} (after "${this.lastName}"): re-download or re-create it`, this.lastName);
    }
    const type = String.fromCharCode(block[156]);
    const ustar = block.subarray(257, 263).toString('latin1') === 'ustar\0';
    let name = cstring(block, 0, 100);
    if (ustar) {
      const prefix = cstring(block, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const near = this.longname ?? name;
    const size = numeric(block, 124, 12, 'size', near);
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    const meta: Meta | undefined = type === 'x' ? 'pax' : type === 'g' ? 'global' : type === 'L' ? 'longname' : type === 'K' ? 'longlink' : undefined;
    if (meta) {
      if (size > MAX_META) throw new ImageError(`extended header before "${near}" claims ${size} bytes: the archive is corrupt`, near);
      this.meta = { kind: meta, parts: [], size };
      this.remaining = size;
      this.padding = pad;
      if (size === 0) this.finishData(events);
      return;
    }
    if (type === 'V') {
      // A GNU volume label names the archive, not a member.
      this.remaining = 0;
      this.padding = 0;
      return;
    }
    const attrs = new Map([...this.global, ...this.pax]);
    const str = (k: string) => attrs.get(k)?.toString('utf8');
    const paxNum = (k: string, fallback: number) => {
      const v = str(k);
      if (v === undefined) return fallback;
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new ImageError(`pax header of "${near}": ${k}="${v}" is not a number: the archive is corrupt`, near);
      return k === 'mtime' ? n : Math.floor(n);
    };
    name = str('path') ?? this.longname ?? name;
    const kind = KINDS[type];
    if (type === 'S' || [...attrs.keys()].some((k) => k.startsWith('GNU.sparse.'))) {
      throw new ImageError(`"${name}" is a GNU sparse file, which pxeherd does not extract: re-create the archive without --sparse`, name);
    }
    if (!kind) {
      const what = type === 'D' ? 'a GNU incremental (dumpdir) entry' : type === 'M' ? 'a multi-volume continuation' : `of unknown tar type "${type}"`;
      throw new ImageError(`"${name}" is ${what}, which pxeherd does not extract: re-create the archive with plain GNU tar or an OCI tool`, name);
    }
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of attrs) if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
    const realSize = paxNum('size', size);
    const header: TarHeader = {
      name,
      kind,
      linkname: str('linkpath') ?? this.longlink ?? cstring(block, 157, 100),
      mode: numeric(block, 100, 8, 'mode', name),
      uid: paxNum('uid', numeric(block, 108, 8, 'uid', name)),
      gid: paxNum('gid', numeric(block, 116, 8, 'gid', name)),
      size: HEADER_ONLY.has(kind) ? 0 : realSize,
      mtime: paxNum('mtime', numeric(block, 136, 12, 'mtime', name)),
      devmajor: kind === 'char' || kind === 'block' ? numeric(block, 329, 8, 'devmajor', name) : 0,
      devminor: kind === 'char' || kind === 'block' ? numeric(block, 337, 8, 'devminor', name) : 0,
      xattrs,
      offset: this.offset,
    };
    this.pax = new Map();
    this.longname = undefined;
    this.longlink = undefined;
    this.lastName = name;
    this.current = header;
    events.push({ type: 'entry', header });
    this.remaining = header.size;
    this.padding = (BLOCK - (header.size % BLOCK)) % BLOCK;
    if (header.size === 0) this.finishData(events);
  }
}
