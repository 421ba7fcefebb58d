/**
 * Where a transfer's bytes come from. Per-packet work must not wait on the disk, so
 * files are read into memory before the first DATA goes out: whole (shared between
 * concurrent transfers of the same file through FileCache), or for very large files in
 * big chunks that cover at least one window.
 */
import type { promises as fsp, Stats } from 'node:fs';

export interface Source {
  readonly size: number;
  /** Bytes [off, off+len) when they are in memory, else undefined (call `load`). */
  slice(off: number, len: number): Buffer | undefined;
  /** Bring [off, off+len) into memory. */
  load(off: number, len: number): Promise<void>;
  /** The transfer is over: drop references, close descriptors. Idempotent. */
  release(): void;
}

export class BufferSource implements Source {
  readonly size: number;
  private released = false;
  constructor(
    private readonly buf: Buffer,
    private readonly onRelease?: () => void,
  ) {
    this.size = buf.length;
  }
  slice(off: number, len: number): Buffer {
    return this.buf.subarray(off, off + len);
  }
  async load(): Promise<void> {}
  /** The whole content (netascii conversion needs it). */
  all(): Buffer {
    return this.buf;
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease?.();
  }
}

/** A file too big to keep whole: one chunk in memory at a time, read with positional reads. */
export class ChunkedFileSource implements Source {
  private chunk: Buffer = Buffer.alloc(0);
  private chunkStart = 0;
  private released = false;
  constructor(
    private readonly handle: fsp.FileHandle,
    readonly size: number,
    private readonly chunkBytes: number,
  ) {}
  slice(off: number, len: number): Buffer | undefined {
    const end = Math.min(off + len, this.size);
    if (off >= this.chunkStart && end <= this.chunkStart + this.chunk.length) {
      return this.chunk.subarray(off - this.chunkStart, end - this.chunkStart);
    }
    if (off >= this.size) return Buffer.alloc(0);
    return undefined;
  }
  async load(off: number, len: number): Promise<void> {
    const want = Math.min(Math.max(len, this.chunkBytes), this.size - off);
    const buf = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < want) {
      const { bytesRead } = await this.handle.read(buf, got, want - got, off + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    // A file that shrank under us: we promised `size` bytes (tsize), so fail loudly.
    if (got < want) throw new Error(`file shrank during transfer (wanted ${want} bytes at ${off}, got ${got})`);
    this.chunk = buf;
    this.chunkStart = off;
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.handle.close().catch(() => {});
  }
}

export interface FileCacheOptions {
  /** Files up to this size are read whole and shared; larger ones are streamed in chunks. */
  maxFileBytes?: number;
  /** Unused entries are kept while the total stays under this. */
  maxBytes?: number;
  /** ...and for at most this long after their last transfer ended (UEFI asks twice). */
  ttlMs?: number;
  /** Chunk size for files above maxFileBytes. */
  chunkBytes?: number;
  now?: () => number;
  /** Keep contents in SharedArrayBuffers, so transfer worker threads read them without a copy. */
  shared?: boolean;
}

interface Entry {
  key: string;
  size: number;
  refs: number;
  lastUsed: number;
  data: Promise<Buffer>;
  /** Set once `data` has resolved: hits need no await. */
  loaded?: Buffer;
}

/** A file version: an edit changes size, mtime or ctime, a replacement the inode. */
function versionKey(stat: Stats): string {
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`;
}

/**
 * In-memory copies of served files, keyed by identity and version (dev, inode, size,
 * mtime, ctime) so an edited file is never served stale.
 */
export class FileCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxFileBytes: number;
  private readonly maxBytes: number;
  private readonly ttlMs: number;
  private readonly chunkBytes: number;
  private readonly now: () => number;
  private readonly shared: boolean;

  constructor(opts: FileCacheOptions = {}) {
    this.shared = opts.shared ?? false;
    this.maxFileBytes = opts.maxFileBytes ?? 256 * 1024 * 1024;
    this.maxBytes = opts.maxBytes ?? 512 * 1024 * 1024;
    this.ttlMs = opts.ttlMs ?? 30_000;
    this.chunkBytes = opts.chunkBytes ?? 16 * 1024 * 1024;
    this.now = opts.now ?? Date.now;
  }

  /**
   * The in-memory copy of the file version `stat` describes (from statInRoot), when one is
   * loaded; undefined otherwise (then open the file and call `open`). No I/O.
   */
  hit(stat: Stats): BufferSource | undefined {
    const e = this.entryFor(stat);
    if (!e?.loaded) return undefined;
    e.refs++;
    return this.source(e, e.loaded);
  }

  /**
   * Like `hit`, for a version that is being read into memory right now: resolves with its copy
   * once the read finishes (undefined if the read failed: then open the file the usual way).
   * Undefined at once when no read of this version is under way. The thousand RRQs of a storm
   * that arrive while the first one loads the loader then cost no descriptor each.
   */
  joinLoad(stat: Stats): Promise<BufferSource | undefined> | undefined {
    const e = this.entryFor(stat);
    if (!e || e.loaded) return undefined;
    e.refs++;
    const entry = e;
    return entry.data.then(
      (buf) => this.source(entry, buf),
      () => {
        entry.refs--;
        return undefined;
      },
    );
  }

  /** The entry (loaded or loading) of this file version, if it is one the cache may hold. */
  private entryFor(stat: Stats): Entry | undefined {
    return stat.size > this.maxFileBytes ? undefined : this.entries.get(versionKey(stat));
  }

  /** A source on `entry`, whose reference the caller has taken; ending it lets go. */
  private source(entry: Entry, buf: Buffer): BufferSource {
    return new BufferSource(buf, () => {
      entry.refs--;
      entry.lastUsed = this.now();
      this.sweep();
    });
  }

  /** Takes ownership of `handle`. */
  async open(handle: fsp.FileHandle, stat: Stats): Promise<Source> {
    if (stat.size > this.maxFileBytes) return new ChunkedFileSource(handle, stat.size, this.chunkBytes);
    const key = versionKey(stat);
    let e = this.entries.get(key);
    if (e) {
      handle.close().catch(() => {});
    } else {
      const data = readAll(handle, stat.size, this.shared).finally(() => handle.close().catch(() => {}));
      const entry: Entry = { key, size: stat.size, refs: 0, lastUsed: this.now(), data };
      e = entry;
      this.entries.set(key, e);
      // A failed read must not poison the cache.
      data.then((b) => (entry.loaded = b), () => this.entries.delete(key));
    }
    e.refs++;
    const entry = e;
    let buf: Buffer;
    try {
      buf = await entry.data;
    } catch (err) {
      entry.refs--;
      throw err;
    }
    this.sweep();
    return this.source(entry, buf);
  }

  /** Drop unused entries that are too old, then the oldest unused ones while over budget. */
  sweep(): void {
    const now = this.now();
    let total = 0;
    for (const e of this.entries.values()) {
      if (e.refs === 0 && now - e.lastUsed > this.ttlMs) this.entries.delete(e.key);
      else total += e.size;
    }
    if (total <= this.maxBytes) return;
    const idle = [...this.entries.values()].filter((e) => e.refs === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of idle) {
      if (total <= this.maxBytes) break;
      this.entries.delete(e.key);
      total -= e.size;
    }
  }

  get bytes(): number {
    let total = 0;
    for (const e of this.entries.values()) total += e.size;
    return total;
  }
}

async function readAll(handle: fsp.FileHandle, size: number, shared: boolean): Promise<Buffer> {
  const buf = shared ? Buffer.from(new SharedArrayBuffer(size)) : Buffer.allocUnsafe(size);
  let got = 0;
  while (got < size) {
    const { bytesRead } = await handle.read(buf, got, size - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  // Shrunk between stat and read: serve what is there; tsize is computed from this buffer.
  return got < size ? buf.subarray(0, got) : buf;
}
