import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ImageError } from './errors.js';

/**
 * Reading a root filesystem tree: walking it (lstat, never following symlinks), its extended
 * attributes (file capabilities, ACLs, SELinux labels: getfattr, one process for the whole
 * tree), its size, and a digest of everything a pack reads.
 */

export interface TreeEntry {
  /** Relative path, '' for the root. */
  rel: string;
  st: fs.Stats;
}

/** Depth-first, parents before children, names in byte order. */
export function walkTree(root: string, visit: (e: TreeEntry) => void): void {
  const rec = (rel: string) => {
    const abs = rel ? path.join(root, rel) : root;
    const st = fs.lstatSync(abs);
    visit({ rel, st });
    if (!st.isDirectory()) return;
    const names = fs.readdirSync(abs).sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : a === b ? 0 : 1));
    for (const n of names) rec(rel ? `${rel}/${n}` : n);
  };
  rec('');
}

/** files: entries other than the root; bytes: regular file sizes, hard links counted once. */
export function treeStats(root: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const seen = new Set<number>();
  walkTree(root, ({ rel, st }) => {
    if (!rel) return;
    files++;
    if (st.isFile() && !seen.has(st.ino)) {
      seen.add(st.ino);
      bytes += st.size;
    }
  });
  return { files, bytes };
}

/** getfattr escapes unusual bytes in file names as \ooo. */
function unescapeGetfattr(s: string): string {
  if (!s.includes('\\')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else if (s[i] === '\\' && s[i + 1] === '\\') {
      bytes.push(0x5c);
      i++;
    } else bytes.push(...Buffer.from(s[i]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Pure: parse `getfattr -R -d -m - -e hex --absolute-names` output into rel path -> "key=value\n..." (sorted). */
export function parseXattrDump(text: string, root: string): Map<string, string> {
  const out = new Map<string, string>();
  const prefix = root.endsWith('/') ? root : root + '/';
  let cur: string | undefined;
  let lines: string[] = [];
  const flush = () => {
    if (cur !== undefined && lines.length) out.set(cur, lines.sort().join('\n'));
    lines = [];
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      flush();
      const abs = unescapeGetfattr(line.slice('# file: '.length));
      cur = abs === root || abs + '/' === prefix ? '' : abs.startsWith(prefix) ? abs.slice(prefix.length) : abs;
    } else if (line.trim() && cur !== undefined) lines.push(line.trim());
  }
  flush();
  return out;
}

/** Every extended attribute in a tree (all namespaces: root reads trusted.* and security.*). */
export async function readXattrs(root: string): Promise<{ map: Map<string, string>; text: string }> {
  const text = await new Promise<string>((resolve, reject) => {
    const p = spawn('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.on('error', (e) => reject(new ImageError(`getfattr: ${e.message} (install the Debian package "attr")`)));
    p.on('close', (code) => {
      // getfattr exits 1 when some file has no attributes to show in a listing: only a message on stderr is a failure.
      if (code !== 0 && err.trim()) reject(new Error(`getfattr -R ${root}: ${err.trim().split('\n')[0]}`));
      else resolve(Buffer.concat(out).toString('utf8'));
    });
  });
  return { map: parseXattrDump(text, root), text };
}

/** True when two regular files hold the same bytes. */
export function sameContent(a: string, b: string): boolean {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  try {
    const ba = Buffer.allocUnsafe(1 << 20);
    const bb = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const na = fs.readSync(fa, ba, 0, ba.length, null);
      const nb = fs.readSync(fb, bb, 0, bb.length, null);
      if (na !== nb) return false;
      if (na === 0) return true;
      if (ba.compare(bb, 0, nb, 0, na) !== 0) return false;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}

/**
 * A digest of everything mksquashfs reads from a tree: paths, types, modes, owners, sizes,
 * mtimes, device numbers, symlink targets, file identities (inodes: an unchanged file is a
 * hard link to its parent revision's) and extended attributes. Same digest -> same pack.
 */
export function treeDigest(root: string, xattrs: Map<string, string>, extra = ''): string {
  const h = crypto.createHash('sha256');
  h.update(extra + '\0');
  walkTree(root, ({ rel, st }) => {
    const link = st.isSymbolicLink() ? fs.readlinkSync(path.join(root, rel)) : '';
    const id = st.isFile() ? `${st.dev}:${st.ino}` : '';
    h.update(`${rel}\0${st.mode}\0${st.uid}\0${st.gid}\0${st.isDirectory() ? 0 : st.size}\0${Math.floor(st.mtimeMs / 1000)}\0${st.rdev}\0${link}\0${id}\0${xattrs.get(rel) ?? ''}\n`);
  });
  return h.digest('hex');
}
