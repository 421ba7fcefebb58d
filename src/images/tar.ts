/**
 * Extract a tar archive (plain, gzip, xz, zstd or bzip2 — told apart by magic bytes) into a
 * root filesystem, or apply it as an OCI layer on top of what the directory already holds.
 *
 * Every entry is checked before anything is written: no `..`, no absolute names, no hard
 * link or relative symlink that leaves the tree, nothing written through a symlink (an entry
 * `a/b` where `a` is a symlink, in the archive or below it), device nodes only under dev/,
 * and the archive must be complete (checksums, compression, end-of-archive block). Only then
 * does GNU tar extract it, as root, keeping owners, modes, setuid bits, hard links, device
 * nodes and xattrs (file capabilities). A failure throws (ImageError for bad input) and the
 * caller discards `dest`.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { ImageError } from './errors.js';
import { TarReader, type TarHeader, type TarKind } from './tarformat.js';

export type Compression = 'none' | 'gzip' | 'xz' | 'zstd' | 'bzip2';

export interface TarStats {
  /** Members extracted (whiteout markers are not counted here). */
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Character and block devices and FIFOs. */
  devices: number;
  /** Bytes of regular-file content. */
  bytes: number;
  /** `.wh.NAME` whiteouts applied (each removed NAME from the layers below). */
  whiteouts: number;
  /** `.wh..wh..opq` markers applied (each emptied a directory of what the layers below held). */
  opaqueDirs: number;
  compression: Compression;
  /** sha256 of the uncompressed tar stream, "sha256:<hex>": an OCI layer's diff_id. */
  diffId: string;
}

export interface ExtractOptions {
  /** Apply OCI whiteouts to what `dest` already holds instead of extracting them as files. */
  whiteouts?: boolean;
  /** Called as GNU tar reads the uncompressed stream (about every MB), with the bytes read so far; last with the total. */
  onProgress?(bytes: number): void;
}

const OPAQUE = '.wh..wh..opq';
const WH = '.wh.';

export async function extractTar(archive: string | Readable, dest: string, opts: ExtractOptions = {}): Promise<TarStats> {
  await fsp.mkdir(dest, { recursive: true });
  let file: string;
  let spool: string | undefined;
  if (typeof archive === 'string') {
    file = archive;
  } else {
    // Validation and extraction each read the archive once, so a stream is kept on disk
    // beside dest (same filesystem as the result, not a possibly small /tmp) meanwhile.
    spool = `${dest.replace(/\/+$/, '')}.spool-${process.pid}-${Date.now()}`;
    // Opened before the stream is read: a source that fails at once must not race a pending
    // open() that would create the spool after the cleanup below removed it.
    const fh = await fsp.open(spool, 'w', 0o600);
    await pipeline(archive, fh.createWriteStream());
    file = spool;
  }
  try {
    const label = spool ? 'the archive stream' : file;
    const compression = await sniffCompression(file);
    const plan = await planExtraction(file, compression, dest, label, !!opts.whiteouts);
    await applyRemovals(dest, plan);
    await runGnuTar(file, compression, dest, label, !!opts.whiteouts, plan.tarBytes, opts.onProgress);
    return plan.stats;
  } finally {
    if (spool) await fsp.rm(spool, { force: true });
  }
}

