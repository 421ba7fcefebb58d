import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Node } from '../nodes/types.js';
import { placesFor, planScripts, type EntryInfo, type Listing, type Plan } from './collect.js';

/**
 * The thin, impure edge of collect.ts: read the directories a node's scripts live in.
 * A missing directory is an empty listing (most nodes have no node/<name>/ directory).
 */
export async function readListing(dir: string, where: Listing['where']): Promise<Listing> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { where, dir, entries: [] };
    throw e;
  }
  const entries: EntryInfo[] = await Promise.all(
    names.map(async (name): Promise<EntryInfo> => {
      try {
        // stat, not lstat: a symlink to a script is a script (admins link shared ones).
        const st = await stat(path.join(dir, name));
        return { name, isFile: st.isFile(), executable: (st.mode & 0o111) !== 0 };
      } catch {
        // Dangling symlink or a file removed meanwhile: not a file.
        return { name, isFile: false, executable: false };
      }
    }),
  );
  return { where, dir, entries };
}

export interface CollectResult extends Plan {
  /** Names that could not be used as directories (invalid group/vnfs/node names). */
  problems: string[];
}

export async function collectScripts(root: string, state: string, node: Pick<Node, 'name' | 'group' | 'vnfs'>): Promise<CollectResult> {
  const { places, problems } = placesFor(state, node);
  const abs = path.resolve(root);
  const listings = await Promise.all(places.map((p) => readListing(path.join(abs, p.rel), p.where)));
  return { ...planScripts(listings), problems };
}
