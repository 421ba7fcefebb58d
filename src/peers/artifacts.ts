import fs from 'node:fs';
import path from 'node:path';
import type { EventSink } from '../nodes/types.js';
import { ARTIFACTS, parseManifest, type ArtifactName, type ImageManifest } from '../images/manifest.js';
import { nameError } from '../nodes/names.js';
import { fsyncDir } from '../images/revisions.js';
import { downloadFrom, type DownloadOptions } from './download.js';
import { markerHolds, readMarker, sha256File, short, writeMarker, type Expected } from './verify.js';
import type { VnfsFileRecord } from '../store/groups.js';

/**
 * A VNFS's files on this server's disk, as the database defines them (issue 19: each server
 * keeps its own VNFS bytes, content-addressed by a sha256 the database holds): a revision's
 * artifacts (vnfs/<name>/r<rev>/<file>, against its manifest) and the kernel and initrd of a
 * kernel+initrd VNFS (vnfs/<name>/<file>, against the hashes `vnfs add` recorded, migration
 * 12). Nothing is served before it is verified: a local file is hashed once (then a marker
 * vouches for it while its size, mtime and inode stay the same), a missing or corrupt one is
 * fetched from the configured origins (other pxeherd servers, or any HTTP server with the same
 * /vnfs/ layout), checked, and renamed into place. Concurrent requests for one file share one
 * check or fetch. A kernel+initrd VNFS added before migration 12 has no hash: the server
 * holding its files hashes them when first asked and records the hash (trust on first use);
 * a server lacking them refuses, never fetching bytes it could not verify.
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

/** A file of a kernel+initrd VNFS: vnfs/<name>/<file> (which files the database vouches for, it says). */
export interface VnfsFileRef {
  vnfs: string;
  rev?: undefined;
  file: string;
}

export type VnfsRef = ArtifactRef | VnfsFileRef;

/** Pure: a revision artifact, or NAME/FILE (perhaps a kernel+initrd VNFS's file: the database says), or undefined. */
export function vnfsRefOf(segments: string[]): VnfsRef | undefined {
  const r = revisionFileOf(segments);
  if (r) return r;
  if (segments.length !== 2 || nameError('vnfs', segments[0]!) || !/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/.test(segments[1]!)) return undefined;
  return { vnfs: segments[0]!, file: segments[1]! };
}

export type EnsureResult =
  /** recorded: a file without a recorded hash, hashed here and recorded; unmanaged: not a file the database vouches for (served as it is). */
  | { ok: true; file: string; how: 'verified' | 'checked' | 'fetched' | 'written' | 'recorded' | 'unmanaged'; origin?: string; bytes?: number; ms?: number }
  | { ok: false; status: number; reason: string };

/** One file to make present and verified, whichever kind. */
interface Target {
  /** For messages: "img r3/initrd.img", "plain/vmlinuz". */
  label: string;
  /** Where it is on this disk. */
  file: string;
  /** Its path on an origin (/vnfs/...). */
  urlPath: string;
  want: Expected;
  /** Whose sha256 it is, for messages: "the manifest", "the database". */
  says: string;
  /** Event details naming it. */
  detail: { vnfs: string; rev?: number; file: string };
}

export interface RevisionArtifactsDeps {
  /** <statedir>/vnfs */
  vnfsRoot: string;
  /** The manifest text the database holds for a revision (undefined: no such revision). */
  manifestOf(vnfs: string, rev: number): string | undefined;
  /** NAME/FILE as the kernel or initrd of a kernel+initrd VNFS, with its recorded hash (absent: every such file is served as it is). */
  vnfsFileOf?(vnfs: string, file: string): VnfsFileRecord | undefined;
  /** Record the hash of such a file that has none (only while it still has none): true when recorded. */
  recordVnfsFile?(vnfs: string, file: string, hash: Expected): boolean;
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
  ensure(ref: VnfsRef, opts: EnsureOptions = {}): Promise<EnsureResult> {
    if (ref.rev === undefined) return this.ensureVnfsFile(ref, opts);
    const label = `${ref.vnfs} r${ref.rev}/${ref.file}`;
    if (ref.file === 'manifest.json') return Promise.resolve(this.ensureManifest(ref, label));
    const m = this.manifest(ref.vnfs, ref.rev);
    if (!m) return Promise.resolve({ ok: false, status: 404, reason: `VNFS "${ref.vnfs}" has no revision ${ref.rev} in the database` });
    const want = m.artifacts[ref.file as ArtifactName];
    if (!want) return Promise.resolve({ ok: false, status: 404, reason: `revision ${ref.rev} of VNFS "${ref.vnfs}" has no ${ref.file}` });
    const file = path.join(this.dir(ref), ref.file);
    return this.ensureTarget({ label, file, urlPath: `/vnfs/${encodeURIComponent(ref.vnfs)}/r${ref.rev}/${ref.file}`, want, says: 'the manifest', detail: { vnfs: ref.vnfs, rev: ref.rev, file: ref.file } }, opts);
  }

