/**
 * From a reference's top manifest (or index) to the layers to apply, every document and
 * blob fetched through a `BlobSource` (a registry or an OCI archive) and verified against
 * its digest before it is read. All layers are fetched and verified before any is applied.
 */
import fsp from 'node:fs/promises';
import { ImageError } from '../errors.js';
import { parseConfig, parseManifestOrIndex, pickPlatform, type Descriptor } from './manifest.js';

export interface Layer {
  /** The blob's digest (compressed, as the manifest lists it). */
  digest: string;
  /** The verified blob in the cache. */
  path: string;
  /** sha256 of the uncompressed tar, from the image config, checked after extraction. */
  diffId?: string;
  /** "layer 2/3 (sha256:...)", for messages. */
  what: string;
}

export interface ResolvedImage {
  /** The digest of what the reference named: the manifest or index (registry, OCI), or the config (docker-archive). */
  digest: string;
  platform: string;
  layers: Layer[];
}

export interface BlobSource {
  /** For messages: "docker://host/repo:tag". */
  name: string;
  /** The manifest or index the reference names, verified when the reference pins a digest. */
  root(): Promise<{ body: Buffer; digest: string; contentType?: string }>;
  /** A manifest an index points at, by digest, its sha256 verified. */
  manifest(d: Descriptor, what: string): Promise<Buffer>;
  /** Blob `d` in the cache, its sha256 verified; `what` names it in errors and progress. */
  blob(d: Descriptor, what: string): Promise<string>;
}

const MAX_DOC = 4 << 20;

async function document(src: BlobSource, d: Descriptor, what: string): Promise<Buffer> {
  if (d.size > MAX_DOC) throw new ImageError(`${what} of ${src.name} claims ${d.size} bytes, too large for a JSON document: the image is corrupt`, d.digest);
  return fsp.readFile(await src.blob(d, what));
}

export async function resolveImage(src: BlobSource, arch: string, progress: (msg: string) => void): Promise<ResolvedImage> {
  const root = await src.root();
  let parsed = parseManifestOrIndex(root.body, `the manifest of ${src.name}`, root.contentType);
  if (parsed.kind === 'index') {
    const pick = pickPlatform(parsed.index, arch, `the image index of ${src.name}`);
    progress(`${src.name}: image index ${root.digest}, using ${pick.platform ? `${pick.platform.os}/${pick.platform.architecture}` : 'its only image'} manifest ${pick.digest}`);
    if (pick.size > MAX_DOC) throw new ImageError(`manifest ${pick.digest} of ${src.name} claims ${pick.size} bytes: the image is corrupt`, pick.digest);
    const body = await src.manifest(pick, `the ${arch} manifest ${pick.digest}`);
    parsed = parseManifestOrIndex(body, `manifest ${pick.digest} of ${src.name}`, pick.mediaType);
    if (parsed.kind === 'index') throw new ImageError(`${src.name}: an image index inside an image index is not supported`, pick.digest);
  }
  const m = parsed.manifest;
  const config = parseConfig(await document(src, m.config, 'the image config'), `the config of ${src.name}`);
  if (config.os && config.os !== 'linux') throw new ImageError(`${src.name} is a ${config.os} image: pxeherd boots Linux images only`, src.name);
  const diffIds = config.rootfs?.diff_ids;
  if (diffIds && diffIds.length !== m.layers.length) {
    throw new ImageError(`${src.name}: the config lists ${diffIds.length} layer digests but the manifest has ${m.layers.length} layers: the image is corrupt`, m.config.digest);
  }
  const total = m.layers.reduce((n, l) => n + l.size, 0);
  const platform = `${config.os ?? 'linux'}/${config.architecture ?? '?'}`;
  progress(`${src.name}: ${platform}, ${m.layers.length} layer${m.layers.length === 1 ? '' : 's'}, ${formatBytes(total)}`);
  const layers: Layer[] = [];
  for (const [i, l] of m.layers.entries()) {
    const what = `layer ${i + 1}/${m.layers.length} (${l.digest})`;
    layers.push({ digest: l.digest, path: await src.blob(l, what), diffId: diffIds?.[i], what });
  }
  return { digest: root.digest, platform, layers };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}
