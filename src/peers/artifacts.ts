import fs from 'node:fs';
import path from 'node:path';
import type { EventSink } from '../nodes/types.js';
import { ARTIFACTS, parseManifest, type ArtifactName, type ImageManifest } from '../images/manifest.js';
import { nameError } from '../nodes/names.js';
import { fsyncDir } from '../images/revisions.js';
import { downloadFrom, type DownloadOptions } from './download.js';
import { markerHolds, readMarker, sha256File, short, writeMarker, type Expected } from './verify.js';

/**
 * A revision's artifacts on this server's disk, as the database's manifest defines them
 * (issue 19: each server keeps its own VNFS bytes, content-addressed by the manifest's
 * sha256). Nothing is served before it is verified: a local file is hashed once (then a
 * marker vouches for it while its size, mtime and inode stay the same), a missing or corrupt
 * one is fetched from the configured origins (other pxeherd servers, or any HTTP server with
 * the same /vnfs/<name>/r<rev>/<file> layout), checked, and renamed into place. Concurrent
 * requests for one file share one check or fetch.
 */

/** The header a server sends when it fetches from a peer: the peer then serves only what it holds, never fetches in turn (no loops). */
export const PEER_HEADER = 'x-pxeherd-peer';

export type RevisionFile = ArtifactName | 'manifest.json';

export interface ArtifactRef {
  vnfs: string;
  rev: number;
  file: RevisionFile;
}

/** Pure: the request path segments (after /vnfs/) of a revision artifact, or undefined for any other file. */
export function revisionFileOf(segments: string[]): ArtifactRef | undefined {
  if (segments.length !== 3) return undefined;
  const [vnfs, r, file] = segments as [string, string, string];
  const m = /^r([1-9][0-9]{0,8})$/.exec(r);
  if (!m || nameError('vnfs', vnfs)) return undefined;
  if (file !== 'manifest.json' && !(ARTIFACTS as readonly string[]).includes(file)) return undefined;
  return { vnfs, rev: Number(m[1]), file: file as RevisionFile };
}

export type EnsureResult =
  | { ok: true; file: string; how: 'verified' | 'checked' | 'fetched' | 'written'; origin?: string; bytes?: number; ms?: number }
  | { ok: false; status: number; reason: string };

export interface RevisionArtifactsDeps {
  /** <statedir>/vnfs */
  vnfsRoot: string;
  /** The manifest text the database holds for a revision (undefined: no such revision). */
  manifestOf(vnfs: string, rev: number): string | undefined;
  /** Base URLs of servers to fetch from, in order (images.origins). */
  origins: string[];
  serverId: string;
  events: EventSink;
  log?: (level: 'info' | 'warn', msg: string) => void;
  attempts?: number;
  idleTimeoutMs?: number;
  backoffMs?: DownloadOptions['backoffMs'];
}

export interface EnsureOptions {
  /** false for requests from a peer: serve what is here, never fetch in turn. */
  fetch?: boolean;
  onProgress?: (bytes: number, total: number) => void;
}

export class RevisionArtifacts {
  private readonly manifests = new Map<string, ImageManifest | null>();
  /** path -> "sha256 size mtimeMs ino" already verified by this process. */
  private readonly verified = new Map<string, string>();
  private readonly inflight = new Map<string, Promise<EnsureResult>>();

  constructor(private readonly deps: RevisionArtifactsDeps) {}

  /** The revision's manifest from the database (revisions are immutable: read once). */
  manifest(vnfs: string, rev: number): ImageManifest | undefined {
    const key = `${vnfs}@${rev}`;
    if (!this.manifests.has(key)) {
      const text = this.deps.manifestOf(vnfs, rev);
      let m: ImageManifest | null = null;
      try {
        m = text ? parseManifest(text) : null;
      } catch {
        m = null;
      }
      if (!m) return undefined; // not cached: the revision may be committed a moment later
      this.manifests.set(key, m);
    }
    return this.manifests.get(key) ?? undefined;
  }

