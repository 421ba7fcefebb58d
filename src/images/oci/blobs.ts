/**
 * Blobs (layers, configs, manifests) cached by digest under `<cacheDir>/blobs/sha256/<hex>`.
 * A blob enters the cache only after its sha256 matched its digest, and is hashed again
 * each time it is used, so a cache damaged on disk is noticed, not applied.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ImageError } from '../errors.js';

export class BlobCache {
  constructor(readonly dir: string) {}

  path(digest: string): string {
    return path.join(this.dir, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }

  /** A fresh file name in the cache directory for a blob being written. */
  async tempPath(): Promise<string> {
    const dir = path.join(this.dir, 'blobs', 'sha256');
    await fsp.mkdir(dir, { recursive: true });
    return path.join(dir, `.partial-${process.pid}-${Math.random().toString(36).slice(2)}`);
  }

  /**
   * The path of a cached blob whose content still matches `digest`, or undefined when it is
   * not cached. A cached blob that no longer matches is removed (and undefined returned).
   */
  async verified(digest: string): Promise<string | undefined> {
    const p = this.path(digest);
    try {
      if ((await sha256File(p)) === digest) return p;
    } catch {
      return undefined;
    }
    await fsp.rm(p, { force: true });
    return undefined;
  }

  /**
   * Store a blob from a stream (or move in a file already written), checking its sha256.
   * `what` names the blob in the error ("layer 2/3 of docker://..."). On a mismatch nothing
   * is cached and the error says both digests.
   */
  async put(digest: string, source: Readable | { file: string; sha256: string }, what: string, onBytes?: (n: number) => void): Promise<string> {
    let tmp: string;
    let got: string;
    if ('file' in source) {
      tmp = source.file;
      got = source.sha256;
    } else {
      tmp = await this.tempPath();
      const hash = createHash('sha256');
      const out = fs.createWriteStream(tmp, { mode: 0o644 });
      let n = 0;
      try {
        for await (const chunk of source as AsyncIterable<Buffer>) {
          hash.update(chunk);
          n += chunk.length;
          onBytes?.(n);
          if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        }
        await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
      } catch (e) {
        out.destroy();
        await fsp.rm(tmp, { force: true });
        throw e;
      }
      got = `sha256:${hash.digest('hex')}`;
    }
    if (got !== digest) {
      await fsp.rm(tmp, { force: true });
      throw new ImageError(`${what}: content has digest ${got}, not ${digest} as its manifest says: the blob was altered or damaged; nothing was applied`, what);
    }
    const dest = this.path(digest);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    await fsp.rename(tmp, dest);
    return dest;
  }
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
