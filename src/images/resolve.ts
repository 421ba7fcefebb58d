import { nameError } from '../nodes/names.js';

/** A VNFS reference as nodes carry it: `NAME` (the current revision) or `NAME@REV` (a pin). */
export interface VnfsRef {
  name: string;
  rev?: number;
}

const REV_RE = /^[1-9][0-9]{0,8}$/;

/**
 * Pure: split a node's vnfs field. `deb12` -> { name: 'deb12' }; `deb12@3` -> { name: 'deb12', rev: 3 }.
 * It does not validate the name (callers that write the field call vnfsRefError first);
 * a malformed revision part is left in the name, so a lookup of that name simply fails.
 */
export function resolveVnfsRef(ref: string): VnfsRef {
  const at = ref.lastIndexOf('@');
  if (at <= 0) return { name: ref };
  const rev = ref.slice(at + 1);
  if (!REV_RE.test(rev)) return { name: ref };
  return { name: ref.slice(0, at), rev: Number(rev) };
}

/** Why a vnfs field value is not allowed, or undefined. */
export function vnfsRefError(ref: string): string | undefined {
  const at = ref.lastIndexOf('@');
  if (at >= 0) {
    const rev = ref.slice(at + 1);
    if (!REV_RE.test(rev)) return `VNFS revision "${rev}" in "${ref}" is not allowed: write NAME@REV with REV a revision number (1, 2, ...)`;
    return nameError('vnfs', ref.slice(0, at));
  }
  return nameError('vnfs', ref);
}

/** Pure: a revision number from an attribute value (`vnfs_rev`), or undefined when absent/invalid. */
export function parseRev(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const s = v.trim();
  return REV_RE.test(s) ? Number(s) : undefined;
}

/**
 * Pure: which revision a node runs. The node's field pin (`NAME@REV`) wins, then the
 * `vnfs_rev` attribute (node's over group's: `attrs` is already merged), then the VNFS's
 * current revision (undefined for a kernel+initrd VNFS).
 */
export function pinnedRev(ref: string, attrs: Record<string, string>, currentRev: number | null | undefined): { name: string; rev?: number; pinned: boolean } {
  const r = resolveVnfsRef(ref);
  if (r.rev !== undefined) return { name: r.name, rev: r.rev, pinned: true };
  const a = parseRev(attrs.vnfs_rev);
  if (a !== undefined) return { name: r.name, rev: a, pinned: true };
  return { name: r.name, rev: currentRev ?? undefined, pinned: false };
}

/**
 * VNFSREV/VNFSROOT for a node's nodescripts: the revision it boots (field pin, then the
 * `vnfs_rev` attribute, then the current revision) when its VNFS has a root filesystem.
 */
export function imageEnvFor(vnfs: (name: string) => { currentRev?: number | null } | undefined) {
  return (node: { vnfs: string }, attrs: Record<string, string>): { rev?: number; root: boolean } => {
    if (!node.vnfs) return { root: false };
    const ref = resolveVnfsRef(node.vnfs);
    const v = vnfs(ref.name);
    if (!v || v.currentRev === null || v.currentRev === undefined) return { root: false };
    return { rev: pinnedRev(node.vnfs, attrs, v.currentRev).rev, root: true };
  };
}
