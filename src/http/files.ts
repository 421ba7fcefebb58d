import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import express, { type Request, type Response } from 'express';

/**
 * Serving files that nodes download (kernels, initrds, boot loaders) from a directory they
 * must never leave. Validation is pure (checkRelPath); confinement of symlinks is checked
 * on the real path. In a boot storm every node fetches the same few kernels and initrds, so
 * the transfer is normally one write of an in-memory copy (FileCache, validated against a
 * stat on every request); files too large for the cache, or whose read raced a change, go
 * through express's res.sendFile (the `send` module) with a 1 MiB read buffer — the
 * 64 KiB default costs ~4x in throughput on multi-megabyte initrds. Both paths answer
 * HEAD, Range 206/416, If-None-Match / If-Modified-Since 304, If-Match 412 and If-Range
 * the same way.
 */

/** One path segment a node may ask for: no dotfiles (so no '.', '..'), no separators, no control bytes. */
const SEGMENT = /^[A-Za-z0-9_+~-][A-Za-z0-9._+~-]{0,254}$/;

export type PathCheck = { ok: true; segments: string[] } | { ok: false; reason: string };

/**
 * Pure: decoded path segments (as express hands them, so %2f and %2e are already decoded)
 * to a safe relative path, or the reason it is refused.
 */
export function checkRelPath(segments: string[]): PathCheck {
  if (segments.length === 0) return { ok: false, reason: 'empty path' };
  if (segments.length > 16) return { ok: false, reason: 'path too deep' };
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') return { ok: false, reason: `path segment "${s}" is not allowed` };
    if (s.startsWith('.')) return { ok: false, reason: 'dotfiles are not served' };
    if (!SEGMENT.test(s)) return { ok: false, reason: `path segment ${JSON.stringify(s)} has characters that are not served (use letters, digits, '.', '_', '-', '+', '~')` };
  }
  return { ok: true, segments };
}

export type Resolved = { ok: true; file: string; stat: fs.Stats } | { ok: false; status: 403 | 404; reason: string };

/**
 * The real path of root/segments, if it is a regular file inside root's real path
 * (a symlink inside the tree may point elsewhere inside it, never out).
 */
export function resolveInside(root: string, segments: string[]): Resolved {
  let realRoot: string;
  try {
    realRoot = fs.realpathSync.native(root);
  } catch {
    return { ok: false, status: 404, reason: 'no such directory' };
  }
  let real: string;
  try {
    real = fs.realpathSync.native(path.join(realRoot, ...segments));
  } catch {
    return { ok: false, status: 404, reason: 'no such file' };
  }
  if (real !== realRoot && !real.startsWith(realRoot + path.sep)) return { ok: false, status: 403, reason: 'the path leads outside the served directory' };
  let stat: fs.Stats;
  try {
    stat = fs.statSync(real);
  } catch {
    return { ok: false, status: 404, reason: 'no such file' };
  }
  if (!stat.isFile()) return { ok: false, status: 404, reason: 'not a regular file' };
  return { ok: true, file: real, stat };
}

/** Weak validator in the form `send` would make: size and mtime. */
export function etagFor(stat: fs.Stats): string {
  return `W/"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`;
}

export interface SendResult {
  status: number;
  bytes: number;
  ms: number;
  /** Set when the client went away before the end. */
  aborted: boolean;
}

export const SEND_HIGH_WATER_MARK = 1 << 20;

