import type { Node } from '../nodes/types.js';
import { nameError, stateError } from '../nodes/names.js';
import { resolveVnfsRef } from '../images/resolve.js';

/**
 * Which nodescripts run for (state, node), in which order. Pure: it takes directory listings
 * and returns a plan, so ordering and override rules are tested without touching a disk.
 * fsread.ts is the thin reader that produces the listings.
 */

/** Where a script came from, relative to nodescripts/<state>/. */
export type Where = 'all' | `group/${string}` | `vnfs/${string}` | `node/${string}`;

/** One place a node's scripts are looked up in. `rel` is relative to the nodescripts dir. */
export interface Place {
  where: Where;
  rel: string;
}

export interface EntryInfo {
  name: string;
  isFile: boolean;
  executable: boolean;
  /** Identity of this version of the file (device, inode, size, times): keys the header cache. */
  stamp?: string;
}

export interface Listing {
  where: Where;
  /** Absolute directory path (used to build script paths). */
  dir: string;
  entries: EntryInfo[];
}

export interface PlannedScript {
  name: string;
  where: Where;
  path: string;
  stamp?: string;
}

/** `when`: its pxeherd-when: header does not hold for the node (when.ts). */
export type SkipKind = 'not-executable' | 'overridden' | 'unsafe-name' | 'when';

export interface SkippedScript {
  name: string;
  where: Where;
  path: string;
  kind: SkipKind;
  reason: string;
}

export interface Plan {
  order: PlannedScript[];
  skipped: SkippedScript[];
}

/**
 * Precedence, most specific first. Perceus did not define one; DESIGN.md does:
 * node > group > all > vnfs (a VNFS ships defaults, the site's `all` may replace them).
 */
const RANK: Record<string, number> = { node: 0, group: 1, all: 2, vnfs: 3 };

function rankOf(where: Where): number {
  return RANK[where.split('/')[0]!] ?? 99;
}

/**
 * The places to look in for a node, in precedence order. Names that could leave the
 * directory (validated by nameError) or are empty are left out instead of being joined
 * into a path; the caller may report them via `problems`.
 */
export function placesFor(state: string, node: Pick<Node, 'name' | 'group' | 'vnfs'>): { places: Place[]; problems: string[] } {
  const problems: string[] = [];
  const sErr = stateError(state);
  if (sErr) return { places: [], problems: [sErr] };
  const places: Place[] = [];
  const add = (kind: 'node' | 'group' | 'vnfs', name: string) => {
    if (!name) return;
    const err = nameError(kind, name);
    if (err) {
      problems.push(err);
      return;
    }
    places.push({ where: `${kind}/${name}` as Where, rel: `${state}/${kind}/${name}` });
  };
  add('node', node.name);
  add('group', node.group);
  places.push({ where: 'all', rel: `${state}/all` });
  // A pinned node (vnfs field NAME@REV) uses the VNFS's scripts like any other.
  add('vnfs', resolveVnfsRef(node.vnfs).name);
  return { places, problems };
}

/** Ignored silently: editor backups, dotfiles (.keep, .swp), anything that is not a file. */
export function isIgnored(e: EntryInfo): boolean {
  return !e.isFile || e.name.startsWith('.') || e.name.endsWith('~') || e.name === '';
}

/**
 * Control characters in a file name would end up in comment and error lines sent to the
 * node's shell; a newline there would turn part of the name into a command.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE_NAME = /[\x00-\x1f\x7f]/;

/** Byte-order comparison of file names (not locale order, not UTF-16 code units). */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

/**
 * Merge listings by file name (the most specific place wins), drop ignored entries, report
 * non-executable and overridden ones, and sort the rest by name in byte order.
 */
export function planScripts(listings: Listing[]): Plan {
  const sorted = [...listings].sort((a, b) => rankOf(a.where) - rankOf(b.where));
  const winners = new Map<string, { entry: EntryInfo; where: Where; path: string }>();
  const skipped: SkippedScript[] = [];
  for (const l of sorted) {
    for (const e of l.entries) {
      if (isIgnored(e)) continue;
      const path = joinPath(l.dir, e.name);
      if (UNSAFE_NAME.test(e.name)) {
        skipped.push({
          name: e.name,
          where: l.where,
          path,
          kind: 'unsafe-name',
          reason: 'file name contains control characters: rename it',
        });
        continue;
      }
      const prev = winners.get(e.name);
      if (prev) {
        skipped.push({ name: e.name, where: l.where, path, kind: 'overridden', reason: `overridden by ${prev.where}/${e.name}` });
        continue;
      }
      winners.set(e.name, { entry: e, where: l.where, path });
    }
  }
  const order: PlannedScript[] = [];
  for (const [name, w] of winners) {
    if (!w.entry.executable) {
      // A non-executable file in a specific place still overrides (and so disables) the
      // same name from a less specific place: that is how an admin turns a script off for
      // one node without deleting it.
      skipped.push({ name, where: w.where, path: w.path, kind: 'not-executable', reason: 'not executable: chmod +x to run it' });
      continue;
    }
    order.push({ name, where: w.where, path: w.path, ...(w.entry.stamp !== undefined ? { stamp: w.entry.stamp } : {}) });
  }
  order.sort((a, b) => compareBytes(a.name, b.name));
  skipped.sort((a, b) => compareBytes(a.name, b.name) || rankOf(a.where) - rankOf(b.where));
  return { order, skipped };
}

/** "init/group/compute/10-foo": how a script is named in events, errors and listings. */
export function scriptLabel(state: string, s: { where: Where; name: string }): string {
  return `${state}/${s.where}/${s.name}`;
}
