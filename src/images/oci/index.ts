/**
 * importOci: fill an empty directory with the root filesystem of a container image from an
 * OCI archive, a docker archive or a registry. Every manifest, config and layer is verified
 * against its digest and every layer fetched before the first is applied; layers then go on
 * in order with whiteouts. On failure the caller discards `dest`.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { dockerArchiveImage, ociArchiveSource, StagedArchive } from './archive.js';
import { applyLayers } from './apply.js';
import { findCredentials } from './auth.js';
import { BlobCache } from './blobs.js';
import { formatImageRef, parseImageRef } from './reference.js';
import { RegistrySource } from './registry.js';
import { resolveImage, type ResolvedImage } from './resolve.js';

export interface ImportOciOptions {
  /** Blobs are kept here by digest, so a second import of the same layers downloads nothing. */
  cacheDir: string;
  progress?(msg: string): void;
  /** Talk plain HTTP to the registry. */
  insecure?: boolean;
  /** Which image of a multi-platform index: amd64 (default) / x86_64, arm64 / aarch64, ... */
  arch?: string;
  /** Where credentials come from (PXEHERD_REGISTRY_USER/PASSWORD, REGISTRY_AUTH_FILE, ...); process.env by default. */
  env?: NodeJS.ProcessEnv;
}

export async function importOci(ref: string, dest: string, opts: ImportOciOptions): Promise<{ source: string; digest: string }> {
  const progress = opts.progress ?? (() => {});
  const parsed = parseImageRef(ref, (f) => fs.existsSync(f), process.cwd());
  const canonical = formatImageRef(parsed);
  const cache = new BlobCache(opts.cacheDir);
  const arch = opts.arch ?? 'amd64';
  await fsp.mkdir(dest, { recursive: true });
  let image: ResolvedImage;
  if (parsed.transport === 'docker') {
    const src = new RegistrySource({
      host: parsed.host,
      repo: parsed.repo,
      reference: parsed.digest ?? parsed.tag!,
      insecure: opts.insecure,
      credentials: findCredentials(parsed.host, opts.env ?? process.env),
      cache,
      progress,
    });
    image = await resolveImage(src, arch, progress);
  } else {
    const staging = path.join(opts.cacheDir, `staging-${process.pid}-${Date.now()}`);
    try {
      progress(`${canonical}: reading the archive`);
      const staged = await StagedArchive.read(parsed.file, staging, progress);
      image =
        parsed.transport === 'oci-archive'
          ? await resolveImage(ociArchiveSource(staged, parsed.tag, cache, canonical), arch, progress)
          : await dockerArchiveImage(staged, parsed.name, cache, canonical, progress);
    } finally {
      await fsp.rm(staging, { recursive: true, force: true });
    }
  }
  await applyLayers(image.layers, dest, canonical, progress);
  progress(`${canonical}: imported ${image.platform} image ${image.digest}`);
  return { source: `oci:${canonical}`, digest: image.digest };
}

export { parseImageRef, formatImageRef } from './reference.js';
export type { ImageRef } from './reference.js';