/** What identifies one version of a file: a replaced file (new inode), a rewrite (size, mtime, ctime) or a touch all change it. */
function sameVersion(a: fs.Stats, b: fs.Stats): boolean {
  return a.ino === b.ino && a.dev === b.dev && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

interface CacheEntry {
  stat: fs.Stats;
  body: Buffer;
  etag: string;
  lastModified: string;
  /** Read while the file was younger than settleMs: used only until then, and read again after. */
  until?: number;
  /** Content-Type, from the first response (the path, so its extension, is the key). */
  type?: string;
}

export interface FileCacheOptions {
  /** Bytes held in all (default 512 MiB); least recently served files are dropped first. */
  maxBytes?: number;
  /** Larger files are never cached (default 256 MiB). */
  maxFileBytes?: number;
  /**
   * A copy read while the file's mtime or ctime was this recent (default 2000 ms) is read
   * again once the file has been quiet that long: a writer in the middle of an in-place
   * rewrite may not have moved the timestamps past the clock tick our read saw, so such a
   * copy could mix old and new bytes (as a streamed response read at that moment could).
   */
  settleMs?: number;
}

/**
 * In-memory copies of the files nodes download, keyed by real path. Every request brings a
 * fresh stat (resolveInside) and a copy is used only if device, inode, size, mtime and ctime
 * are all unchanged, so a replaced or rewritten file is read anew on its next request. Only
 * paths that already passed resolveInside are ever looked up, so confinement is unchanged.
 * Concurrent first requests share one read.
 */
export class FileCache {
  readonly maxBytes: number;
  readonly maxFileBytes: number;
  readonly settleMs: number;
  /** Map order is recency order: a hit re-inserts its entry at the end. */
  private entries = new Map<string, CacheEntry>();
  private loading = new Map<string, { stat: fs.Stats; done: Promise<CacheEntry | undefined> }>();
  private held = 0;
  /** Counters for tests and benchmarks. */
  readonly stats = { hits: 0, loads: 0, evictions: 0, bypass: 0 };

  constructor(o: FileCacheOptions = {}) {
    this.maxBytes = o.maxBytes ?? 512 << 20;
    this.maxFileBytes = Math.min(o.maxFileBytes ?? 256 << 20, this.maxBytes);
    this.settleMs = o.settleMs ?? 2000;
  }

  get bytes(): number {
    return this.held;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Whether this file may be cached at all. */
  cacheable(stat: fs.Stats): boolean {
    return stat.size <= this.maxFileBytes;
  }

  /** The cached copy of exactly this version, if there is one. */
  lookup(file: string, stat: fs.Stats): CacheEntry | undefined {
    const e = this.entries.get(file);
    if (!e) return undefined;
    this.entries.delete(file);
    if (!sameVersion(e.stat, stat) || (e.until !== undefined && Date.now() >= e.until)) {
      // Replaced, rewritten, or read while it might still have been written: drop the copy.
      this.held -= e.body.length;
      return undefined;
    }
    this.entries.set(file, e);
    this.stats.hits++;
    return e;
  }

  /**
   * Read this version into the cache. Resolves undefined when the file turned out to be a
   * different version than `stat` (or changed while it was read): the caller streams it.
   */
  load(file: string, stat: fs.Stats): Promise<CacheEntry | undefined> {
    const pending = this.loading.get(file);
    if (pending) return sameVersion(pending.stat, stat) ? pending.done : Promise.resolve(undefined);
    const done = this.read(file, stat).then(
      (e) => {
        this.loading.delete(file);
        if (e) this.insert(file, e);
        return e;
      },
      () => {
        this.loading.delete(file);
        return undefined;
      },
    );
    this.loading.set(file, { stat, done });
    return done;
  }

  private async read(file: string, stat: fs.Stats): Promise<CacheEntry | undefined> {
    const fh = await fs.promises.open(file, 'r');
    const settled = Math.max(stat.mtimeMs, stat.ctimeMs) + this.settleMs;
    const racy = Date.now() < settled;
    try {
      if (!sameVersion(await fh.stat(), stat)) return undefined;
      // Not from the shared pool: a cached small file must not pin an 8 KiB slab of others.
      const body = Buffer.allocUnsafeSlow(stat.size);
      let off = 0;
      while (off < body.length) {
        const { bytesRead } = await fh.read(body, off, body.length - off, off);
        if (bytesRead === 0) return undefined;
        off += bytesRead;
      }
      // Any write during the read moved size, mtime or ctime (the file is older than settleMs).
      if (!sameVersion(await fh.stat(), stat)) return undefined;
      this.stats.loads++;
      return { stat, body, etag: etagFor(stat), lastModified: stat.mtime.toUTCString(), ...(racy ? { until: settled } : {}) };
    } finally {
      await fh.close();
    }
  }

  private insert(file: string, e: CacheEntry): void {
    const old = this.entries.get(file);
    if (old) {
      this.entries.delete(file);
      this.held -= old.body.length;
    }
    this.entries.set(file, e);
    this.held += e.body.length;
    for (const [k, v] of this.entries) {
      if (this.held <= this.maxBytes || k === file) break;
      this.entries.delete(k);
      this.held -= v.body.length;
      this.stats.evictions++;
    }
  }

  clear(): void {
    this.entries.clear();
    this.held = 0;
  }
}

/** The process's cache for node-facing files: one budget shared by /vnfs and /tftp. */
export const sharedFileCache = new FileCache();

/**
 * Admission of large bodies (kernels, initrds). A thousand nodes asking for the same kernel at
 * once, all streamed in parallel, share the link fairly and all finish at the very end; served
 * mostly in arrival order, through `slots` concurrent streams, the first nodes have their
 * kernel after a fraction of that time and move on to the next stage (so later stages see a
 * spread-out load), and the last finishes no later. A stream holds its slot until it ends or
 * for at most `holdMs`: a slow or stalled client cannot hold the queue up for longer than that,
 * and on links slower than the server a growing number of streams run side by side.
 */
export class SendGate {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  readonly stats = { admitted: 0, queued: 0, maxQueue: 0, expired: 0 };

  constructor(
    readonly slots: number,
    readonly holdMs: number,
  ) {}

  /** Run `start` once a slot is free; the slot is held until `res` ends or holdMs passes. */
  admit(res: ServerResponse, start: () => void): void {
    const go = () => {
      if (res.destroyed) return this.next();
      this.active++;
      this.stats.admitted++;
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        clearTimeout(timer);
        this.active--;
        this.next();
      };
      const timer = setTimeout(() => {
        this.stats.expired++;
        release();
      }, this.holdMs);
      timer.unref();
      res.once('close', release);
      res.once('finish', release);
      try {
        start();
      } catch (e) {
        // A queued start runs from another response's 'finish': an exception here would
        // escape express and take the server down. The client loses only its connection.
        res.destroy(e as Error);
      }
    };
    if (this.active < this.slots) return go();
    this.stats.queued++;
    this.queue.push(go);
    this.stats.maxQueue = Math.max(this.stats.maxQueue, this.queue.length);
  }

  /** Streams running and responses waiting for one, right now. */
  now(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.queue.length };
  }

  private next(): void {
    while (this.active < this.slots && this.queue.length) this.queue.shift()!();
  }
}

