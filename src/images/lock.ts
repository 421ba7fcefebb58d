import fs from 'node:fs';
import path from 'node:path';
import { ImageError } from './errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One change at a time per VNFS, across processes: a directory created atomically, holding
 * the owner's pid. A lock whose owner is gone (killed build) is taken over: the caller then
 * cleans what that owner left.
 */
export function acquireLock(dir: string, what: string): () => void {
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'pid'), String(process.pid));
      return () => fs.rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let pid = 0;
      try {
        pid = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
      } catch {
        /* being created or removed right now */
      }
      if (pid && pid !== process.pid && alive(pid)) {
        throw new ImageError(`${what} is being changed by another pxeherd process (pid ${pid}): wait for it to finish`);
      }
      if (!pid) {
        // Created a moment ago by a process that has not written its pid yet.
        const st = fs.statSync(dir, { throwIfNoEntry: false });
        if (st && Date.now() - st.mtimeMs < 5000) {
          throw new ImageError(`${what} is being changed by another pxeherd process: wait for it to finish`);
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  throw new ImageError(`cannot lock ${what} (${dir}): remove the directory if no pxeherd process is running`);
}
