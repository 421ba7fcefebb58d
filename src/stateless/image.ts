import fs from 'node:fs';
import path from 'node:path';
import { pinnedRev, resolveVnfsRef } from '../images/resolve.js';

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

/** `NAME` or `NAME@REV` (src/images/resolve.ts). */
export function splitVnfsRef(ref: string): { name: string; rev?: number } {
  return resolveVnfsRef(ref);
}

/** Where the packed artifacts of a revision live: <statedir>/vnfs/<name>/r<rev>/. */
export function revisionDir(statedir: string, name: string, rev: number): string {
  return path.join(statedir, 'vnfs', name, `r${rev}`);
}

/**
 * The image a node boots: the pin (vnfs field NAME@REV, then attribute vnfs_rev) or the VNFS's
 * current revision (vnfs.current_rev); a VNFS without one is a kernel+initrd VNFS.
 */
export function nodeImage(vnfsField: string, attrs: Record<string, string>, currentRev: number | null | undefined): NodeImage {
  const ref = resolveVnfsRef(vnfsField);
  if (!ref.name || currentRev === null || currentRev === undefined) return { name: ref.name, root: false };
  const p = pinnedRev(vnfsField, attrs, currentRev);
  return p.rev === undefined ? { name: ref.name, root: false } : { name: ref.name, rev: p.rev, root: true };
}