/** Bodies smaller than this never wait for a slot: they cost less than the bookkeeping. */
const GATED_BYTES = 256 * 1024;

export interface SendOptions {
  /** Admission of large bodies (none when absent). */
  gate?: SendGate;
  /** Read buffer of the streaming path. */
  highWaterMark?: number;
  /** The cache to serve from (default sharedFileCache); false streams every response. */
  cache?: FileCache | false;
}

/**
 * Send one already-resolved file. ETag is set here because the node-facing app turns
 * express's own ETags off (they hash whole bodies of dynamic responses); `send` then uses
 * it for If-None-Match and If-Range. `done` runs once, when the response ends or aborts.
 */
export function sendResolved(req: Request, res: Response, file: string, stat: fs.Stats, done?: (r: SendResult) => void, opts: SendOptions = {}): void {
  watchResponse(res, done);
  if (gated(req, opts.gate, stat)) opts.gate!.admit(res, () => sendFrom(req, res, file, stat, opts));
  else sendFrom(req, res, file, stat, opts);
}

/** Whether this response waits for a slot of `gate`: only whole GETs of large bodies do. */
function gated(req: IncomingMessage, gate: SendGate | undefined, stat: fs.Stats): boolean {
  return gate !== undefined && req.method === 'GET' && !req.headers.range && stat.size >= GATED_BYTES;
}

