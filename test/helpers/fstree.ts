/**
 * A file-by-file description of a directory tree, for comparing an extracted image with a
 * reference: type, mode (with setuid bits), owner, size, content hash, link target, xattrs
 * (read with getfattr, so file capabilities included) and hard-link groups.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface FileFacts {
  type: string;
  mode: string;
  owner: string;
  size?: number;
  sha256?: string;
  link?: string;
  rdev?: string;
  xattrs?: Record<string, string>;
  /** The first path (sorted) of the hard-link group this file belongs to, when it has more than one name. */
  linkGroup?: string;
}

function typeOf(st: fs.Stats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFile()) return 'file';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'other';
}

/** getfattr's dump of every xattr under root (not following symlinks), by relative path. */
export function readXattrs(root: string): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>();
  let text = '';
  try {
    text = execFileSync('getfattr', ['-R', '-d', '-m', '-', '-h', '--absolute-names', '-e', 'hex', root], { encoding: 'utf8', maxBuffer: 256 << 20 });
  } catch (e) {
    text = String((e as { stdout?: string }).stdout ?? '');
  }
  let cur: Record<string, string> | undefined;
  for (const line of text.split('\n')) {
    const m = /^# file: (.*)$/.exec(line);
    if (m) {
      cur = {};
      out.set(path.relative(root, m[1]) || '.', cur);
    } else if (cur && line.includes('=')) {
      const i = line.indexOf('=');
      cur[line.slice(0, i)] = line.slice(i + 1);
    }
  }
  return out;
}

export function describeTree(root: string, opts: { xattrs?: boolean } = {}): Map<string, FileFacts> {
  const facts = new Map<string, FileFacts>();
  const inodes = new Map<string, string[]>();
  const walk = (rel: string) => {
    const abs = rel === '.' ? root : path.join(root, rel);
    const st = fs.lstatSync(abs);
    const f: FileFacts = { type: typeOf(st), mode: (st.mode & 0o7777).toString(8), owner: `${st.uid}:${st.gid}` };
    if (f.type === 'file') {
      f.size = st.size;
      f.sha256 = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        inodes.set(key, [...(inodes.get(key) ?? []), rel]);
      }
    }
    if (f.type === 'symlink') f.link = fs.readlinkSync(abs);
    if (f.type === 'char' || f.type === 'block') f.rdev = String(st.rdev);
    if (f.type === 'symlink') delete (f as { mode?: string }).mode; // symlink modes mean nothing on Linux
    facts.set(rel, f);
    if (f.type === 'dir') for (const n of fs.readdirSync(abs).sort()) walk(rel === '.' ? n : `${rel}/${n}`);
  };
  walk('.');
  for (const names of inodes.values()) {
    if (names.length < 2) continue;
    const first = [...names].sort()[0];
    for (const n of names) facts.get(n)!.linkGroup = first;
  }
  if (opts.xattrs !== false) {
    for (const [rel, x] of readXattrs(root)) {
      const f = facts.get(rel);
      if (f && Object.keys(x).length) f.xattrs = Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : 1)));
    }
  }
  return facts;
}

/** Human-readable differences between two descriptions (empty when equal). */
export function diffTrees(want: Map<string, FileFacts>, got: Map<string, FileFacts>, ignore: (rel: string) => boolean = () => false): string[] {
  const out: string[] = [];
  for (const [rel, w] of want) {
    if (ignore(rel)) continue;
    const g = got.get(rel);
    if (!g) out.push(`missing: ${rel}`);
    else if (JSON.stringify(w) !== JSON.stringify(g)) out.push(`differs: ${rel}: want ${JSON.stringify(w)} got ${JSON.stringify(g)}`);
  }
  for (const rel of got.keys()) if (!want.has(rel) && !ignore(rel)) out.push(`extra: ${rel}`);
  return out;
}