export async function sniffCompression(file: string): Promise<Compression> {
  const fh = await fsp.open(file, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new ImageError(`cannot read archive ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`, file);
  });
  try {
    const b = Buffer.alloc(6);
    const { bytesRead } = await fh.read(b, 0, 6, 0);
    if (bytesRead === 0) throw new ImageError(`archive ${file} is empty`, file);
    return compressionOf(b.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

export function compressionOf(magic: Buffer): Compression {
  if (magic[0] === 0x1f && magic[1] === 0x8b) return 'gzip';
  if (magic.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (magic.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
  if (magic.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  return 'none';
}

const DECOMPRESSOR: Record<Exclude<Compression, 'none' | 'gzip'>, string> = { xz: 'xz', zstd: 'zstd', bzip2: 'bzip2' };

/**
 * The uncompressed bytes of `file`, chunk by chunk. Corrupt or truncated compressed data
 * is an ImageError once the stream reaches it.
 */
export async function* uncompressed(file: string, compression: Compression, label: string): AsyncGenerator<Buffer> {
  if (compression === 'none') {
    yield* fs.createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>;
    return;
  }
  if (compression === 'gzip') {
    const src = fs.createReadStream(file, { highWaterMark: 1 << 20 });
    const gunzip = zlib.createGunzip({ chunkSize: 1 << 20 });
    src.on('error', (e) => gunzip.destroy(e));
    src.pipe(gunzip);
    try {
      yield* gunzip as AsyncIterable<Buffer>;
    } catch (e) {
      const msg = (e as Error).message;
      if (/unexpected end of file/i.test(msg)) throw new ImageError(`${label}: the gzip data is truncated: re-download or re-create it`, label);
      throw new ImageError(`${label}: corrupt gzip data (${msg}): re-download or re-create it`, label);
    } finally {
      src.destroy();
    }
    return;
  }
  const tool = DECOMPRESSOR[compression];
  const child = spawn(tool, ['-dc', '--', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`cannot run ${tool} to decompress ${label}: ${e.message} (install the ${tool === 'xz' ? 'xz-utils' : tool} package)`)));
    child.on('close', (code) => resolve(code));
  });
  exited.catch(() => {});
  let finished = false;
  try {
    yield* child.stdout as AsyncIterable<Buffer>;
    const code = await exited;
    if (code !== 0) throw new ImageError(`${label}: corrupt or truncated ${compression} data (${stderr.trim().split('\n').pop() || `${tool} exited ${code}`}): re-download or re-create it`, label);
    finished = true;
  } finally {
    if (!finished) child.kill('SIGKILL');
  }
}

/** What validation found: the counts, and what must go from `dest` before GNU tar runs. */
interface Plan {
  stats: TarStats;
  /** Paths (relative) removed from dest: whiteouts, and lower entries whose type the layer changes. */
  remove: string[];
  /** Directories whose lower content an opaque marker drops. */
  empty: string[];
  /** Length of the uncompressed tar stream. */
  tarBytes: number;
}

type LowerKind = TarKind | 'other' | undefined;

/**
 * A member name as a path relative to the tree: '' for the root, never `..`, never absolute.
 * Throws naming the entry otherwise.
 */
export function normalizeMember(name: string, entry: string = name): string {
  if (name.startsWith('/')) throw new ImageError(`entry "${entry}" has an absolute path: refusing to extract it (archives for an image must hold relative names)`, entry);
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw new ImageError(`entry "${entry}" has a ".." component: refusing to extract it outside the image`, entry);
    parts.push(p);
  }
  return parts.join('/');
}

function parentsOf(rel: string): string[] {
  const parts = rel.split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join('/'));
  return out;
}

/** Where a relative symlink target lands, from the entry's directory; undefined when it climbs out. */
export function resolveRelativeLink(entryRel: string, target: string): string | undefined {
  const stack = entryRel.split('/').slice(0, -1);
  for (const p of target.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (stack.length === 0) return undefined;
      stack.pop();
    } else stack.push(p);
  }
  return stack.join('/');
}

function kindOfStat(st: fs.Stats): LowerKind {
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFile()) return 'file';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'other';
}

interface Member {
  rel: string;
  header: TarHeader;
}

