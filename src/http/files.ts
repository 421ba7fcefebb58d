import fs from 'node:fs';
import path from 'node:path';
import type { Request, Response } from 'express';

/**
 * Serving files that nodes download (kernels, initrds, boot loaders) from a directory they
 * must never leave. Validation is pure (checkRelPath); confinement of symlinks is checked
 * on the real path; the transfer itself is express's res.sendFile (the `send` module:
 * HEAD, Range 206/416, If-None-Match / If-Modified-Since 304, If-Range) with a 1 MiB read
 * buffer — the 64 KiB default costs ~4x in throughput on multi-megabyte initrds.
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
    realRoot = fs.realpathSync(root);
  } catch {
    return { ok: false, status: 404, reason: 'no such directory' };
  }
  let real: string;
  try {
    real = fs.realpathSync(path.join(realRoot, ...segments));
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

/**
 * Send one already-resolved file. ETag is set here because the node-facing app turns
 * express's own ETags off (they hash whole bodies of dynamic responses); `send` then uses
 * it for If-None-Match and If-Range. `done` runs once, when the response ends or aborts.
 */
export function sendResolved(req: Request, res: Response, file: string, stat: fs.Stats, done?: (r: SendResult) => void, highWaterMark = SEND_HIGH_WATER_MARK): void {
  const t0 = process.hrtime.bigint();
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
