/**
 * A "newc" cpio archive (the initramfs format) written in memory. Pure: entries in,
 * bytes out; no cpio binary, no root needed for device nodes, and ownership is root's
 * regardless of who builds.
 */
export type CpioEntry =
  | { type: 'dir'; name: string; mode?: number }
  | { type: 'file'; name: string; data: Buffer; mode?: number }
  | { type: 'symlink'; name: string; target: string }
  | { type: 'char'; name: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(ino: number, mode: number, size: number, name: string, rdevMajor = 0, rdevMinor = 0, mtime = 0): Buffer {
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const fields = [
    '070701',
    hex8(ino),
    hex8(mode),
    hex8(0), // uid
    hex8(0), // gid
    hex8(mode & S_IFDIR ? 2 : 1), // nlink
    hex8(mtime),
    hex8(size),
    hex8(0), // devmajor
    hex8(0), // devminor
    hex8(rdevMajor),
    hex8(rdevMinor),
    hex8(nameBytes.length),
    hex8(0), // check
  ].join('');
  const h = Buffer.from(fields, 'latin1');
  return Buffer.concat([h, nameBytes, Buffer.alloc(pad4(h.length + nameBytes.length))]);
}

/** Entry names are relative ("init", "bin/busybox"); parents must come before children. */
export function writeCpio(entries: CpioEntry[], mtime = 0): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of entries) {
    const name = e.name.replace(/^\/+/, '');
    if (!name || name.split('/').includes('..')) throw new Error(`cpio: bad entry name "${e.name}"`);
    let data: Buffer = Buffer.alloc(0);
    let mode: number;
    let maj = 0;
    let min = 0;
    switch (e.type) {
      case 'dir':
        mode = S_IFDIR | (e.mode ?? 0o755);
        break;
      case 'file':
        mode = S_IFREG | (e.mode ?? 0o644);
        data = e.data;
        break;
      case 'symlink':
        mode = S_IFLNK | 0o777;
        data = Buffer.from(e.target, 'utf8');
        break;
      case 'char':
        mode = S_IFCHR | (e.mode ?? 0o600);
        maj = e.major;
        min = e.minor;
        break;
    }
    parts.push(header(ino++, mode, data.length, name, maj, min, mtime), data, Buffer.alloc(pad4(data.length)));
  }
  parts.push(header(0, 0, 0, 'TRAILER!!!'));
  return Buffer.concat(parts);
}

export interface CpioMember {
  name: string;
  mode: number;
  data: Buffer;
  rdevMajor: number;
  rdevMinor: number;
}

/** Read a newc archive back (for tests and `stage1 build` self-checks). */
export function readCpio(buf: Buffer): CpioMember[] {
  const out: CpioMember[] = [];
  let off = 0;
  for (;;) {
    if (off + 110 > buf.length) throw new Error('cpio: truncated header');
    const magic = buf.toString('latin1', off, off + 6);
    if (magic !== '070701' && magic !== '070702') throw new Error(`cpio: bad magic at ${off}`);
    const f = (i: number) => parseInt(buf.toString('latin1', off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = f(1);
    const size = f(6);
    const namesize = f(11);
    const nameStart = off + 110;
    const name = buf.toString('utf8', nameStart, nameStart + namesize - 1);
    let p = nameStart + namesize;
    p += pad4(p);
    if (name === 'TRAILER!!!') return out;
    out.push({ name, mode, data: buf.subarray(p, p + size), rdevMajor: f(9), rdevMinor: f(10) });
    p += size;
    p += pad4(p);
    off = p;
  }
}