  /**
   * Whether NAME/FILE can be served at once, as it is on disk (`st`: its stat), without a
   * check: 'other' when it is not a file the database vouches for, its role when this process
   * verified it with exactly this stat (the caller names its event from that: no second
   * look-up), false when it needs `ensure` first. The HTTP fast path asks.
   */
  servableNow(ref: VnfsFileRef, st: fs.Stats): 'kernel' | 'initrd' | 'other' | false {
    const rec = this.deps.vnfsFileOf?.(ref.vnfs, ref.file);
    if (!rec) return 'other';
    const file = path.join(this.deps.vnfsRoot, ref.vnfs, ref.file);
    return !!rec.hash && this.verifiedAs(file, st, rec.hash.sha256) && rec.role;
  }

  private ensureVnfsFile(ref: VnfsFileRef, opts: EnsureOptions, again = false): Promise<EnsureResult> {
    const file = path.join(this.deps.vnfsRoot, ref.vnfs, ref.file);
    const rec = this.deps.vnfsFileOf?.(ref.vnfs, ref.file);
    if (!rec) return Promise.resolve({ ok: true, file, how: 'unmanaged' });
    const label = `${ref.vnfs}/${ref.file}`;
    if (rec.hash) return this.ensureTarget({ label, file, urlPath: `/vnfs/${encodeURIComponent(ref.vnfs)}/${encodeURIComponent(ref.file)}`, want: rec.hash, says: 'the database', detail: { vnfs: ref.vnfs, file: ref.file } }, opts);
    if (again) return Promise.resolve({ ok: false, status: 503, reason: `${label}: its sha256 could not be recorded in the database` });
    return this.shared(`${file}\0record`, () => this.recordHash(ref, label, file, opts));
  }

  /**
   * A kernel+initrd VNFS file the database has no hash for (added before migration 12): the
   * server holding it hashes it and records the hash, then serves it; one lacking it has
   * nothing to verify bytes from an origin against, so it refuses.
   */
  private async recordHash(ref: VnfsFileRef, label: string, file: string, opts: EnsureOptions): Promise<EnsureResult> {
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (!st?.isFile()) {
      const reason = `${label} is not on this server and the database records no sha256 for it (VNFS added before pxeherd recorded them), so no copy from an origin can be verified: run \`pxeherd vnfs sync ${ref.vnfs}\` on the server holding its files (it records the hash), or \`pxeherd vnfs add\` it again`;
      this.say('warn', 'vnfs.unverified', { vnfs: ref.vnfs, file: ref.file, reason, server: this.deps.serverId }, reason);
      return { ok: false, status: 503, reason };
    }
    const sha256 = await sha256File(file);
    const now = fs.statSync(file, { throwIfNoEntry: false });
    if (!now || now.mtimeMs !== st.mtimeMs || now.size !== st.size || now.ino !== st.ino) return { ok: false, status: 503, reason: `${label} changed while it was being hashed: ask again` };
    const hash = { sha256, size: st.size };
    if (!this.deps.recordVnfsFile?.(ref.vnfs, ref.file, hash)) {
      // Recorded meanwhile (a `vnfs add`, another request): verify against what the database says now.
      return this.ensureVnfsFile(ref, opts, true);
    }
    writeMarker(file, st, sha256);
    this.say('info', 'vnfs.record', { vnfs: ref.vnfs, file: ref.file, sha256, bytes: st.size, server: this.deps.serverId }, `${label}: no sha256 was recorded for it: hashed here (${short(sha256)}…) and recorded in the database`);
    this.remember(file, st, hash, 'checked');
    return { ok: true, file, how: 'recorded' };
  }

  private ensureTarget(t: Target, opts: EnsureOptions): Promise<EnsureResult> {
    // The common case, without a promise chain: this process verified exactly this file.
    const st = fs.statSync(t.file, { throwIfNoEntry: false });
    if (st && this.verifiedAs(t.file, st, t.want.sha256)) return Promise.resolve({ ok: true, file: t.file, how: 'verified' });
    return this.shared(`${t.file}\0${t.want.sha256}\0${opts.fetch === false ? 'local' : 'fetch'}`, () => this.settle(t, opts));
  }