/** Call `done` once, when the response ends or aborts, with its status, body bytes and the time since t0. */
function watchResponse(res: ServerResponse, done?: (r: SendResult) => void, t0 = process.hrtime.bigint()): void {
  const sock = res.socket;
  const before = sock?.bytesWritten ?? 0;
  let reported = false;
  const report = (aborted: boolean) => {
    if (reported) return;
    reported = true;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const bytes = Math.max(0, (sock?.bytesWritten ?? before) - before);
    done?.({ status: res.statusCode, bytes, ms: Math.round(ms * 10) / 10, aborted });
  };
  res.once('finish', () => report(false));
  res.once('close', () => report(!res.writableFinished));
}

/** The Content-Type express's res.type(extension) sets (same code, no response needed). */
export function expressContentType(file: string): string {
  let type = 'application/octet-stream';
  const probe = { set: express.response.set, setHeader: (_field: string, value: string) => void (type = value) };
  (express.response.type as (this: unknown, t: string) => unknown).call(probe, path.extname(file));
  return type;
}

/**
 * The raw request path (no express) for the hot case of a boot storm: a GET or HEAD without
 * Range or conditional headers of a file the cache holds or can hold. Returns false, having
 * touched nothing, for anything else: the caller hands the request to express. On a cache
 * miss the file is read into the cache first (concurrent first requests share the read), and
 * if that read cannot make a copy (the file changed meanwhile) the request goes to express
 * (`toExpress`), untouched, which streams it. The response is byte for byte what sendBuffer
 * makes for the same request, and `done` gets the same report.
 */
export function sendFast(
  req: IncomingMessage,
  res: ServerResponse,
  file: string,
  stat: fs.Stats,
  done: ((r: SendResult) => void) | undefined,
  opts: SendOptions,
  toExpress: () => void,
): boolean {
  const h = req.headers;
  if (h.range !== undefined || h['if-match'] !== undefined || h['if-unmodified-since'] !== undefined || h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined) return false;
  const cache = opts.cache === undefined ? sharedFileCache : opts.cache;
  if (!cache) return false;
  const t0 = process.hrtime.bigint();
  const hit = cache.lookup(file, stat);
  if (hit) {
    sendHit(req, res, file, stat, hit, done, opts, t0);
    return true;
  }
  if (!cache.cacheable(stat)) return false;
  cache.load(file, stat).then(
    (e) => {
      if (!e) return toExpress();
      if (res.destroyed || req.socket.destroyed) return done?.({ status: res.statusCode, bytes: 0, ms: Math.round(Number(process.hrtime.bigint() - t0) / 1e5) / 10, aborted: true });
      sendHit(req, res, file, stat, e, done, opts, t0);
    },
    () => toExpress(),
  );
  return true;
}

function sendHit(req: IncomingMessage, res: ServerResponse, file: string, stat: fs.Stats, e: CacheEntry, done: ((r: SendResult) => void) | undefined, opts: SendOptions, t0: bigint): void {
  e.type ??= expressContentType(file);
  watchResponse(res, done, t0);
  if (gated(req, opts.gate, stat)) opts.gate!.admit(res, () => sendPlain(req, res, e));
  else sendPlain(req, res, e);
}

/** sendBuffer's headers and body for a request without Range or conditionals (its Content-Type known). */
function sendPlain(req: IncomingMessage, res: ServerResponse, e: CacheEntry): void {
  if (res.headersSent) return void res.destroy();
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Last-Modified', e.lastModified);
  res.setHeader('ETag', e.etag);
  res.setHeader('Content-Type', e.type!);
  res.setHeader('Content-Length', e.body.length);
  if (req.method === 'HEAD') return void res.end();
  res.end(e.body);
}

