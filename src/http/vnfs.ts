import { peerIp } from '../util/net.js';
import path from 'node:path';
import { Router, type NextFunction, type Request, type Response } from 'express';
import type { EventSink } from '../nodes/types.js';
import { parseMac } from '../nodes/mac.js';
import { nameError } from '../nodes/names.js';
import { parseGeneratedName, type GeneratedRequest } from '../tftp/generated.js';
import { PEER_HEADER, revisionFileOf, vnfsRefOf, type RevisionArtifacts } from '../peers/artifacts.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { checkRelPath, refuse, resolveInside, segmentsOf, sendFast, sendResolved, type FileCache, type SendGate, type SendResult } from './files.js';
import { FAST_PATH, type FastPath } from './app.js';

/** What the VNFS router needs from the database (for naming events only). */
export interface VnfsFilesBackend {
  vnfs(name: string): { kernel: string; initrd: string } | undefined;
  nodeName(mac: string): string | undefined;
}

export interface VnfsRouterDeps {
  /** <statedir>/vnfs: each image in its own directory NAME/. */
  vnfsRoot: string;
  backend?: VnfsFilesBackend;
  events: EventSink;
  /** Read buffer per streamed transfer (default 1 MiB); only the benchmark changes it, to show why. */
  highWaterMark?: number;
  /** In-memory copies of hot files (default: the process's sharedFileCache); false streams every response. */
  cache?: FileCache | false;
  gate?: SendGate;
  /**
   * Revision artifacts (r<rev>/vmlinuz, initrd.img, rootfs.squashfs, manifest.json) and the
   * kernel and initrd of a kernel+initrd VNFS are served only once verified against the sha256
   * the database holds, fetched from peers when missing (issue 19). Absent: files are served as
   * they are on disk.
   */
  artifacts?: RevisionArtifacts;
}

function macOf(q: unknown): string | undefined {
  if (typeof q !== 'string') return undefined;
  const m = parseMac(q);
  return m.ok ? m.mac : undefined;
}

function errorHandler(err: Error & { status?: number }, _req: Request, res: Response, next: NextFunction): void {
  if (res.headersSent) return next(err);
  // Malformed percent-encoding and the like: say so in one line, never a stack trace.
  refuse(res, err.status && err.status < 500 ? err.status : 500, err.status && err.status < 500 ? 'bad request path' : err.message);
}

/**
 * GET/HEAD /vnfs/NAME/FILE[?mac=MAC]: a VNFS's files, confined to <vnfsRoot>/NAME/.
 * Events: http.kernel / http.initrd (other files: http.file) with bytes, ms, status; the
 * node is the one whose MAC the iPXE script appended to the URL.
 */
