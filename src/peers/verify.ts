import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * "This file on disk is the artifact the manifest names", remembered so a 500 MB root
 * filesystem is hashed once, not on every request. A marker `.verified-<file>` beside the
 * file records the sha256 it was checked against together with the file's size, mtime and
 * inode: any later change to the file (rewrite, truncation, replacement) changes one of
 * them and the marker no longer counts. Dotfiles are never served, so markers stay private.
 */
export interface Expected {
  sha256: string;
  size: number;
}

export interface Marker {
  sha256: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

export function markerPath(file: string): string {
  return path.join(path.dirname(file), `.verified-${path.basename(file)}`);
}

/** Pure: does a marker vouch for this stat of the file against this manifest entry? */
export function markerHolds(m: Marker | undefined, st: { size: number; mtimeMs: number; ino: number }, want: Expected): boolean {
  return !!m && m.sha256 === want.sha256 && m.size === want.size && st.size === want.size && m.mtimeMs === st.mtimeMs && m.ino === st.ino;
}

export function readMarker(file: string): Marker | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(markerPath(file), 'utf8')) as Marker;
    return typeof m.sha256 === 'string' && typeof m.size === 'number' ? m : undefined;
  } catch {
    return undefined;
  }
}

export function writeMarker(file: string, st: fs.Stats, sha256: string): Marker {
  const m: Marker = { sha256, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
  const tmp = `${markerPath(file)}.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(m) + '\n');
  fs.renameSync(tmp, markerPath(file));
  return m;
}

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256');
    fs.createReadStream(file, { highWaterMark: 1 << 20 })
      .on('data', (b) => h.update(b))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** The same, synchronously (`vnfs add`: the command copies synchronously too). */
export function sha256FileSync(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Pure: a short digest for messages. */
export function short(sha: string): string {
  return sha.slice(0, 12);
}
