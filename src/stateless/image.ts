import fs from 'node:fs';
import path from 'node:path';

/**
 * Which root-filesystem revision a node boots (issue 17). A node pins one with its vnfs
 * field `NAME@REV` or the attribute `vnfs_rev=REV` (node beats group: `attrs` are merged);
 * otherwise the VNFS's current revision is used. A VNFS without revisions is a
 * kernel+initrd VNFS (no root filesystem): `root` is false.
 */
export interface NodeImage {
  /** The bare VNFS name ($VNFS). */
  name: string;
  /** The resolved revision ($VNFSREV), undefined for a kernel+initrd VNFS. */
  rev?: number;
  /** $VNFSROOT: the VNFS has a root filesystem. */
  root: boolean;
}

/** `NAME` or `NAME@REV` (pure; the contract's resolveVnfsRef lives in src/images/resolve.ts). */
export function splitVnfsRef(ref: string): { name: string; rev?: number } {
  const at = ref.lastIndexOf('@');
  if (at <= 0) return { name: ref };
  const rev = Number(ref.slice(at + 1));
  return Number.isInteger(rev) && rev > 0 ? { name: ref.slice(0, at), rev } : { name: ref };
}

/** Where the packed artifacts of a revision live: <statedir>/vnfs/<name>/r<rev>/. */
export function revisionDir(statedir: string, name: string, rev: number): string {
  return path.join(statedir, 'vnfs', name, `r${rev}`);
}

/** Revisions on disk that have a manifest, highest last. */
export function revisionsOnDisk(statedir: string, name: string): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync(path.join(statedir, 'vnfs', name));
  } catch {
    return [];
  }
  return entries
    .map((e) => /^r([1-9][0-9]*)$/.exec(e))
    .filter((m): m is RegExpExecArray => !!m && fs.existsSync(path.join(statedir, 'vnfs', name, m[0], 'manifest.json')))
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/**
 * The image a node boots. `currentRev` is the VNFS's current revision from the database
 * (vnfs.current_rev); when the database does not know one, the highest revision with a
 * manifest on disk is used.
 */
export function nodeImage(statedir: string, vnfsField: string, attrs: Record<string, string>, currentRev: number | null | undefined): NodeImage {
  const ref = splitVnfsRef(vnfsField);
  if (!ref.name) return { name: '', root: false };
  let rev = ref.rev;
  if (rev === undefined && attrs.vnfs_rev && /^[1-9][0-9]*$/.test(attrs.vnfs_rev)) rev = Number(attrs.vnfs_rev);
  if (rev === undefined && currentRev) rev = currentRev;
  if (rev === undefined) {
    const onDisk = revisionsOnDisk(statedir, ref.name);
    rev = onDisk[onDisk.length - 1];
  }
  if (rev === undefined) return { name: ref.name, root: false };
  return { name: ref.name, rev, root: true };
}
