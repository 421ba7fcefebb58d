/**
 * Safe resolution of a requested file name inside the TFTP root.
 *
 * Two layers: `cleanName` is pure and rejects names that could only be an attack or a
 * mistake (.., NUL, backslash, control characters, invalid UTF-8); `openInRoot` then
 * resolves symlinks with realpath, insists the result is still inside the real root,
 * opens it without following a last-moment symlink and without blocking on a FIFO, and
 * serves only regular files (checked on the open descriptor, so a swap after the
 * realpath cannot smuggle in a device or a FIFO).
 */
import { constants, lstatSync, realpathSync, promises as fsp, watch, type FSWatcher, type Stats } from 'node:fs';
import path from 'node:path';
import { ErrorCode } from './codec.js';

export type Refusal = { ok: false; code: number; reason: string };
export type CleanName = { ok: true; rel: string } | Refusal;

const MAX_NAME = 1024;

function refuse(code: number, reason: string): Refusal {
  return { ok: false, code, reason };
}

/**
 * Turn the name from a request (as decoded by the codec: one char per byte) into a
 * root-relative path with '/' separators, or refuse it.
 */
export function cleanName(raw: string): CleanName {
  if (raw.length === 0) return refuse(ErrorCode.FILE_NOT_FOUND, 'empty file name');
  if (raw.length > MAX_NAME) return refuse(ErrorCode.ACCESS_VIOLATION, `file name longer than ${MAX_NAME} bytes`);
  if (raw.includes('\0')) return refuse(ErrorCode.ACCESS_VIOLATION, 'file name contains NUL');
  // Windows-style separators are how "..\\" tricks reach a POSIX server; nothing pxeherd
  // serves needs them.
  if (raw.includes('\\')) return refuse(ErrorCode.ACCESS_VIOLATION, 'file name contains a backslash');
  if (/[\x00-\x1f\x7f]/.test(raw)) return refuse(ErrorCode.ACCESS_VIOLATION, 'file name contains control characters');
  // The codec keeps bytes as latin1 chars; file names on disk are UTF-8.
  const bytes = Buffer.from(raw, 'latin1');
  const name = bytes.toString('utf8');
  if (!Buffer.from(name, 'utf8').equals(bytes)) return refuse(ErrorCode.ACCESS_VIOLATION, 'file name is not valid UTF-8');
  // A trailing '/' names a directory, never something we serve.
  if (name.endsWith('/')) return refuse(ErrorCode.ACCESS_VIOLATION, 'file name ends with "/" (a directory)');
  const parts: string[] = [];
  // Leading '/' is stripped: pxelinux and many firmwares send absolute-looking names.
  for (const seg of name.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') return refuse(ErrorCode.ACCESS_VIOLATION, 'file name contains ".."');
    parts.push(seg);
  }
  if (parts.length === 0) return refuse(ErrorCode.FILE_NOT_FOUND, 'no file name');
  return { ok: true, rel: parts.join('/') };
}

export interface OpenedFile {
  ok: true;
  handle: fsp.FileHandle;
  stat: Stats;
  /** Path after resolving symlinks (inside the real root). */
  realPath: string;
}

/** `real` (a resolved path) lies strictly below the resolved root. */
function isInside(realRoot: string, real: string): boolean {
  return real.startsWith(realRoot.endsWith(path.sep) ? realRoot : realRoot + path.sep);
}

/**
 * Open `rel` (from cleanName) below `root`. The caller owns the handle.
 * ENOENT -> file not found; anything outside the root or not a regular file -> access violation.
 */
