/**
 * The JSON documents of an image — image index / Docker manifest list, image manifest
 * (OCI or Docker v2 schema 2), image config — parsed and checked, and the choice of one
 * platform from an index. Pure.
 */
import { z } from 'zod';
import { ImageError } from '../errors.js';

export const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What a registry is asked for, best first. */
export const MANIFEST_ACCEPT = [MEDIA.ociIndex, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.dockerManifest].join(', ');

/** Layer media types and how their blobs are compressed (extractTar also checks magic bytes). */
const LAYER_TYPES = new Set([
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.diff.tar',
]);

const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256 digest');
const descriptor = z.object({
  mediaType: z.string().optional(),
  digest,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: z.object({ os: z.string(), architecture: z.string(), variant: z.string().optional() }).optional(),
});
export type Descriptor = z.infer<typeof descriptor>;

const indexSchema = z.object({ schemaVersion: z.literal(2), mediaType: z.string().optional(), manifests: z.array(descriptor) });
const manifestSchema = z.object({ schemaVersion: z.literal(2), mediaType: z.string().optional(), config: descriptor, layers: z.array(descriptor) });
const configSchema = z.object({
  architecture: z.string().optional(),
  os: z.string().optional(),
  rootfs: z.object({ type: z.string(), diff_ids: z.array(digest) }).optional(),
});

export type ImageIndex = z.infer<typeof indexSchema>;
export type ImageManifest = z.infer<typeof manifestSchema>;
export type ImageConfig = z.infer<typeof configSchema>;

export type Parsed = { kind: 'index'; index: ImageIndex } | { kind: 'manifest'; manifest: ImageManifest };

function json(body: Buffer, what: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new ImageError(`${what} is not JSON (${(e as Error).message}): the image is corrupt`, what);
  }
}

function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new ImageError(`${what} is malformed: ${issue.path.join('.') || '(top)'}: ${issue.message}`, what);
  }
  return r.data;
}

/** An index or a manifest, told apart by media type (header or field) or by shape. */
export function parseManifestOrIndex(body: Buffer, what: string, contentType?: string): Parsed {
  const v = json(body, what) as { mediaType?: string; schemaVersion?: number; manifests?: unknown };
  const type = v?.mediaType ?? contentType?.split(';')[0].trim();
  if (v?.schemaVersion === 1 || type === MEDIA.dockerSchema1 || type === MEDIA.dockerSchema1Signed) {
    throw new ImageError(`${what} is a Docker schema 1 manifest, which is obsolete and unsupported: push the image again with a current docker or skopeo`, what);
  }
  if (type === MEDIA.ociIndex || type === MEDIA.dockerList || (type === undefined && Array.isArray(v?.manifests))) {
    return { kind: 'index', index: check(indexSchema, v, what) };
  }
  if (type === undefined || type === MEDIA.ociManifest || type === MEDIA.dockerManifest || type === 'application/json') {
    return { kind: 'manifest', manifest: checkLayers(check(manifestSchema, v, what), what) };
  }
  throw new ImageError(`${what} has media type "${type}", which is not an image manifest or index`, what);
}

function checkLayers(m: ImageManifest, what: string): ImageManifest {
  m.layers.forEach((l, i) => {
    const t = l.mediaType ?? 'application/vnd.oci.image.layer.v1.tar+gzip';
    if (!LAYER_TYPES.has(t)) {
      const why = /foreign|nondistributable/.test(t) ? ' (a non-distributable layer, as Windows base images have)' : '';
      throw new ImageError(`${what}: layer ${i + 1} (${l.digest}) has media type "${t}"${why}, which pxeherd cannot apply: use a Linux image`, l.digest);
    }
  });
  return m;
}

export function parseConfig(body: Buffer, what: string): ImageConfig {
  return check(configSchema, json(body, what), what);
}

/** Go's architecture names, as indexes carry them; `arch` may be given in either spelling. */
export function goArch(arch: string): string {
  return ({ x86_64: 'amd64', aarch64: 'arm64', armhf: 'arm', i386: '386', i686: '386', ppc64el: 'ppc64le' } as Record<string, string>)[arch] ?? arch;
}

/** The linux/<arch> entry of an index; an error listing what it holds otherwise. */
export function pickPlatform(index: ImageIndex, arch: string, what: string): Descriptor {
  const want = goArch(arch);
  const images = index.manifests;
  const match = images.filter((m) => m.platform?.os === 'linux' && m.platform.architecture === want);
  // arm64 images are usually variant v8 or unset; prefer no variant / v8, then anything.
  const best = match.find((m) => !m.platform?.variant || m.platform.variant === 'v8') ?? match[0];
  if (best) return best;
  const have = images.map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}` : '(no platform)'));
  throw new ImageError(`${what} has no linux/${want} image (it has ${have.join(', ') || 'none'}): choose another tag or architecture`, what);
}
