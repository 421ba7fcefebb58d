import { closeSync, openSync, readdirSync, readSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';
import type { Node } from '../nodes/types.js';
import { placesFor, planScripts, type EntryInfo, type Listing, type Plan } from './collect.js';
import { HEAD_BYTES, parseHeader, type ScriptHeader } from './when.js';

/**
 * The thin, impure edge of collect.ts: read the directories a node's scripts live in, afresh
 * on every request (a script dropped in or made executable counts for the next node at once).
 * A missing directory is an empty listing (most nodes have no node/<name>/ directory).
 *
 * Synchronous on purpose: these are a few metadata calls on small local directories, a few
 * microseconds each. Through fs/promises every call was a thread-pool round trip and a
 * promise (~50 µs of the server's thread), and a missing directory an exception: in a
 * 1000-node storm that was ~1.2 s of the thread DHCP and HTTP share.
 */
export function readListing(dir: string, where: Listing['where']): Listing {
  // No exception for the usual case of a directory that does not exist.
  const d = statSync(dir, { throwIfNoEntry: false });
  if (!d || !d.isDirectory()) return { where, dir, entries: [] };
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { where, dir, entries: [] };
    throw e;
  }
  const entries: EntryInfo[] = names.map((name): EntryInfo => {
    try {
      // stat, not lstat: a symlink to a script is a script (admins link shared ones).
      const st = statSync(path.join(dir, name), { throwIfNoEntry: false });
      // Dangling symlink or a file removed meanwhile: not a file.
      return st ? { name, isFile: st.isFile(), executable: (st.mode & 0o111) !== 0, stamp: stampOf(st) } : { name, isFile: false, executable: false };
    } catch {
      // A symlink loop, or no permission to look: not a file either.
      return { name, isFile: false, executable: false };
    }
  });
  return { where, dir, entries };
}

/** What changes whenever the file's content may have: a new file (inode), a write (size, times). */
function stampOf(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

/** path -> the header of the version of the file with that stamp. */
const headerCache = new Map<string, { stamp: string; header: ScriptHeader }>();
/** Stale entries (deleted scripts, node directories of removed nodes) are dropped wholesale. */
const HEADER_CACHE_MAX = 4096;

/**
 * The pxeherd-when: headers of a script (when.ts), read once per version of the file: with
 * the stamp readListing took (same stat), a request costs a map lookup, not a read. Without
 * a stamp (listings built by hand) the file is read every time. A file that cannot be read
 * is a header error: its conditions are unknown, so it must not run as if it had none.
 */
export function readScriptHeader(file: string, stamp?: string): ScriptHeader {
  if (stamp !== undefined) {
    const hit = headerCache.get(file);
    if (hit && hit.stamp === stamp) return hit.header;
  }
  let header: ScriptHeader;
  try {
    const { text, truncated } = readHead(file);
    header = parseHeader(text, truncated);
  } catch (e) {
    header = { when: [], errors: [{ line: 0, message: `cannot read it to look for pxeherd-when: headers (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` }] };
  }
  if (stamp !== undefined) {
    if (headerCache.size >= HEADER_CACHE_MAX) headerCache.clear();
    headerCache.set(file, { stamp, header });
  }
  return header;
}

function readHead(file: string): { text: string; truncated: boolean } {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(HEAD_BYTES);
    let n = 0;
    while (n < HEAD_BYTES) {
      const got = readSync(fd, buf, n, HEAD_BYTES - n, null);
      if (got === 0) break;
      n += got;
    }
    return { text: buf.toString('utf8', 0, n), truncated: n === HEAD_BYTES };
  } finally {
    closeSync(fd);
  }
}

export interface CollectResult extends Plan {
  /** Names that could not be used as directories (invalid group/vnfs/node names). */
  problems: string[];
}

export async function collectScripts(root: string, state: string, node: Pick<Node, 'name' | 'group' | 'vnfs'>): Promise<CollectResult> {
  const { places, problems } = placesFor(state, node);
  const abs = path.resolve(root);
  const listings = places.map((p) => readListing(path.join(abs, p.rel), p.where));
  return { ...planScripts(listings), problems };
}
