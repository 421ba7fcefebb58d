import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { sameContent, walkTree } from './tree.js';

/**
 * Committing a tree as an immutable revision, sharing what did not change. A producer fills a
 * staging directory next to the revisions (same file system); then every regular file that is
 * unchanged from the parent revision (same path, type, mode, owner, size, mtime, extended
 * attributes and content) is replaced by a hard link to the parent's, so a revision that
 * changes one file costs about that file. The staging directory becomes the revision with one
 * rename, after a file-system sync: a build killed at any point leaves no half revision, only
 * a staging directory the next operation removes.
 */

export interface DedupeResult {
  /** Files (names) now hard links to the parent revision's. */
  linked: number;
  /** Bytes those links saved. */
  savedBytes: number;
}

/**
 * Replace unchanged files in `staged` by hard links to `parent`'s. Files hard-linked together
 * in the staged tree stay together: a group is linked only when all its names map to the same
 * parent file. Directory mtimes are put back afterwards (a link changes its directory's).
 */
export function dedupeAgainstParent(staged: string, parent: string, stagedXattrs: Map<string, string>, parentXattrs: Map<string, string>): DedupeResult {
  const groups = new Map<number, { names: string[]; st: fs.Stats }>();
  const dirs: { rel: string; atime: Date; mtime: Date }[] = [];
  walkTree(staged, ({ rel, st }) => {
    if (st.isDirectory()) dirs.push({ rel, atime: st.atime, mtime: st.mtime });
    else if (st.isFile() && rel) {
      const g = groups.get(st.ino);
      if (g) g.names.push(rel);
      else groups.set(st.ino, { names: [rel], st });
    }
  });
  let linked = 0;
  let savedBytes = 0;
  for (const { names, st } of groups.values()) {
    let target: fs.Stats | undefined;
    let ok = true;
    for (const n of names) {
      const p = fs.lstatSync(path.join(parent, n), { throwIfNoEntry: false });
      if (
        !p ||
        !p.isFile() ||
        p.mode !== st.mode ||
        p.uid !== st.uid ||
        p.gid !== st.gid ||
        p.size !== st.size ||
        p.mtimeMs !== st.mtimeMs ||
        (stagedXattrs.get(n) ?? '') !== (parentXattrs.get(n) ?? '') ||
        (target && (p.ino !== target.ino || p.dev !== target.dev))
      ) {
        ok = false;
        break;
      }
      target = p;
    }
    if (!ok || !target) continue;
    if (target.ino === st.ino && target.dev === st.dev) {
      // Already the parent's file (a hard-linked copy, as vnfs exec makes): rename() between two
      // names of one inode does nothing, so there is nothing to do either.
      linked += names.length;
      savedBytes += st.size;
      continue;
    }
    if (!sameContent(path.join(staged, names[0]!), path.join(parent, names[0]!))) continue;
    for (const n of names) {
      const dst = path.join(staged, n);
      const tmp = path.join(path.dirname(dst), `.pxeherd-link-${process.pid}`);
      fs.rmSync(tmp, { force: true });
      fs.linkSync(path.join(parent, n), tmp);
      fs.renameSync(tmp, dst);
      fs.rmSync(tmp, { force: true });
      linked++;
    }
    savedBytes += st.size;
  }
  // Deepest first, so setting a parent's times is not undone by its children.
  for (const d of dirs.reverse()) fs.utimesSync(d.rel ? path.join(staged, d.rel) : staged, d.atime, d.mtime);
  return { linked, savedBytes };
}

/** Make everything under `dir` durable (syncfs of its file system) before it is renamed into place. */
export function syncFs(dir: string): void {
  const r = spawnSync('sync', ['-f', dir]);
  if (r.status !== 0) {
    // Older coreutils without -f: a full sync is slower but as safe.
    spawnSync('sync');
  }
}

/** fsync a directory, so a rename inside it survives a power loss. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Pure: revision numbers found as directories (images/<name>/<N>, vnfs/<name>/r<N>). */
export function revDirsIn(names: string[], prefix = ''): number[] {
  const re = new RegExp(`^${prefix}([1-9][0-9]{0,8})$`);
  return names.map((n) => re.exec(n)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1]));
}

/** Pure: mount points at or below `dir` in /proc/self/mountinfo text, deepest first. */
export function mountsUnder(mountinfo: string, dir: string): string[] {
  const base = path.resolve(dir);
  const out: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === base || mp.startsWith(base + '/')) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Remove a work directory that a killed tool may have left file systems mounted in (mmdebstrap
 * mounts /proc, /sys and device nodes into its target): unmount them first, so removing the
 * directory never reaches into the machine's own /dev or /sys.
 */
export function safeRemove(dir: string): void {
  if (!fs.existsSync(dir)) return;
  let info = '';
  try {
    info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    /* no /proc: nothing can be mounted we could see */
  }
  const mounts = mountsUnder(info, dir);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  if (mounts.length && mountsUnder(fs.readFileSync('/proc/self/mountinfo', 'utf8'), dir).length) {
    throw new Error(`cannot remove ${dir}: file systems are still mounted below it (${mounts.join(', ')}); unmount them and try again`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
