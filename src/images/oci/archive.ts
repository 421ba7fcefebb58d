/**
 * The two archive transports: `oci-archive` (an OCI image layout in a tar: oci-layout,
 * index.json, blobs/sha256/*) and `docker-archive` (`docker save`: manifest.json, a config
 * JSON, one tar per layer, older ones as <id>/layer.tar, often symlinks).
 *
 * The outer tar is read once with TarReader; members are written to a staging directory in
 * the cache (by number, never by their names, so a hostile member name reaches nothing) and
 * hashed on the way. A blob moves into the cache only when its hash matches its digest.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { ImageError } from '../errors.js';
import { sniffCompression, uncompressed } from '../tar.js';
import { TarReader } from '../tarformat.js';
import type { BlobCache } from './blobs.js';
import type { Descriptor } from './manifest.js';
import { parseConfig } from './manifest.js';
import { formatBytes, type BlobSource, type ResolvedImage } from './resolve.js';

interface Member {
  file: string;
  sha256: string;
  size: number;
}

/** The members of an archive, staged on disk: regular files by name, links resolved on lookup. */
export class StagedArchive {
  private files = new Map<string, Member>();
  private links = new Map<string, string>();

  private constructor(
    readonly label: string,
    readonly dir: string,
  ) {}

  static async read(file: string, stagingDir: string, progress: (msg: string) => void): Promise<StagedArchive> {
    const staged = new StagedArchive(file, stagingDir);
    await fsp.mkdir(stagingDir, { recursive: true });
    const reader = new TarReader();
    let out: fs.WriteStream | undefined;
    let hash: ReturnType<typeof createHash> | undefined;
    let n = 0;
    let bytes = 0;
    let last = Date.now();
    const compression = await sniffCompression(file);
    try {
      for await (const chunk of uncompressed(file, compression, file)) {
        for (const ev of reader.push(chunk)) {
          const h = ev.header;
          const name = memberName(h.name);
          if (ev.type === 'entry') {
            if (h.kind === 'file') {
              const f = path.join(stagingDir, String(n++));
              out = fs.createWriteStream(f, { mode: 0o644 });
              hash = createHash('sha256');
              staged.files.set(name, { file: f, sha256: '', size: h.size });
              staged.links.delete(name);
            } else if (h.kind === 'symlink') {
              staged.links.set(name, memberName(path.posix.join(path.posix.dirname(name), h.linkname)));
            } else if (h.kind === 'hardlink') {
              staged.links.set(name, memberName(h.linkname));
            }
          } else if (ev.type === 'data' && out) {
            hash!.update(ev.chunk);
            bytes += ev.chunk.length;
            if (!out.write(ev.chunk)) await new Promise<void>((r) => out!.once('drain', () => r()));
            if (Date.now() - last > 2000) {
              last = Date.now();
              progress(`${file}: read ${formatBytes(bytes)}`);
            }
          } else if (ev.type === 'entryEnd' && out) {
            const o = out;
            await new Promise<void>((resolve, reject) => o.end((e?: Error | null) => (e ? reject(e) : resolve())));
            staged.files.get(name)!.sha256 = `sha256:${hash!.digest('hex')}`;
            out = undefined;
          }
        }
      }
      reader.end();
    } catch (e) {
      out?.destroy();
      if (e instanceof ImageError) throw new ImageError(`image archive ${file}: ${e.message}`, e.entry);
      throw e;
    }
    return staged;
  }

  /** A member by name, following symlinks and hard links inside the archive. */
  get(name: string): Member | undefined {
    let n = memberName(name);
    for (let hops = 0; hops < 16; hops++) {
      const f = this.files.get(n);
      if (f) return f;
      const next = this.links.get(n);
      if (next === undefined) return undefined;
      n = next;
    }
    return undefined;
  }

  async json(name: string): Promise<unknown> {
    const m = this.get(name);
    if (!m) throw new ImageError(`image archive ${this.label} has no ${name}: is it an ${name === 'manifest.json' ? 'docker-archive' : 'oci-archive'}?`, name);
    if (m.size > 4 << 20) throw new ImageError(`image archive ${this.label}: ${name} is ${m.size} bytes, too large`, name);
    try {
      return JSON.parse(await fsp.readFile(m.file, 'utf8'));
    } catch (e) {
      throw new ImageError(`image archive ${this.label}: ${name} is not JSON (${(e as Error).message})`, name);
    }
  }
}

/** Move a staged member into the cache (checking its digest); later lookups find it there. */
async function moveToCache(cache: BlobCache, m: Member, digest: string, what: string): Promise<string> {
  m.file = await cache.put(digest, { file: m.file, sha256: m.sha256 }, what);
  return m.file;
}

function memberName(name: string): string {
  return path.posix.normalize(`/${name}`).slice(1).replace(/\/$/, '');
}