export function vnfsRouter(deps: VnfsRouterDeps): Router {
  const router = Router();
  // Naming the event takes database look-ups: done once the response is out, not before its first byte.
  // `role`: what the fast path's check already read (then no look-up here).
  const recordSent = (mac: string | undefined, name: string, file: string, method: string | undefined, range: string | undefined, s: SendResult, role?: 'kernel' | 'initrd' | 'other') => {
    const v = role ? undefined : deps.backend?.vnfs(name);
    const kind = role ? (role === 'other' ? 'http.file' : `http.${role}`) : v && file === v.kernel ? 'http.kernel' : v && file === v.initrd ? 'http.initrd' : 'http.file';
    deps.events.record({
      mac,
      node: mac ? deps.backend?.nodeName(mac) : undefined,
      kind,
      detail: { vnfs: name, file, method, status: s.status, bytes: s.bytes, ms: s.ms, aborted: s.aborted, range: range ?? null },
    });
  };
  router.get('/vnfs/*path', (req, res) => {
    const segs = segmentsOf((req.params as Record<string, unknown>).path);
    const mac = macOf(req.query.mac);
    const deny = (status: number, reason: string) => {
      deps.events.record({ mac, kind: 'http.error', detail: { path: req.path, status, error: reason } });
      refuse(res, status, reason);
    };
    if (!segs || segs.length < 2) return deny(404, 'VNFS files are /vnfs/<NAME>/<FILE>');
    const [name, ...rest] = segs;
    const bad = nameError('vnfs', name!);
    if (bad) return deny(403, bad);
    const chk = checkRelPath(rest);
    if (!chk.ok) return deny(403, chk.reason);
    const segments = chk.segments;
    const ref = deps.artifacts && vnfsRefOf([name!, ...segments]);
    if (ref) {
      deps.artifacts!.ensure(ref, { fetch: !req.headers[PEER_HEADER] }).then(
        (e) => (e.ok ? send() : deny(e.status, e.reason)),
        (err: Error) => deny(500, `${ref.vnfs}/${ref.rev === undefined ? '' : `r${ref.rev}/`}${ref.file}: ${err.message}`),
      );
      return;
    }
    send();
    function send() {
      const r = resolveInside(path.join(deps.vnfsRoot, name!), segments);
      if (!r.ok) return deny(r.status, r.reason);
      const file = segments.join('/');
      sendResolved(req, res, r.file, r.stat, (s: SendResult) => recordSent(mac, name!, file, req.method, req.headers.range, s), {
        highWaterMark: deps.highWaterMark,
        cache: deps.cache,
        gate: deps.gate,
      });
    }
  });
  router.use(errorHandler);
  // Ahead of express (createHttpApp): a plain GET/HEAD of a VNFS file whose copy is in the
  // cache, which is what every node of a boot storm asks for. Anything this does not take
  // (percent-escapes, other query keys, Range, conditionals, revision artifacts, a kernel or
  // initrd this process has not verified yet, refusals, a cache miss) goes to the route above untouched.
  const fast: FastPath = (req: IncomingMessage, res: ServerResponse, toExpress: () => void) => {
    if (deps.cache === false || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    const url = req.url!;
    if (!url.startsWith('/vnfs/') || url.includes('%')) return false;
    const q = url.indexOf('?');
    let mac: string | undefined;
    if (q !== -1) {
      const m = FAST_QUERY.exec(url.slice(q + 1));
      if (!m) return false;
      mac = macOf(m[1]);
    }
    const segs = url.slice('/vnfs/'.length, q === -1 ? undefined : q).split('/');
    if (segs.length < 2) return false;
    const [name, ...rest] = segs;
    if (nameError('vnfs', name!) || !checkRelPath(rest).ok) return false;
    if (deps.artifacts && revisionFileOf(segs)) return false;
    const r = resolveInside(path.join(deps.vnfsRoot, name!), rest);
    if (!r.ok) return false;
    // A kernel+initrd VNFS's file: only as this process verified it (one indexed read, no hashing;
    // it also names the event, which then needs no look-up of its own).
    const role = deps.artifacts && rest.length === 1 ? deps.artifacts.servableNow({ vnfs: name!, file: rest[0]! }, r.stat) : undefined;
    if (role === false) return false;
    const file = rest.join('/');
    const method = req.method;
    return sendFast(req, res, r.file, r.stat, (s) => recordSent(mac, name!, file, method, undefined, s, role), { cache: deps.cache, gate: deps.gate }, toExpress);
  };
  return Object.assign(router, { [FAST_PATH]: fast });
}

/** The one query the fast path reads: `mac=` once, in characters that need no decoding (else express reads it). */
const FAST_QUERY = /^(?:mac=([0-9A-Za-z:.-]{0,64}))?$/;

export interface TftpHttpRouterDeps {
  /** The TFTP root (boot loaders): served over HTTP for UEFI HTTP boot firmware. */
  root: string;
  events: EventSink;
  cache?: FileCache | false;
  gate?: SendGate;
  /**
   * The generated configurations (pxelinux.cfg/01-<mac>, grub.cfg-01-<mac>) as TFTP serves
   * them: GRUB loaded by UEFI HTTP boot reads its configuration from where it came from,
   * over HTTP. Undefined = decline (then the file on disk, else 404).
   */
  generate?: (req: GeneratedRequest, ip?: string) => Buffer | undefined;
}

/** GET/HEAD /tftp/<path>: the TFTP root over HTTP, same confinement rules as /vnfs. */
export function tftpHttpRouter(deps: TftpHttpRouterDeps): Router {
  const router = Router();
  router.get('/tftp/*path', (req, res) => {
    const segs = segmentsOf((req.params as Record<string, unknown>).path);
    const deny = (status: number, reason: string) => {
      deps.events.record({ kind: 'http.error', detail: { path: req.path, status, error: reason } });
      refuse(res, status, reason);
    };
    if (!segs) return deny(404, 'no file named');
    // Generated names first: they never touch the disk, and GRUB spells a MAC with colons
    // (grub.cfg-aa:bb:cc:dd:ee:ff), which the file path rules below do not serve.
    const g = deps.generate && !segs.some((x) => x === '..' || x === '.' || x === '') ? parseGeneratedName(segs.join('/')) : undefined;
    const body = g && deps.generate?.({ ...g, path: segs.join('/') }, req.socket.remoteAddress);
    if (g && body) {
      deps.events.record({ mac: g.mac, kind: 'http.file', detail: { path: segs.join('/'), method: req.method, status: 200, bytes: body.length, generated: true, ip: req.socket.remoteAddress ?? null } });
      res.type('text/plain').send(body);
      return;
    }
    const chk = checkRelPath(segs);
    if (!chk.ok) return deny(403, chk.reason);
    const r = resolveInside(deps.root, chk.segments);
    if (!r.ok) return deny(r.status, r.reason);
    sendResolved(req, res, r.file, r.stat, (s) => {
      deps.events.record({ kind: 'http.file', detail: { path: chk.segments.join('/'), method: req.method, status: s.status, bytes: s.bytes, ms: s.ms, aborted: s.aborted, ip: peerIp(req.socket.remoteAddress) ?? null } });
    }, { cache: deps.cache, gate: deps.gate });
  });
  router.use(errorHandler);
  return router;
}

/** VnfsFilesBackend over the store. */
export function storeVnfsFiles(store: { vnfs: { get(name: string): { kernel: string; initrd: string } | undefined }; nodes: { nameByMac(mac: string): string | undefined } }): VnfsFilesBackend {
  // Only the name (one indexed read per kernel/initrd in a boot storm): not the node and its attributes.
  return { vnfs: (n) => store.vnfs.get(n), nodeName: (mac) => store.nodes.nameByMac(mac) };
}