export async function openInRoot(root: string, rel: string): Promise<OpenedFile | Refusal> {
  let realRoot: string;
  try {
    realRoot = await fsp.realpath(root);
  } catch {
    return refuse(ErrorCode.FILE_NOT_FOUND, 'TFTP root does not exist');
  }
  let real: string;
  try {
    real = await fsp.realpath(path.join(realRoot, rel));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return refuse(ErrorCode.FILE_NOT_FOUND, 'file not found');
    if (code === 'ELOOP') return refuse(ErrorCode.ACCESS_VIOLATION, 'symlink loop');
    return refuse(ErrorCode.ACCESS_VIOLATION, `cannot resolve: ${code ?? 'error'}`);
  }
  if (!isInside(realRoot, real)) return refuse(ErrorCode.ACCESS_VIOLATION, 'file resolves outside the TFTP root');
  let handle: fsp.FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO for reading must not hang the server waiting for a writer.
    handle = await fsp.open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return refuse(ErrorCode.FILE_NOT_FOUND, 'file not found');
    return refuse(ErrorCode.ACCESS_VIOLATION, `cannot open: ${code ?? 'error'}`);
  }
  let stat: Stats;
  try {
    stat = await handle.stat();
  } catch (e) {
    await handle.close().catch(() => {});
    return refuse(ErrorCode.ACCESS_VIOLATION, `cannot stat: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (!stat.isFile()) {
    await handle.close().catch(() => {});
    return refuse(ErrorCode.ACCESS_VIOLATION, stat.isDirectory() ? 'is a directory' : 'not a regular file');
  }
  return { ok: true, handle, stat, realPath: real };
}

/** The root's real path, resolved at most once a second (realpath(3) is an lstat per component). */
const realRoots = new Map<string, { real: string; at: number }>();
function realRootOf(root: string, now: number): string {
  const c = realRoots.get(root);
  if (c && now - c.at < 1000 && now >= c.at) return c.real;
  const real = realpathSync.native(root);
  realRoots.set(root, { real, at: now });
  return real;
}

/**
 * The fast path's question, answered without a descriptor: which regular file inside the root
 * does `rel` name right now? A name directly in the root is one lstat; anything else is
 * realpath(3), then lstat of the result, so a symlink swapped in afterwards is not followed. Undefined when anything is unusual — the
 * caller then takes openInRoot, which gives the precise refusal. A FileCache hit on the
 * returned identity serves bytes that were read from a file inside the root.
 */
export function statInRoot(root: string, rel: string, now = Date.now()): { real: string; stat: Stats } | undefined {
  try {
    const realRoot = realRootOf(root, now);
    if (!rel.includes('/')) {
      // A name directly in the root (undionly.kpxe, ipxe.efi: nearly every RRQ): one lstat.
      // A regular file there is inside the root; a symlink takes the realpath way below.
      const direct = path.join(realRoot, rel);
      const st = lstatSync(direct);
      if (st.isFile()) return { real: direct, stat: st };
      if (!st.isSymbolicLink()) return undefined;
    }
    const real = realpathSync.native(path.join(realRoot, rel));
    if (!isInside(realRoot, real)) return undefined;
    const stat = lstatSync(real);
    return stat.isFile() ? { real, stat } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * statInRoot for names directly in one directory (the loaders every machine asks for),
 * remembered until the directory changes: in a storm the same name is asked for a thousand
 * times a second, and each lstat (a syscall and a Stats object) was a measurable part of an
 * RRQ's cost. An inotify watch on the directory (fs.watch) forgets everything on any change in
 * it (a write, chmod, touch, rename, replacement or removal of an entry); entries are also
 * never older than `maxAgeMs`, which bounds what a watch cannot see (a file changed through a
 * hard link elsewhere, a symlinked root re-pointed). Without a watch (e.g. inotify limits)
 * nothing is remembered. Names with a '/' and anything statInRoot refuses are not cached.
 * What a hit returns is exactly what statInRoot returned, so the confinement rules are the
 * same; the name itself is checked (cleanName) before it gets here.
 */
export class DirectStats {
  private readonly entries = new Map<string, { found: { real: string; stat: Stats }; at: number }>();
  private watcher: FSWatcher | undefined;
  private unwatchable = false;

  constructor(
    private readonly root: string,
    private readonly maxAgeMs = 1000,
  ) {}

  get(rel: string, now = Date.now()): { real: string; stat: Stats } | undefined {
    if (rel.includes('/')) return statInRoot(this.root, rel, now);
    const c = this.entries.get(rel);
    if (c && now - c.at < this.maxAgeMs && now >= c.at) return c.found;
    const found = statInRoot(this.root, rel, now);
    if (found && this.watch()) {
      // A few names are asked for; a scan of random names must not grow this without bound.
      if (this.entries.size >= 256) this.entries.clear();
      this.entries.set(rel, { found, at: now });
    } else this.entries.delete(rel);
    return found;
  }

  /** Forget everything (the directory changed). */
  clear(): void {
    this.entries.clear();
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.entries.clear();
  }

  private watch(): boolean {
    if (this.watcher) return true;
    if (this.unwatchable) return false;
    try {
      // persistent: false — the watch never keeps the process alive by itself.
      const w = watch(this.root, { persistent: false }, () => this.entries.clear());
      w.on('error', () => {
        this.entries.clear();
        w.close();
        if (this.watcher === w) this.watcher = undefined;
      });
      this.watcher = w;
      return true;
    } catch {
      // Root missing (then nothing is found anyway) or no inotify: try again in a while.
      this.unwatchable = true;
      setTimeout(() => (this.unwatchable = false), 5000).unref();
      return false;
    }
  }
}
