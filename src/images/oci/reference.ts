/**
 * Image references as pxeherd accepts them (skopeo's transport syntax):
 *   oci-archive:FILE[:TAG]            an OCI image layout packed in a tar
 *   docker-archive:FILE[:NAME:TAG]    `docker save` / skopeo's docker-archive
 *   docker://HOST[:PORT]/REPO[:TAG|@sha256:HEX]   a registry (OCI distribution API)
 * Pure: the only outside fact, whether a file exists (to tell FILE:TAG from a file with a
 * colon in its name), comes in as a function.
 */
import path from 'node:path';
import { ImageError } from '../errors.js';

export type ImageRef =
  | { transport: 'oci-archive'; file: string; tag?: string }
  | { transport: 'docker-archive'; file: string; name?: string }
  | { transport: 'docker'; host: string; repo: string; tag?: string; digest?: string };

const DOCKER_HUB = 'registry-1.docker.io';
const DIGEST = /^sha256:[0-9a-f]{64}$/;
// The distribution spec's repository name and tag grammars.
const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

const USAGE = 'use oci-archive:FILE[:TAG], docker-archive:FILE or docker://HOST[:PORT]/REPO:TAG';

/** FILE[:SUFFIX]: the longest prefix that is an existing file, else up to the first colon (as skopeo reads it). */
function splitFile(rest: string, exists: (f: string) => boolean): { file: string; suffix?: string } {
  if (exists(rest)) return { file: rest };
  const colons = [...rest.matchAll(/:/g)].map((m) => m.index!).filter((i) => i > 0);
  for (const i of [...colons].reverse()) if (exists(rest.slice(0, i))) return { file: rest.slice(0, i), suffix: rest.slice(i + 1) };
  if (colons.length) return { file: rest.slice(0, colons[0]), suffix: rest.slice(colons[0] + 1) };
  return { file: rest };
}

export function parseImageRef(ref: string, exists: (file: string) => boolean = () => false, cwd = '/'): ImageRef {
  const bad = (why: string) => new ImageError(`image reference "${ref}": ${why}: ${USAGE}`, ref);
  const colon = ref.indexOf(':');
  if (colon < 0) throw bad('no transport');
  const transport = ref.slice(0, colon);
  const rest = ref.slice(colon + 1);
  if (transport === 'oci-archive' || transport === 'docker-archive') {
    if (!rest) throw bad('no file');
    const { file, suffix } = splitFile(rest, exists);
    const abs = path.resolve(cwd, file);
    if (transport === 'oci-archive') {
      if (suffix !== undefined && !TAG.test(suffix)) throw bad(`"${suffix}" is not a tag`);
      return { transport, file: abs, tag: suffix };
    }
    return { transport, file: abs, name: suffix || undefined };
  }
  if (transport === 'docker') {
    if (!rest.startsWith('//')) throw bad('docker references start with docker://');
    let name = rest.slice(2);
    let digest: string | undefined;
    let tag: string | undefined;
    const at = name.indexOf('@');
    if (at >= 0) {
      digest = name.slice(at + 1);
      name = name.slice(0, at);
      if (!DIGEST.test(digest)) throw bad(`"${digest}" is not a sha256 digest`);
    }
    const lastSlash = name.lastIndexOf('/');
    const tagColon = name.indexOf(':', lastSlash + 1);
    if (tagColon >= 0) {
      tag = name.slice(tagColon + 1);
      name = name.slice(0, tagColon);
      if (!TAG.test(tag)) throw bad(`"${tag}" is not a tag`);
    }
    const parts = name.split('/');
    let host = DOCKER_HUB;
    // Docker's rule: the first component is a registry host when it has a dot, a port or is localhost.
    if (parts.length > 1 && (/[.:]/.test(parts[0]) || parts[0] === 'localhost')) host = parts.shift()!;
    else if (parts.length === 1) parts.unshift('library');
    if (!/^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9a-fA-F:]+\](:[0-9]{1,5})?$/.test(host)) throw bad(`"${host}" is not a registry host`);
    for (const p of parts) if (!REPO_COMPONENT.test(p)) throw bad(`"${p}" is not a valid repository name component (lower case letters, digits, . _ -)`);
    if (!tag && !digest) tag = 'latest';
    return { transport, host, repo: parts.join('/'), tag, digest };
  }
  throw bad(`unknown transport "${transport}"`);
}

/** The reference written back, canonical (absolute file, explicit host and tag). */
export function formatImageRef(r: ImageRef): string {
  switch (r.transport) {
    case 'oci-archive':
      return `oci-archive:${r.file}${r.tag ? `:${r.tag}` : ''}`;
    case 'docker-archive':
      return `docker-archive:${r.file}${r.name ? `:${r.name}` : ''}`;
    case 'docker':
      return `docker://${r.host}/${r.repo}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
  }
}