async function planExtraction(file: string, compression: Compression, dest: string, label: string, whiteouts: boolean): Promise<Plan> {
  const stats: TarStats = { entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, devices: 0, bytes: 0, whiteouts: 0, opaqueDirs: 0, compression, diffId: '' };
  const members: Member[] = [];
  const whiteout: { rel: string; entry: string }[] = [];
  const opaque: { rel: string; entry: string }[] = [];
  const reader = new TarReader();
  const hash = createHash('sha256');
  let tarBytes = 0;
  for await (const chunk of uncompressed(file, compression, label)) {
    hash.update(chunk);
    tarBytes += chunk.length;
    for (const ev of reader.push(chunk)) {
      if (ev.type !== 'entry') continue;
      const h = ev.header;
      const rel = normalizeMember(h.name);
      const base = rel.slice(rel.lastIndexOf('/') + 1);
      if (whiteouts && base.startsWith(WH)) {
        const dir = rel.slice(0, Math.max(0, rel.lastIndexOf('/')));
        if (base === OPAQUE) opaque.push({ rel: dir, entry: h.name });
        else {
          const target = base.slice(WH.length);
          if (target === '' || target === '.' || target === '..' || target.startsWith(WH)) {
            throw new ImageError(`whiteout "${h.name}" names no file that a layer could hold: the layer is corrupt`, h.name);
          }
          whiteout.push({ rel: dir ? `${dir}/${target}` : target, entry: h.name });
        }
        continue;
      }
      members.push({ rel, header: h });
    }
  }
  reader.end();
  stats.diffId = `sha256:${hash.digest('hex')}`;

  // The layers below, as this layer's whiteouts leave them.
  const gone = new Set(whiteout.map((w) => w.rel));
  const emptied = new Set(opaque.map((o) => o.rel));
  const lstatCache = new Map<string, LowerKind>();
  const rawLower = (rel: string): LowerKind => {
    if (lstatCache.has(rel)) return lstatCache.get(rel);
    let k: LowerKind;
    try {
      k = kindOfStat(fs.lstatSync(path.join(dest, rel)));
    } catch {
      k = undefined;
    }
    lstatCache.set(rel, k);
    return k;
  };
  // A lower path is reachable only through real directories; a whiteout or an opaque parent hides it.
  const lowerWalk = (rel: string, entry: string): LowerKind => {
    if (rel === '') return 'dir';
    for (const p of parentsOf(rel)) {
      if (gone.has(p)) return undefined;
      const k = rawLower(p);
      if (k === undefined) return undefined;
      if (k === 'symlink') throw new ImageError(`entry "${entry}" would be written through "${p}", a symlink in the layers below: refusing`, entry);
      if (k !== 'dir') return undefined;
      if (emptied.has(p)) return undefined;
    }
    if (gone.has(rel)) return undefined;
    return rawLower(rel);
  };
  for (const w of [...whiteout, ...opaque]) lowerWalk(w.rel, w.entry); // no deletion through a symlink
  for (const o of opaque) {
    if (rawLower(o.rel) === 'symlink') throw new ImageError(`opaque marker "${o.entry}" is in "${o.rel}", a symlink in the layers below: refusing`, o.entry);
  }

  // What the layer declares, type per path: the first declaration decides what lower entry must go first.
  const firstKind = new Map<string, TarKind>();
  for (const m of members) if (!firstKind.has(m.rel)) firstKind.set(m.rel, m.header.kind);
  const remove = whiteout.map((w) => w.rel);
  const replaced = new Set<string>();
  for (const [rel, kind] of firstKind) {
    if (rel === '') continue;
    const lower = lowerWalkSafe(lowerWalk, rel);
    if (lower === undefined) continue;
    if ((kind === 'dir') !== (lower === 'dir')) {
      remove.push(rel);
      replaced.add(rel);
    }
  }
  const lowerNow = (rel: string, entry: string): LowerKind => (replaced.has(rel) ? undefined : lowerWalk(rel, entry));

  // Walk the layer in order: what each entry's parents are at that point.
  const declared = new Map<string, TarKind>();
  const kindAt = (rel: string, entry: string): LowerKind => (declared.has(rel) ? declared.get(rel) : lowerNow(rel, entry));
  const requireDirs = (rel: string, entry: string, what: string) => {
    for (const p of parentsOf(rel)) {
      const k = kindAt(p, entry);
      if (k === undefined) {
        declared.set(p, 'dir'); // GNU tar creates missing parents
        continue;
      }
      const where = declared.has(p) ? 'earlier in the archive' : 'in the layers below';
      if (k === 'symlink') throw new ImageError(`entry "${entry}" ${what} through "${p}", a symlink ${where}: refusing (nothing may be written through a symlink)`, entry);
      if (k !== 'dir') throw new ImageError(`entry "${entry}" ${what} below "${p}", which is not a directory: the archive is inconsistent`, entry);
    }
  };
  for (const { rel, header: h } of members) {
    const entry = h.name;
    if (rel === '' && h.kind !== 'dir') throw new ImageError(`entry "${entry}" names the root of the image but is a ${h.kind}, not a directory`, entry);
    requireDirs(rel, entry, 'would be written');
    switch (h.kind) {
      case 'symlink': {
        if (h.linkname === '') throw new ImageError(`symlink "${entry}" has an empty target`, entry);
        if (!h.linkname.startsWith('/') && resolveRelativeLink(rel, h.linkname) === undefined) {
          throw new ImageError(`symlink "${entry}" -> "${h.linkname}" points outside the image: refusing`, entry);
        }
        stats.symlinks++;
        break;
      }
      case 'hardlink': {
        const target = normalizeMember(h.linkname, entry);
        if (h.linkname.startsWith('/')) throw new ImageError(`hard link "${entry}" -> "${h.linkname}" points outside the image: refusing`, entry);
        if (target === '') throw new ImageError(`hard link "${entry}" -> "${h.linkname}" links to the root directory: refusing`, entry);
        requireDirs(target, entry, 'would link to a file');
        const tk = kindAt(target, entry);
        if (tk === undefined) throw new ImageError(`hard link "${entry}" -> "${h.linkname}": the target is not in the image (it must come earlier in the archive or from a lower layer)`, entry);
        if (tk === 'dir') throw new ImageError(`hard link "${entry}" -> "${h.linkname}" links to a directory: refusing`, entry);
        stats.hardlinks++;
        break;
      }
      case 'char':
      case 'block':
        if (!(rel === 'dev' || rel.startsWith('dev/'))) {
          throw new ImageError(`device node "${entry}" is outside /dev: refusing (a root filesystem needs devices only under /dev)`, entry);
        }
        stats.devices++;
        break;
      case 'fifo':
        stats.devices++;
        break;
      case 'dir':
        stats.dirs++;
        break;
      case 'file':
        stats.files++;
        stats.bytes += h.size;
        break;
    }
    // A hard link is a file of the target's type; what matters later is "not a directory, not a symlink".
    declared.set(rel, h.kind === 'hardlink' ? 'file' : h.kind);
    stats.entries++;
  }
  stats.whiteouts = whiteout.length;
  stats.opaqueDirs = opaque.length;
  return { stats, remove, empty: opaque.map((o) => o.rel), tarBytes };
}

