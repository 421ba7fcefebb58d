/**
 * A small ustar writer for the per-node bundles (identity, overlay) that stage one and the
 * running OS unpack with busybox or GNU tar. Deterministic: mtime is fixed, entries come in
 * the order given, so the same files give the same bytes (and the same hash).
 */
export interface TarEntry {
  /** Relative path, no leading '/', '/'-separated. Directories end without '/'. */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  data?: Buffer;
  /** Symlink target. */
  target?: string;
}

const BLOCK = 512;

function octal(n: number, width: number): string {
  // width includes the terminating NUL
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function splitName(p: string): { name: string; prefix: string } {
  if (Buffer.byteLength(p) <= 100) return { name: p, prefix: '' };
  // ustar: prefix (155) + '/' + name (100), split at a '/'.
  for (let i = p.length - 1; i > 0; i--) {
    if (p[i] !== '/') continue;
    const prefix = p.slice(0, i);
    const name = p.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name) return { name, prefix };
  }
  throw new Error(`path too long for a tar entry: ${p}`);
}

function header(e: TarEntry, size: number): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  const p = e.type === 'dir' ? `${e.path}/` : e.path;
  const { name, prefix } = splitName(p);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(e.mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(e.uid, 8), 108, 'ascii');
  h.write(octal(e.gid, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii'); // mtime: fixed, for reproducible bytes
  h.write('        ', 148, 'ascii'); // checksum placeholder
  h.write(e.type === 'dir' ? '5' : e.type === 'symlink' ? '2' : '0', 156, 'ascii');
  if (e.type === 'symlink') {
    if (Buffer.byteLength(e.target ?? '') > 100) throw new Error(`symlink target too long for a tar entry: ${e.path} -> ${e.target}`);
    h.write(e.target ?? '', 157, 100, 'utf8');
  }
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

export function writeTar(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.type === 'file' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    parts.push(header(e, data.length));
    if (data.length) {
      parts.push(data);
      const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
      if (pad) parts.push(Buffer.alloc(pad, 0));
    }
  }
  parts.push(Buffer.alloc(BLOCK * 2, 0));
  return Buffer.concat(parts);
}