  /** One check or fetch per key at a time: concurrent requests share it. */
  private shared(key: string, run: () => Promise<EnsureResult>): Promise<EnsureResult> {
    let p = this.inflight.get(key);
    if (!p) {
      p = run().finally(() => this.inflight.delete(key));
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

  private async settle(t: Target, opts: EnsureOptions): Promise<EnsureResult> {
    const { label, file, want } = t;
    let problem = '';
    const st = fs.statSync(file, { throwIfNoEntry: false });
    if (st?.isFile()) {
      if (markerHolds(readMarker(file), st, want)) return this.remember(file, st, want, 'verified');
      const got = st.size === want.size ? await sha256File(file) : '';
      const now = fs.statSync(file, { throwIfNoEntry: false });
      if (got === want.sha256 && now && now.mtimeMs === st.mtimeMs && now.size === st.size && now.ino === st.ino) {
        writeMarker(file, st, want.sha256);
        this.deps.events.record({ kind: 'vnfs.verify', detail: { ...t.detail, sha256: want.sha256, bytes: st.size, server: this.deps.serverId } });
        return this.remember(file, st, want, 'checked');
      }
      problem = st.size !== want.size ? `is ${st.size} bytes, ${t.says} says ${want.size}` : `has sha256 ${short(got)}…, ${t.says} says ${short(want.sha256)}…`;
      // Kept aside for a look, out of the served name (dotfiles are never served).
      const aside = path.join(path.dirname(file), `.corrupt-${path.basename(file)}`);
      fs.renameSync(file, aside);
      this.say('warn', 'vnfs.corrupt', { ...t.detail, reason: problem, keptAs: aside, server: this.deps.serverId }, `${label} on this server ${problem}: refused, moved to ${aside}`);
    }
    const here = problem ? `${label} on this server ${problem}` : `${label} is not on this server`;
    if (opts.fetch === false) return { ok: false, status: 404, reason: `${here} (a request from a peer is never passed on)` };
    if (this.deps.origins.length === 0) return { ok: false, status: 503, reason: `${here} and no images.origins are configured to fetch it from` };
    return this.fetch(t, here, opts);
  }

  private async fetch(t: Target, here: string, opts: EnsureOptions): Promise<EnsureResult> {
    const { label, file, want } = t;
    const dir = path.dirname(file);
    fs.mkdirSync(dir, { recursive: true });
    const tmp = path.join(dir, `.fetch-${path.basename(file)}.${process.pid}.${Math.random().toString(36).slice(2, 8)}`);
    const tried: string[] = [];
    try {
      for (const origin of this.deps.origins) {
        const url = `${origin.replace(/\/+$/, '')}${t.urlPath}`;
        const r = await downloadFrom(url, tmp, want, {
          attempts: this.deps.attempts ?? 3,
          idleTimeoutMs: this.deps.idleTimeoutMs ?? 30_000,
          backoffMs: this.deps.backoffMs,
          headers: { [PEER_HEADER]: this.deps.serverId },
          onProgress: opts.onProgress ? (b) => opts.onProgress!(b, want.size) : undefined,
        });
        if (!r.ok && r.kind === 'local') {
          this.say('warn', 'vnfs.fetch.fail', { ...t.detail, origin, reason: r.reason, server: this.deps.serverId }, `${label}: ${r.reason}`);
          return { ok: false, status: 503, reason: `${here} and this server cannot store it: ${r.reason} (free space under ${this.deps.vnfsRoot})` };
        }
        if (!r.ok) {
          tried.push(`${origin}: ${r.reason}`);
          if (r.kind === 'mismatch') {
            this.say('warn', 'vnfs.fetch.rejected', { ...t.detail, origin, reason: r.reason, server: this.deps.serverId }, `${label} from ${origin} rejected: ${r.reason}`);
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
        this.say('info', 'vnfs.fetch', { ...t.detail, origin, bytes: r.bytes, ms: r.ms, attempts: r.attempts, sha256: want.sha256, server: this.deps.serverId }, `${label}: fetched ${r.bytes} bytes from ${origin} in ${r.ms} ms, sha256 verified`);
        this.remember(file, st, want, 'fetched');
        return { ok: true, file, how: 'fetched', origin, bytes: r.bytes, ms: r.ms };
      }
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    const reason = `${here} and no origin had it verified: ${tried.join('; ')}`;
    this.say('warn', 'vnfs.fetch.fail', { ...t.detail, tried, server: this.deps.serverId }, reason);
    return { ok: false, status: 503, reason };
  }

  private remember(file: string, st: fs.Stats, want: Expected, how: 'verified' | 'checked' | 'fetched'): EnsureResult {
    this.verified.set(file, verifiedKey(want.sha256, st));
    return { ok: true, file, how };
  }

  /** This process verified exactly this file (same sha256, and the same size, mtime and inode since). */
  private verifiedAs(file: string, st: fs.Stats, sha256: string): boolean {
    return this.verified.get(file) === verifiedKey(sha256, st);
  }

  private say(level: 'info' | 'warn', kind: string, detail: Record<string, unknown>, msg: string): void {
    this.deps.events.record({ kind, detail });
    this.deps.log?.(level, msg);
  }
}

/** Pure: what RevisionArtifacts remembers of a file it verified. */
function verifiedKey(sha256: string, st: fs.Stats): string {
  return `${sha256} ${st.size} ${st.mtimeMs} ${st.ino}`;
}

/** TFTP's vnfs/ mount: `rel` is NAME/rREV/FILE or NAME/FILE; undefined = serve, else why not (the TFTP error message). */
export async function tftpArtifactGuard(artifacts: RevisionArtifacts, rel: string): Promise<string | undefined> {
  const ref = vnfsRefOf(rel.split('/'));
  if (!ref) return undefined;
  const r = await artifacts.ensure(ref);
  return r.ok ? undefined : r.reason;
}