function lowerWalkSafe(walk: (rel: string, entry: string) => LowerKind, rel: string): LowerKind {
  // Only whether the path exists below matters here; a symlink on the way is reported when the entry is walked.
  try {
    return walk(rel, rel);
  } catch {
    return undefined;
  }
}

/** Whiteouts, opaque directories and replaced types, applied to dest (already checked: no symlink on any path). */
async function applyRemovals(dest: string, plan: Plan): Promise<void> {
  for (const rel of plan.empty) {
    const dir = path.join(dest, rel);
    let names: string[];
    try {
      if (!(await fsp.lstat(dir)).isDirectory()) continue;
      names = await fsp.readdir(dir);
    } catch {
      continue;
    }
    for (const n of names) await fsp.rm(path.join(dir, n), { recursive: true, force: true });
  }
  for (const rel of plan.remove) await fsp.rm(path.join(dest, rel), { recursive: true, force: true });
}

const TAR_FLAG: Record<Compression, string | undefined> = { none: undefined, gzip: '--gzip', xz: '--xz', zstd: '--zstd', bzip2: '--bzip2' };
/** GNU tar's record: 20 blocks of 512 bytes; a checkpoint every 100 records is about 1 MB. */
const RECORD = 20 * 512;
const CHECKPOINT = 100;

/**
 * GNU tar reads the archive itself (decompressing with the tool its flag names), so the data
 * does not pass through Node a second time; progress comes from its checkpoints.
 */
async function runGnuTar(file: string, compression: Compression, dest: string, label: string, whiteouts: boolean, totalBytes: number, onProgress?: (bytes: number) => void): Promise<void> {
  const args = ['-x', '-f', file, '-C', dest, '--xattrs', '--xattrs-include=*', '--numeric-owner', '--same-owner', '-p'];
  const flag = TAR_FLAG[compression];
  if (flag) args.push(flag);
  if (onProgress) args.push(`--checkpoint=${CHECKPOINT}`, '--checkpoint-action=echo=PXEHERD-CHECKPOINT %u');
  if (whiteouts) args.push('--no-wildcards-match-slash', `--exclude=${WH}*`);
  const tar = spawn('tar', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const errors: string[] = [];
  let partial = '';
  tar.stderr.setEncoding('utf8').on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const m = /PXEHERD-CHECKPOINT (\d+)$/.exec(line);
      if (m) onProgress?.(Math.min(Number(m[1]) * RECORD, totalBytes));
      else if (line && !/Exiting with failure status/.test(line)) errors.push(line);
    }
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    tar.on('error', (e) => reject(new Error(`cannot run GNU tar: ${e.message} (install the tar package)`)));
    tar.on('close', (c) => resolve(c));
  });
  if (partial) errors.push(partial);
  if (code !== 0) throw new Error(`GNU tar failed extracting ${label} into ${dest} (exit ${code}): ${errors.slice(0, 5).join('; ')}`);
  onProgress?.(totalBytes);
}
