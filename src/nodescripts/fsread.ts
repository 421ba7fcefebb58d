import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Node } from '../nodes/types.js';
import { placesFor, planScripts, type EntryInfo, type Listing, type Plan } from './collect.js';

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
      return st ? { name, isFile: st.isFile(), executable: (st.mode & 0o111) !== 0 } : { name, isFile: false, executable: false };
    } catch {
      // A symlink loop, or no permission to look: not a file either.
      return { name, isFile: false, executable: false };
    }
  });
  return { where, dir, entries };
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
