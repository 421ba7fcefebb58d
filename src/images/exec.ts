import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ImageError } from './errors.js';
import { safeRemove } from './revisions.js';
import { runTool, tail, tarPipe } from './run.js';
import { readXattrs, walkTree } from './tree.js';

/**
 * Running a command inside an image (`vnfs exec`, `vnfs shell`): in its own mount and pid
 * namespace (unshare), on an overlay whose lower layer is the current revision's tree
 * (read-only: it is never written) and whose upper layer is a work directory, with /proc,
 * /sys, /dev and a tmpfs /run mounted and the master's resolv.conf visible, so apt works.
 * Everything mounted disappears with the namespace. On success the upper layer is applied
 * to a hard-linked copy of the tree, which becomes the next revision; on failure it is thrown away.
 */

/** The shell run inside the new namespaces: mounts, then chroot. Arguments: L U W M RESOLV MODE TARGET -- CMD... */
const INSIDE = `set -e
L=$1 U=$2 W=$3 M=$4 R=$5 MODE=$6 T=$7; shift 7
mount -t overlay overlay -o "lowerdir=$L,upperdir=$U,workdir=$W,redirect_dir=off,metacopy=off,index=off" "$M"
[ -d "$M/proc" ] && mount -t proc proc "$M/proc"
[ -d "$M/sys" ] && mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
[ -d "$M/dev" ] && mount --rbind /dev "$M/dev"
[ -d "$M/run" ] && mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$M/run"
case $MODE in
  bind) mount --bind "$R" "$M/$T" ;;
  run) mkdir -p "$(dirname "$M/$T")"; cat "$R" > "$M/$T" ;;
  create) cat "$R" > "$M/$T" ;;
esac
exec chroot "$M" "$@"
`;

/** Pure: follow a symlink chain as it resolves inside the image (absolute targets are the image's). */
export function resolveInImage(root: string, rel: string, depth = 0): string | undefined {
  if (depth > 16) return undefined;
  const p = path.join(root, rel);
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st || !st.isSymbolicLink()) return rel;
  const t = fs.readlinkSync(p);
  const next = path.posix.normalize(t.startsWith('/') ? t : path.posix.join(path.posix.dirname('/' + rel), t)).replace(/^\/+/, '');
  if (next.startsWith('..')) return undefined;
  return resolveInImage(root, next, depth + 1);
}

/** How the master's resolv.conf is made visible without writing into the image. */
export function resolvPlan(lower: string): { mode: 'bind' | 'run' | 'create'; target: string } {
  const st = fs.lstatSync(path.join(lower, 'etc/resolv.conf'), { throwIfNoEntry: false });
  if (st?.isFile()) return { mode: 'bind', target: 'etc/resolv.conf' };
  if (st?.isSymbolicLink()) {
    const r = resolveInImage(lower, 'etc/resolv.conf');
    if (r && (r === 'run' || r.startsWith('run/'))) return { mode: 'run', target: r };
    if (r && fs.lstatSync(path.join(lower, r), { throwIfNoEntry: false })?.isFile()) return { mode: 'bind', target: r };
  }
  // Absent or dangling outside /run: created in the upper layer, and removed from it before committing.
  return { mode: 'create', target: 'etc/resolv.conf' };
}

export interface ExecOptions {
  lower: string;
  /** Work directory on the same file system as the trees (upper, work, merged go in it). */
  workDir: string;
  command: string[];
  interactive: boolean;
  /** Where the command's stdout goes (the terminal, or stderr when --json). */
  stdout: 'inherit' | 'stderr';
}

