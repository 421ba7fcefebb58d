import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Expected } from './verify.js';

/**
 * One artifact from one origin, into `tmp`, checked against the manifest as it arrives: a
 * length other than the manifest's is refused from the headers, more bytes than the manifest
 * says abort the transfer, and the sha256 is compared at the end. A transfer cut short is
 * resumed with a Range request (bounded attempts, growing pauses); an origin that answers
 * 200 to a resume starts over. The caller renames `tmp` into place only on `ok`.
 */
export type DownloadResult =
  | { ok: true; bytes: number; ms: number; attempts: number }
  /** missing: the origin does not have it (404/410) — try the next. */
  | { ok: false; kind: 'missing' | 'mismatch' | 'error' | 'local'; reason: string };

export interface DownloadOptions {
  /** Attempts per origin (first try included). */
  attempts: number;
  /** No byte for this long ends an attempt. */
  idleTimeoutMs: number;
  /** Sent with every request (the peer marker that stops fetch loops between servers). */
  headers?: Record<string, string>;
  /** Bytes so far (progress lines of `vnfs sync`). */
  onProgress?: (bytes: number) => void;
  /** Pause before attempt n (n >= 2); tests pass 0. */
  backoffMs?: (n: number) => number;
}

interface Attempt {
  /** local: this server cannot write the file (disk full, permissions): no origin can help. */
  status: 'done' | 'cut' | 'missing' | 'mismatch' | 'error' | 'local';
  reason?: string;
}

export async function downloadFrom(url: string, tmp: string, want: Expected, opts: DownloadOptions): Promise<DownloadResult> {
  const t0 = Date.now();
  let hash = crypto.createHash('sha256');
  let have = 0;
  let etag: string | undefined;
  fs.writeFileSync(tmp, '');
  let last = '';
  for (let n = 1; n <= opts.attempts; n++) {
    if (n > 1) await new Promise((r) => setTimeout(r, opts.backoffMs ? opts.backoffMs(n) : 250 * 2 ** (n - 2)));
    const a = await attempt();
    if (a.status === 'done') {
      const got = hash.digest('hex');
      if (have !== want.size) return { ok: false, kind: 'mismatch', reason: `served ${have} bytes, the manifest says ${want.size}` };
      if (got !== want.sha256) return { ok: false, kind: 'mismatch', reason: `served different bytes: sha256 ${got}, the manifest says ${want.sha256}` };
      return { ok: true, bytes: have, ms: Date.now() - t0, attempts: n };
    }
    if (a.status === 'missing' || a.status === 'mismatch' || a.status === 'local') return { ok: false, kind: a.status, reason: a.reason! };
    last = a.reason ?? 'connection cut';
  }
  return { ok: false, kind: 'error', reason: `${last} (gave up after ${opts.attempts} attempts, ${have} of ${want.size} bytes)` };

  function restart(): void {
    hash = crypto.createHash('sha256');
    have = 0;
    fs.truncateSync(tmp, 0);
  }

  function attempt(): Promise<Attempt> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (a: Attempt) => {
        if (settled) return;
        settled = true;
        resolve(a);
      };
      const headers: Record<string, string> = { ...opts.headers };
      if (have > 0) {
        headers.range = `bytes=${have}-`;
        if (etag) headers['if-range'] = etag;
      }
      let req: http.ClientRequest;
      try {
        req = (url.startsWith('https:') ? https : http).get(url, { headers }, (res) => {
          const status = res.statusCode ?? 0;
          if (status === 404 || status === 410) {
            res.resume();
            return finish({ status: 'missing', reason: `HTTP ${status}` });
          }
          if (status === 416 && have === want.size) {
            res.resume();
            return finish({ status: 'done' });
          }
          if (status !== 200 && status !== 206) {
            res.resume();
            return finish({ status: 'error', reason: `HTTP ${status}` });
          }
          let total: number | undefined;
          if (status === 200) {
            if (have > 0) restart(); // the origin ignored the Range: take the whole file again
            const len = res.headers['content-length'];
            if (len !== undefined) total = Number(len);
          } else {
            const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
            if (!m || Number(m[1]) !== have) {
              res.resume();
              restart();
              return finish({ status: 'error', reason: `a resume at byte ${have} got Content-Range ${res.headers['content-range'] ?? '(none)'}` });
            }
            if (m[3] !== '*') total = Number(m[3]);
          }
          if (total !== undefined && total !== want.size) {
            res.resume();
            return finish({ status: 'mismatch', reason: `serves ${total} bytes, the manifest says ${want.size}` });
          }
          etag = typeof res.headers.etag === 'string' && !res.headers.etag.startsWith('W/') ? res.headers.etag : etag;
          let fd: number;
          try {
            fd = fs.openSync(tmp, 'a');
          } catch (e) {
            req.destroy();
            return finish({ status: 'local', reason: `cannot write ${tmp}: ${(e as Error).message}` });
          }
          let closed = false;
          const close = () => {
            if (!closed) fs.closeSync(fd);
            closed = true;
          };
          res.on('data', (b: Buffer) => {
            if (settled) return;
            if (have + b.length > want.size) {
              close();
              req.destroy();
              return finish({ status: 'mismatch', reason: `sent more than the manifest's ${want.size} bytes` });
            }
            try {
              fs.writeSync(fd, b);
            } catch (e) {
              close();
              req.destroy();
              return finish({ status: 'local', reason: `cannot write ${tmp}: ${(e as Error).message}` });
            }
            hash.update(b);
            have += b.length;
            opts.onProgress?.(have);
          });
          res.on('end', () => {
            close();
            if (res.complete) finish(have === want.size ? { status: 'done' } : { status: 'cut', reason: `the transfer ended at ${have} of ${want.size} bytes` });
            else finish({ status: 'cut', reason: `connection cut at ${have} of ${want.size} bytes` });
          });
          res.on('error', (e) => {
            close();
            finish({ status: 'cut', reason: e.message });
          });
          res.on('aborted', () => {
            close();
            finish({ status: 'cut', reason: `connection cut at ${have} of ${want.size} bytes` });
          });
        });
      } catch (e) {
        return finish({ status: 'error', reason: (e as Error).message });
      }
      req.setTimeout(opts.idleTimeoutMs, () => {
        req.destroy(new Error(`no data for ${opts.idleTimeoutMs / 1000} s`));
      });
      req.on('error', (e) => finish({ status: 'cut', reason: (e as NodeJS.ErrnoException).code ?? e.message }));
    });
  }
}
