import fs from 'node:fs';
import path from 'node:path';
import { ImageError } from './errors.js';
import { extractTar } from './tar.js';
import { importOci } from './oci/index.js';
import { tail, tarPipe } from './run.js';

/**
 * Producers for `vnfs import`: a directory (copied with GNU tar: owners, modes, setuid bits,
 * hard links, device nodes and every extended attribute kept; one file system only), a tar
 * archive (through extractTar, which refuses hostile entries), or an OCI/Docker image.
 */

export type ImportSource = { kind: 'dir'; path: string } | { kind: 'tar'; path: string } | { kind: 'oci'; ref: string };

const OCI_PREFIXES = ['oci-archive:', 'docker-archive:', 'docker://', 'oci:'];

/** Pure-ish (one stat): what an import argument names. */
export function classifySource(arg: string): ImportSource {
  if (OCI_PREFIXES.some((p) => arg.startsWith(p))) return { kind: 'oci', ref: arg };
  const st = fs.statSync(arg, { throwIfNoEntry: false });
  if (!st) throw new ImageError(`"${arg}" does not exist: give a directory, a FILE.tar[.gz|.xz|.zst], or oci-archive:FILE, docker-archive:FILE, docker://HOST/REPO:TAG`, arg);
  if (st.isDirectory()) return { kind: 'dir', path: path.resolve(arg) };
  if (st.isFile()) return { kind: 'tar', path: path.resolve(arg) };
  throw new ImageError(`"${arg}" is neither a directory nor a file`, arg);
}

/** Pure: the manifest's source string. */
export function sourceString(s: ImportSource): string {
  return s.kind === 'dir' ? `dir:${s.path}` : s.kind === 'tar' ? `tar:${s.path}` : `oci:${s.ref}`;
}

/** Copy a directory tree into `dest` (empty), preserving everything a root filesystem needs. */
export async function copyDirInto(src: string, dest: string, statedir: string, onProgress?: (bytes: number) => void): Promise<void> {
  const rs = fs.realpathSync(src);
  const rd = fs.realpathSync(statedir);
  if (rs === '/' ) throw new ImageError('importing the machine\'s own root (/) is refused: give a directory holding the image (a chroot), or capture a node', src);
  if (rd === rs || rd.startsWith(rs + '/') || rs.startsWith(rd + '/')) {
    throw new ImageError(`"${src}" holds or lies inside the state directory ${statedir}: give a directory outside it`, src);
  }
  const common = ['--xattrs', '--xattrs-include=*', '--numeric-owner', '--acls'];
  let last = 0;
  const r = await tarPipe(['-C', rs, '--one-file-system', '--format=posix', ...common, '-cf', '-', '.'], ['-C', dest, ...common, '--same-owner', '--same-permissions', '-xf', '-'], {
    onBytes: (b) => {
      if (onProgress && b - last > 64 << 20) {
        last = b;
        onProgress(b);
      }
    },
  });
  // tar -c exits 1 when a file changed while it was read: the copy is still whole.
  if (!((r.codeC === 0 || r.codeC === 1) && r.codeX === 0)) {
    throw new ImageError(`copying ${src} failed: ${tail(r.stderr) || `tar exit ${r.codeC}/${r.codeX}`}${/No space left/.test(r.stderr) ? ' (the disk is full: free space under the state directory)' : ''}`, src);
  }
}

/** Fill `dest` from an import source. Returns the source string for the manifest (an OCI import names the digest). */
export async function importInto(s: ImportSource, dest: string, o: { statedir: string; cacheDir: string; progress: (msg: string) => void }): Promise<string> {
  const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;
  switch (s.kind) {
    case 'dir':
      o.progress(`copying ${s.path}`);
      await copyDirInto(s.path, dest, o.statedir, (b) => o.progress(`copied ${mib(b)}`));
      return sourceString(s);
    case 'tar': {
      o.progress(`extracting ${s.path}`);
      const st = await extractTar(s.path, dest, { onProgress: (b) => b % (64 << 20) < 1 << 20 && o.progress(`extracted ${mib(b)}`) });
      o.progress(`extracted ${st.entries} entries (${mib(st.bytes)})`);
      return sourceString(s);
    }
    case 'oci': {
      const r = await importOci(s.ref, dest, { cacheDir: path.join(o.cacheDir, 'oci'), progress: o.progress });
      // r.source is already "oci:<reference in full>"; the digest pins what was imported.
      return `${r.source}${r.digest ? `@${r.digest}` : ''}`;
    }
  }
}