function sendFrom(req: Request, res: Response, file: string, stat: fs.Stats, opts: SendOptions): void {
  const cache = opts.cache === undefined ? sharedFileCache : opts.cache;
  if (cache) {
    const hit = cache.lookup(file, stat);
    if (hit) return sendBuffer(req, res, file, hit);
    if (cache.cacheable(stat)) {
      cache.load(file, stat).then(
        (e) => {
          if (res.destroyed) return;
          if (e) sendBuffer(req, res, file, e);
          else sendStream(res, file, stat, opts.highWaterMark);
        },
        () => sendStream(res, file, stat, opts.highWaterMark),
      );
      return;
    }
    cache.stats.bypass++;
  }
  sendStream(res, file, stat, opts.highWaterMark);
}

function sendStream(res: Response, file: string, stat: fs.Stats, highWaterMark = SEND_HIGH_WATER_MARK): void {
  res.setHeader('ETag', etagFor(stat));
  res.setHeader('Cache-Control', 'no-cache');
  res.sendFile(
    file,
    {
      // Paths were validated and resolved already; these keep `send` from second-guessing them.
      dotfiles: 'allow',
      lastModified: true,
      acceptRanges: true,
      // Passed through `send` to fs.createReadStream.
      highWaterMark,
    } as Parameters<Response['sendFile']>[1],
    (err?: Error) => {
      if (!err) return;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ECONNABORTED' || code === 'ECONNRESET' || code === 'EPIPE') return;
      if (!res.headersSent) {
        const status = (err as { status?: number }).status ?? 500;
        res.status(status).type('text/plain').send(`pxeherd: ${status === 404 ? 'no such file' : err.message}\n`);
      } else res.destroy(err);
    },
  );
}

const BYTES_RANGE = /^ *bytes=/;
const NO_CACHE = /(?:^|,)\s*?no-cache\s*?(?:,|$)/;

/** Entity tags of an If-Match / If-None-Match list, as `fresh` and `send` split it. */
function tokenList(str: string): string[] {
  const list: string[] = [];
  let start = 0;
  let end = 0;
  for (let i = 0; i < str.length; i++) {
    const c = str.charCodeAt(i);
    if (c === 0x20) {
      if (start === end) start = end = i + 1;
    } else if (c === 0x2c) {
      list.push(str.substring(start, end));
      start = end = i + 1;
    } else end = i + 1;
  }
  list.push(str.substring(start, end));
  return list;
}

/** `send`'s weak comparison: W/"x" matches "x" either way round. */
function tagMatches(list: string, etag: string): boolean {
  return tokenList(list).some((m) => m === etag || m === 'W/' + etag || 'W/' + m === etag);
}

const httpDate = (s: unknown): number => (typeof s === 'string' ? Date.parse(s) : NaN);

/**
 * A Range header against `size` bytes, as `send` reads it (range-parser with combine):
 * 'ignore' for anything malformed or several disjoint ranges (a plain 200), 'unsatisfiable'
 * (416) when no range overlaps the file, else the one byte span to send.
 */
export function parseByteRange(size: number, header: string): { start: number; end: number } | 'ignore' | 'unsatisfiable' {
  const eq = header.indexOf('=');
  if (eq === -1) return 'ignore';
  const ranges: { start: number; end: number }[] = [];
  for (const part of header.slice(eq + 1).split(',')) {
    const dash = part.indexOf('-');
    if (dash === -1) return 'ignore';
    const a = part.slice(0, dash).trim();
    const b = part.slice(dash + 1).trim();
    const num = (x: string) => (/^\d+$/.test(x) ? Number(x) : NaN);
    let start = num(a);
    let end = num(b);
    if (a.length === 0) {
      start = size - end;
      end = size - 1;
    } else if (b.length === 0) end = size - 1;
    if (end > size - 1) end = size - 1;
    if (Number.isNaN(start) || Number.isNaN(end)) return 'ignore';
    if (start > end || start < 0) continue;
    ranges.push({ start, end });
  }
  if (ranges.length === 0) return 'unsatisfiable';
  ranges.sort((x, y) => x.start - y.start);
  const merged = [ranges[0]!];
  for (const r of ranges.slice(1)) {
    const cur = merged[merged.length - 1]!;
    if (r.start > cur.end + 1) merged.push(r);
    else if (r.end > cur.end) cur.end = r.end;
  }
  return merged.length === 1 ? merged[0]! : 'ignore';
}

