import { copyFile, chmod, mkdir, readdir, stat, lstat } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nodescripts shipped in the repository (nodescripts/), seen from src/ and dist/. */
export const DEFAULT_NODESCRIPTS_SRC = fileURLToPath(new URL('../../nodescripts', import.meta.url));

/**
 * Copy the shipped nodescripts into the state directory. Only files that do not exist yet
 * are copied (COPYFILE_EXCL), modes are kept, and an admin's edits, deletions-by-chmod and
 * additions are never touched. Returns the destination paths that were created.
 */
export async function installDefaultNodescripts(srcDir: string, destDir: string): Promise<string[]> {
  const created: string[] = [];
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
      if (!e.isFile()) continue;
      const to = path.join(destDir, r);
      try {
        await lstat(to);
        continue; // present (even as a symlink or a directory): the admin's, leave it
      } catch {
        /* missing: copy */
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