/** An OCI image layout from a tar, as a BlobSource: the manifest named by `tag`, or the only one. */
export function ociArchiveSource(staged: StagedArchive, tag: string | undefined, cache: BlobCache, name: string): BlobSource {
  const fromArchive = async (d: Descriptor, what: string): Promise<string> => {
    const m = staged.get(`blobs/sha256/${d.digest.slice('sha256:'.length)}`);
    if (!m) {
      const cached = await cache.verified(d.digest);
      if (cached) return cached;
      throw new ImageError(`${what} (${d.digest}) is missing from ${name}: the archive is incomplete`, what);
    }
    return moveToCache(cache, m, d.digest, `${what} of ${name}`);
  };
  return {
    name,
    async root() {
      const index = (await staged.json('index.json')) as { manifests?: Descriptor[] };
      const all = Array.isArray(index?.manifests) ? index.manifests : [];
      const tagOf = (d: Descriptor) => d.annotations?.['org.opencontainers.image.ref.name'];
      const chosen = tag ? all.filter((d) => tagOf(d) === tag) : all;
      if (chosen.length !== 1) {
        const tags = all.map((d) => tagOf(d) ?? d.digest).join(', ') || 'none';
        throw new ImageError(
          tag ? `${name} has no image tagged "${tag}" (it has: ${tags})` : `${name} holds ${all.length} images (${tags}): add :TAG to the reference`,
          name,
        );
      }
      const d = chosen[0];
      const file = await fromArchive(d, 'the manifest');
      return { body: await fsp.readFile(file), digest: d.digest, contentType: d.mediaType };
    },
    async manifest(d, what) {
      return fsp.readFile(await fromArchive(d, what));
    },
    blob: fromArchive,
  };
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/**
 * A docker-archive's image: the entry of manifest.json named by `want` (a RepoTag) or the only
 * one. Layers are verified against the config's diff_ids (the sha256 of each uncompressed
 * layer); the config's own sha256 is the image ID, returned as the digest.
 */
export async function dockerArchiveImage(staged: StagedArchive, want: string | undefined, cache: BlobCache, name: string, progress: (msg: string) => void): Promise<ResolvedImage> {
  const list = (await staged.json('manifest.json')) as DockerManifestEntry[];
  if (!Array.isArray(list) || list.length === 0) throw new ImageError(`${name}: manifest.json lists no image`, 'manifest.json');
  const matches = (e: DockerManifestEntry, t: string) => (e.RepoTags ?? []).some((r) => r === t || r === `docker.io/${t}` || r === `docker.io/library/${t}`);
  const chosen = want ? list.filter((e) => matches(e, want)) : list;
  if (chosen.length !== 1) {
    const tags = list.flatMap((e) => e.RepoTags ?? ['(untagged)']).join(', ');
    throw new ImageError(want ? `${name} has no image "${want}" (it has: ${tags})` : `${name} holds ${list.length} images (${tags}): add :NAME:TAG to the reference`, name);
  }
  const entry = chosen[0];
  if (typeof entry.Config !== 'string' || !Array.isArray(entry.Layers)) throw new ImageError(`${name}: manifest.json is malformed (Config, Layers)`, 'manifest.json');
  const configMember = staged.get(entry.Config);
  if (!configMember) throw new ImageError(`${name}: the config ${entry.Config} named by manifest.json is missing`, entry.Config);
  const digest = configMember.sha256;
  const config = parseConfig(await fsp.readFile(configMember.file), `the config of ${name}`);
  if (config.os && config.os !== 'linux') throw new ImageError(`${name} is a ${config.os} image: pxeherd boots Linux images only`, name);
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== entry.Layers.length) {
    throw new ImageError(`${name}: the config lists ${diffIds.length} layer digests but manifest.json has ${entry.Layers.length} layers: the archive is corrupt`, entry.Config);
  }
  const platform = `${config.os ?? 'linux'}/${config.architecture ?? '?'}`;
  progress(`${name}: ${platform}, ${entry.Layers.length} layer${entry.Layers.length === 1 ? '' : 's'}, image ${digest}`);
  const layers = [];
  for (const [i, layerName] of entry.Layers.entries()) {
    const what = `layer ${i + 1}/${entry.Layers.length} (${layerName})`;
    const m = staged.get(layerName);
    if (!m) throw new ImageError(`${what} is missing from ${name}: the archive is incomplete`, layerName);
    // docker save stores layers uncompressed, so their sha256 is the diff_id; a compressed one
    // is checked by the sha256 of its uncompressed stream.
    let uncompressedSha = m.sha256;
    const compression = await sniffCompression(m.file);
    if (compression !== 'none') {
      const h = createHash('sha256');
      for await (const c of uncompressed(m.file, compression, what)) h.update(c);
      uncompressedSha = `sha256:${h.digest('hex')}`;
    }
    if (uncompressedSha !== diffIds[i]) {
      throw new ImageError(`${what} of ${name}: content has digest ${uncompressedSha}, not ${diffIds[i]} as the image config says: the layer was altered or damaged; nothing was applied`, layerName);
    }
    const p = await moveToCache(cache, m, m.sha256, `${what} of ${name}`);
    progress(`${what}: ${formatBytes(m.size)}, sha256 verified`);
    layers.push({ digest: m.sha256, path: p, what });
  }
  return { digest, platform, layers };
}