/**
 * The cached copy as the response, with the headers and conditional/range handling `send`
 * gives the streaming path. The body is one res.end of the buffer (or a view of it): the
 * socket writes straight from the cached memory, no read calls and no per-response copy.
 */
function sendBuffer(req: Request, res: Response, file: string, e: CacheEntry): void {
  if (res.headersSent) return void res.destroy();
  const h = req.headers;
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Last-Modified', e.lastModified);
  res.setHeader('ETag', e.etag);
  if (e.type) res.setHeader('Content-Type', e.type);
  else {
    res.type(path.extname(file));
    e.type = String(res.getHeader('Content-Type'));
  }
  if (h['if-match'] || h['if-unmodified-since'] || h['if-none-match'] || h['if-modified-since']) {
    const ifMatch = h['if-match'];
    const unmodifiedSince = httpDate(h['if-unmodified-since']);
    const failed = ifMatch ? ifMatch !== '*' && !tagMatches(ifMatch, e.etag) : !Number.isNaN(unmodifiedSince) && Date.parse(e.lastModified) > unmodifiedSince;
    if (failed) {
      res.removeHeader('Content-Type');
      return refuse(res, 412, 'precondition failed');
    }
    const noCache = typeof h['cache-control'] === 'string' && NO_CACHE.test(h['cache-control']);
    const noneMatch = h['if-none-match'];
    const fresh = noCache ? false : noneMatch ? noneMatch === '*' || tagMatches(noneMatch, e.etag) : Date.parse(e.lastModified) <= httpDate(h['if-modified-since']);
    if (fresh) {
      res.removeHeader('Content-Type');
      res.statusCode = 304;
      return void res.end();
    }
  }
  const size = e.body.length;
  let body = e.body;
  const range = h.range;
  if (range && BYTES_RANGE.test(range)) {
    let r = parseByteRange(size, range);
    const ifRange = h['if-range'];
    if (ifRange && (ifRange.includes('"') ? !ifRange.includes(e.etag) : !(Date.parse(e.lastModified) <= httpDate(ifRange)))) r = 'ignore';
    if (r === 'unsatisfiable') {
      res.removeHeader('Content-Type');
      res.setHeader('Content-Range', `bytes */${size}`);
      return refuse(res, 416, 'range not satisfiable');
    }
    if (r !== 'ignore') {
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${r.start}-${r.end}/${size}`);
      body = e.body.subarray(r.start, r.end + 1);
    }
  }
  res.setHeader('Content-Length', body.length);
  if (req.method === 'HEAD') return void res.end();
  res.end(body);
}

/** A plain-text refusal. */
export function refuse(res: Response, status: number, reason: string): void {
  res.status(status).type('text/plain; charset=utf-8').set('Cache-Control', 'no-store').send(`pxeherd: ${reason}\n`);
}

/**
 * Raw request path segments, decoded, as a route param of the form `*path` delivers them;
 * also accepts a single decoded string (a `:param`) and splits it, so an encoded %2f
 * cannot smuggle a separator past per-segment checks.
 */
export function segmentsOf(param: unknown): string[] | undefined {
  if (Array.isArray(param)) return param.flatMap((p) => String(p).split('/'));
  if (typeof param === 'string') return param.split('/');
  return undefined;
}