  private dir(ref: { vnfs: string; rev: number }): string {
    return path.join(this.deps.vnfsRoot, ref.vnfs, `r${ref.rev}`);
  }

  /** Make the file present and verified on this disk (fetching it if need be), or say why it cannot be. */
  ensure(ref: ArtifactRef, opts: EnsureOptions = {}): Promise<EnsureResult> {
    const label = `${ref.vnfs} r${ref.rev}/${ref.file}`;
    if (ref.file === 'manifest.json') return Promise.resolve(this.ensureManifest(ref, label));
    const m = this.manifest(ref.vnfs, ref.rev);
    if (!m) return Promise.resolve({ ok: false, status: 404, reason: `VNFS "${ref.vnfs}" has no revision ${ref.rev} in the database` });
    const want = m.artifacts[ref.file as ArtifactName];
    if (!want) return Promise.resolve({ ok: false, status: 404, reason: `revision ${ref.rev} of VNFS "${ref.vnfs}" has no ${ref.file}` });
    const file = path.join(this.dir(ref), ref.file);
    // The common case, without a promise chain: this process verified exactly this file.
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (st && this.verified.get(file) === `${want.sha256} ${st.size} ${st.mtimeMs} ${st.ino}`) return Promise.resolve({ ok: true, file, how: 'verified' });
    const key = `${file}\0${opts.fetch === false ? 'local' : 'fetch'}`;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.settle(ref, label, file, want, opts).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private ensureManifest(ref: ArtifactRef, label: string): EnsureResult {
    const text = this.deps.manifestOf(ref.vnfs, ref.rev);
    if (!text) return { ok: false, status: 404, reason: `VNFS "${ref.vnfs}" has no revision ${ref.rev} in the database` };
    const file = path.join(this.dir(ref), 'manifest.json');
    let local: string | undefined;
    try {
      local = fs.readFileSync(file, 'utf8');
    } catch {
      local = undefined;
    }
    if (local === text) return { ok: true, file, how: 'verified' };
    // The database is the manifest's identity: this server's copy is written from it.
    if (local !== undefined) this.say('warn', 'vnfs.corrupt', { vnfs: ref.vnfs, rev: ref.rev, file: 'manifest.json', reason: 'differs from the database: rewritten from it' }, `${label} differs from the database's manifest: rewritten from the database`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = path.join(path.dirname(file), `.manifest.json.${process.pid}`);
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
    return { ok: true, file, how: 'written' };
  }

  private async settle(ref: ArtifactRef, label: string, file: string, want: Expected, opts: EnsureOptions): Promise<EnsureResult> {
    let problem = '';
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (st?.isFile()) {
      if (markerHolds(readMarker(file), st, want)) return this.remember(file, st, want, 'verified');
      const got = st.size === want.size ? await sha256File(file) : '';
      const now = fs.statSync(file, { throwIfNoEntry: false });
      if (got === want.sha256 && now && now.mtimeMs === st.mtimeMs && now.size === st.size && now.ino === st.ino) {
        writeMarker(file, st, want.sha256);
        this.deps.events.record({ kind: 'vnfs.verify', detail: { vnfs: ref.vnfs, rev: ref.rev, file: ref.file, sha256: want.sha256, bytes: st.size, server: this.deps.serverId } });
        return this.remember(file, st, want, 'checked');
      }
      problem = st.size !== want.size ? `is ${st.size} bytes, the manifest says ${want.size}` : `has sha256 ${short(got)}…, the manifest says ${short(want.sha256)}…`;
      // Kept aside for a look, out of the served name (dotfiles are never served).
      const aside = path.join(path.dirname(file), `.corrupt-${ref.file}`);
      fs.renameSync(file, aside);
      this.say('warn', 'vnfs.corrupt', { vnfs: ref.vnfs, rev: ref.rev, file: ref.file, reason: problem, keptAs: aside, server: this.deps.serverId }, `${label} on this server ${problem}: refused, moved to ${aside}`);
    }
    const here = problem ? `${label} on this server ${problem}` : `${label} is not on this server`;
    if (opts.fetch === false) return { ok: false, status: 404, reason: `${here} (a request from a peer is never passed on)` };
    if (this.deps.origins.length === 0) return { ok: false, status: 503, reason: `${here} and no images.origins are configured to fetch it from` };
    return this.fetch(ref, label, file, want, here, opts);
  }

  private async fetch(ref: ArtifactRef, label: string, file: string, want: Expected, here: string, opts: EnsureOptions): Promise<EnsureResult> {
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    const tmp = path.join(dir, `.fetch-${ref.file}.${process.pid}.${Math.random().toString(36).slice(2, 8)}`);
    const tried: string[] = [];
    try {
      for (const origin of this.deps.origins) {
        const url = `${origin.replace(/\/+$/, '')}/vnfs/${encodeURIComponent(ref.vnfs)}/r${ref.rev}/${ref.file}`;
        const r = await downloadFrom(url, tmp, want, {
          attempts: this.deps.attempts ?? 3,
          idleTimeoutMs: this.deps.idleTimeoutMs ?? 30_000,
          backoffMs: this.deps.backoffMs,
          headers: { [PEER_HEADER]: this.deps.serverId },
          onProgress: opts.onProgress ? (b) => opts.onProgress!(b, want.size) : undefined,
        });
        if (!r.ok && r.kind === 'local') {
          this.say('warn', 'vnfs.fetch.fail', { vnfs: ref.vnfs, rev: ref.rev, file: ref.file, origin, reason: r.reason, server: this.deps.serverId }, `${label}: ${r.reason}`);
          return { ok: false, status: 503, reason: `${here} and this server cannot store it: ${r.reason} (free space under ${this.deps.vnfsRoot})` };
        }
        if (!r.ok) {
          tried.push(`${origin}: ${r.reason}`);
          if (r.kind === 'mismatch') {
            this.say('warn', 'vnfs.fetch.rejected', { vnfs: ref.vnfs, rev: ref.rev, file: ref.file, origin, reason: r.reason, server: this.deps.serverId }, `${label} from ${origin} rejected: ${r.reason}`);
          }
          continue;
        }
        const fd = fs.openSync(tmp, 'r');
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        fs.renameSync(tmp, file);
        fsyncDir(dir);
        const st = fs.statSync(file);
        writeMarker(file, st, want.sha256);
        this.say('info', 'vnfs.fetch', { vnfs: ref.vnfs, rev: ref.rev, file: ref.file, origin, bytes: r.bytes, ms: r.ms, attempts: r.attempts, sha256: want.sha256, server: this.deps.serverId }, `${label}: fetched ${r.bytes} bytes from ${origin} in ${r.ms} ms, sha256 verified`);
        this.remember(file, st, want, 'fetched');
        return { ok: true, file, how: 'fetched', origin, bytes: r.bytes, ms: r.ms };
      }
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    const reason = `${here} and no origin had it verified: ${tried.join('; ')}`;
    this.say('warn', 'vnfs.fetch.fail', { vnfs: ref.vnfs, rev: ref.rev, file: ref.file, tried, server: this.deps.serverId }, reason);
    return { ok: false, status: 503, reason };
  }

  private remember(file: string, st: fs.Stats, want: Expected, how: 'verified' | 'checked' | 'fetched'): EnsureResult {
    this.verified.set(file, `${want.sha256} ${st.size} ${st.mtimeMs} ${st.ino}`);
    return { ok: true, file, how };
  }

  private say(level: 'info' | 'warn', kind: string, detail: Record<string, unknown>, msg: string): void {
    this.deps.events.record({ kind, detail });
    this.deps.log?.(level, msg);
  }
}

/** TFTP's vnfs/ mount: `rel` is NAME/rREV/FILE; undefined = serve, else why not (the TFTP error message). */
export async function tftpArtifactGuard(artifacts: RevisionArtifacts, rel: string): Promise<string | undefined> {
  const ref = revisionFileOf(rel.split('/'));
  if (!ref) return undefined;
  const r = await artifacts.ensure(ref);
  return r.ok ? undefined : r.reason;
}