/** Run the command; returns the overlay's upper directory and the exit status. */
export async function runInImage(o: ExecOptions): Promise<{ code: number | null; signal: string | null; upper: string; createdResolv?: string }> {
  if (/[,:]/.test(o.lower) || /[,:]/.test(o.workDir)) throw new ImageError(`the state directory path must not contain ',' or ':' for vnfs exec (overlayfs options): ${o.lower}`);
  if (!fs.existsSync(path.join(o.lower, 'bin')) && !fs.existsSync(path.join(o.lower, 'usr/bin'))) throw new ImageError('the image has no /bin or /usr/bin: it cannot run commands');
  const upper = path.join(o.workDir, 'upper');
  const work = path.join(o.workDir, 'work');
  const merged = path.join(o.workDir, 'merged');
  for (const d of [upper, work, merged]) fs.mkdirSync(d, { recursive: true, mode: 0o755 });
  const resolv = path.join(o.workDir, 'resolv.conf');
  let hostResolv = '';
  try {
    hostResolv = fs.readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    /* no resolver on the master: apt inside can still use IP mirrors */
  }
  fs.writeFileSync(resolv, hostResolv);
  const plan = resolvPlan(o.lower);
  const env: NodeJS.ProcessEnv = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/root',
    LANG: 'C.UTF-8',
    TERM: process.env.TERM ?? 'dumb',
    ...(o.interactive ? { PS1: '(image) \\w# ' } : { DEBIAN_FRONTEND: 'noninteractive' }),
  };
  const args = ['--pdeathsig', 'KILL', '--', 'unshare', '--mount', '--pid', '--fork', '--propagation', 'private', '--', 'sh', '-c', INSIDE, 'pxeherd-exec', o.lower, upper, work, merged, resolv, plan.mode, plan.target, ...o.command];
  const r = await new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
    const p = spawn('setpriv', args, { env, stdio: ['inherit', o.stdout === 'stderr' ? process.stderr : 'inherit', 'inherit'] });
    p.on('error', (e) => reject(new ImageError(`unshare: ${e.message} (install util-linux)`)));
    p.on('close', (code, signal) => resolve({ code, signal }));
  });
  return { ...r, upper, createdResolv: plan.mode === 'create' ? plan.target : undefined };
}

/** True when the overlay's upper directory holds no change. */
export function upperEmpty(upper: string): boolean {
  return fs.readdirSync(upper).length === 0;
}

/** Pure: is this getfattr line set the opaque marker? */
export function isOpaque(xattrs: string | undefined): boolean {
  return !!xattrs && /(^|\n)trusted\.overlay\.opaque=(0x79|"y")/.test(xattrs);
}

/**
 * Apply an overlay upper directory to `tree` (a hard-linked copy of the lower layer):
 * whiteouts (character device 0/0) delete, opaque directories replace what was below, every
 * other entry replaces its path (never written through: the old name is unlinked first, so
 * the parent revision's file, which it may share an inode with, stays as it was). GNU tar
 * copies the entries with owners, modes, hard links and xattrs, except overlayfs' own trusted.overlay.*.
 */
export async function applyUpper(upper: string, tree: string): Promise<{ changed: number; deleted: number }> {
  const ux = (await readXattrs(upper)).map;
  const list: string[] = [];
  let deleted = 0;
  walkTree(upper, ({ rel, st }) => {
    if (!rel) return;
    const dst = path.join(tree, rel);
    const have = fs.lstatSync(dst, { throwIfNoEntry: false });
    if (st.isCharacterDevice() && st.rdev === 0) {
      if (have) {
        safeRemove(dst);
        deleted++;
      }
      return;
    }
    if (st.isDirectory()) {
      if (have && (isOpaque(ux.get(rel)) || !have.isDirectory())) safeRemove(dst);
    } else if (have) {
      if (have.isDirectory()) safeRemove(dst);
      else fs.unlinkSync(dst);
    }
    list.push(rel);
  });
  if (list.length) {
    const x = ['--xattrs', '--xattrs-include=*', '--numeric-owner'];
    const r = await tarPipe(
      ['-C', upper, '--format=posix', ...x, '--xattrs-exclude=trusted.overlay.*', '--no-recursion', '--null', '--verbatim-files-from', '-T', '-', '-cf', '-'],
      ['-C', tree, ...x, '--same-owner', '--same-permissions', '-xf', '-'],
      { input: list.join('\0') + '\0' },
    );
    if (r.codeC !== 0 || r.codeX !== 0) throw new ImageError(`applying the changes failed: ${tail(r.stderr)}`);
  }
  return { changed: list.length, deleted };
}

/** A hard-linked copy of a revision's tree (cp -al): costs inodes for directories only. */
export async function linkCopy(src: string, dest: string): Promise<void> {
  const r = await runTool('cp', ['-a', '-l', '--no-dereference', `${src}/.`, dest]);
  if (r.code !== 0) throw new ImageError(`cp -al ${src} failed: ${tail(r.stderr)}`);
}
