import { copyFile, chmod, mkdir, readdir, readFile, rename, stat, lstat, unlink, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nodescripts shipped in the repository (nodescripts/), seen from src/ and dist/. */
export const DEFAULT_NODESCRIPTS_SRC = fileURLToPath(new URL('../../nodescripts', import.meta.url));

/**
 * In a source directory: the sha256 of every version of its files ever shipped, as
 * "HASH  RELATIVE/PATH" lines (`#` comments). Not copied. See nodescripts/.shipped-sha256.
 */
export const SHIPPED_MANIFEST = '.shipped-sha256';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** RELATIVE/PATH -> hashes of its shipped versions. Malformed lines are an error: the file is ours. */
export function parseShippedManifest(text: string, file = SHIPPED_MANIFEST): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const m = /^([0-9a-f]{64}) {1,2}\*?(\S.*)$/.exec(line);
    if (!m) throw new Error(`${file} line ${i + 1}: expected "SHA256  PATH", got "${line.slice(0, 80)}"`);
    const rel = path.normalize(m[2]!);
    if (!out.has(rel)) out.set(rel, new Set());
    out.get(rel)!.add(m[1]!);
  });
  return out;
}

async function readManifest(srcDir: string): Promise<Map<string, Set<string>> | undefined> {
  const file = path.join(srcDir, SHIPPED_MANIFEST);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return parseShippedManifest(text, file);
}

/**
 * Copy the shipped nodescripts into the state directory. Files that do not exist yet are
 * copied (COPYFILE_EXCL) with their modes. A file that exists is the admin's and is left
 * alone — unless srcDir has a SHIPPED_MANIFEST and the file's content is an older shipped
 * version of the same path, i.e. nobody changed it since pxeherd put it there: then it gets
 * the current version (atomically, by rename; its mode is kept, so a default an admin
 * disabled with chmod -x stays disabled). That is how existing installations get changes to
 * the defaults (e.g. the pxeherd-when: headers), the way a package manager updates a config
 * file nobody edited. Edits, symlinks, deletions-by-chmod and additions are never touched.
 * Returns the destination paths that were created or updated.
 */
export async function installDefaultNodescripts(srcDir: string, destDir: string): Promise<string[]> {
  const created: string[] = [];
  const shipped = await readManifest(srcDir);
  const walk = async (rel: string): Promise<void> => {
    const src = path.join(srcDir, rel);
    const entries = await readdir(src, { withFileTypes: true });
    await mkdir(path.join(destDir, rel), { recursive: true });
    for (const e of entries) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        await walk(r);
        continue;
      }
      if (!e.isFile() || (rel === '' && e.name === SHIPPED_MANIFEST)) continue;
      const to = path.join(destDir, r);
      let present;
      try {
        present = await lstat(to);
      } catch {
        /* missing: copy */
      }
      if (present) {
        // present (even as a symlink or a directory): the admin's, unless an untouched old default
        if (shipped && present.isFile() && (await updateUntouched(path.join(srcDir, r), to, shipped.get(path.normalize(r)), present.mode))) created.push(to);
        continue;
      }
      try {
        await copyFile(path.join(srcDir, r), to, constants.COPYFILE_EXCL);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      const st = await stat(path.join(srcDir, r));
      await chmod(to, st.mode & 0o7777);
      created.push(to);
    }
  };
  await walk('');
  return created;
}

/** Replace `to` by `from` if `to` holds one of `versions` and differs from `from`. */
async function updateUntouched(from: string, to: string, versions: Set<string> | undefined, mode: number): Promise<boolean> {
  if (!versions) return false;
  const [cur, next] = await Promise.all([readFile(to), readFile(from)]);
  const h = sha256(cur);
  if (!versions.has(h) || h === sha256(next)) return false;
  const tmp = path.join(path.dirname(to), `.${path.basename(to)}.pxeherd-update-${process.pid}`);
  try {
    await writeFile(tmp, next, { mode: mode & 0o7777 });
    await chmod(tmp, mode & 0o7777); // writeFile's mode is filtered by the umask
    await rename(tmp, to);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  return true;
}
