/**
 * A client of the OCI distribution API (Docker registry v2), read side: manifests and blobs
 * of one repository, with the 401 → Basic or Bearer-token dance. HTTPS unless `insecure`
 * (plain HTTP, as for a registry on a lab network).
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ImageError } from '../errors.js';
import { basicAuth, causeOf, fetchToken, parseChallenge, type Credentials } from './auth.js';
import type { BlobCache } from './blobs.js';
import { sha256 } from './blobs.js';
import { MANIFEST_ACCEPT, type Descriptor } from './manifest.js';
import { formatBytes, type BlobSource } from './resolve.js';

export interface RegistryOptions {
  host: string;
  repo: string;
  /** A tag or a digest. */
  reference: string;
  insecure?: boolean;
  credentials?: Credentials;
  cache: BlobCache;
  progress: (msg: string) => void;
  fetch?: typeof fetch;
}

export class RegistrySource implements BlobSource {
  readonly name: string;
  private readonly base: string;
  private readonly fetchFn: typeof fetch;
  private authorization: string | undefined;

  constructor(private readonly o: RegistryOptions) {
    this.base = `${o.insecure ? 'http' : 'https'}://${o.host}`;
    this.fetchFn = o.fetch ?? fetch;
    const sep = o.reference.startsWith('sha256:') ? '@' : ':';
    this.name = `docker://${o.host}/${o.repo}${sep}${o.reference}`;
  }

  async root(): Promise<{ body: Buffer; digest: string; contentType?: string }> {
    const res = await this.get(`/v2/${this.o.repo}/manifests/${this.o.reference}`, MANIFEST_ACCEPT, 'the manifest');
    const body = await readLimited(res, 4 << 20, `the manifest of ${this.name}`);
    const digest = sha256(body);
    if (this.o.reference.startsWith('sha256:') && digest !== this.o.reference) {
      throw new ImageError(`the manifest of ${this.name} has digest ${digest}, not the one asked for: the registry served altered content`, this.name);
    }
    const claimed = res.headers.get('docker-content-digest');
    if (claimed && claimed.startsWith('sha256:') && claimed !== digest) {
      throw new ImageError(`the manifest of ${this.name} has digest ${digest} but the registry says ${claimed}: it was altered or damaged in transit`, this.name);
    }
    return { body, digest, contentType: res.headers.get('content-type') ?? undefined };
  }

  async manifest(d: Descriptor, what: string): Promise<Buffer> {
    const res = await this.get(`/v2/${this.o.repo}/manifests/${d.digest}`, MANIFEST_ACCEPT, what);
    const body = await readLimited(res, 4 << 20, `${what} of ${this.name}`);
    const got = sha256(body);
    if (got !== d.digest) throw new ImageError(`${what} of ${this.name} has digest ${got}, not ${d.digest}: the registry served altered content`, d.digest);
    return body;
  }

  async blob(d: Descriptor, what: string): Promise<string> {
    const cached = await this.o.cache.verified(d.digest);
    if (cached) {
      this.o.progress(`${what}: cached, ${formatBytes(d.size)}`);
      return cached;
    }
    const res = await this.get(`/v2/${this.o.repo}/blobs/${d.digest}`, '*/*', what);
    if (!res.body) throw new ImageError(`${what}: the registry sent no content`, what);
    let last = Date.now();
    const p = await this.o.cache.put(d.digest, Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), `${what} of ${this.name}`, (n) => {
      if (Date.now() - last >= 2000) {
        last = Date.now();
        this.o.progress(`${what}: ${formatBytes(n)} of ${formatBytes(d.size)}`);
      }
    });
    this.o.progress(`${what}: downloaded ${formatBytes(d.size)}, sha256 verified`);
    return p;
  }

  /** GET with the registry's authentication; one retry after a 401 challenge. */
  private async get(pathname: string, accept: string, what: string): Promise<Response> {
    let res = await this.send(pathname, accept);
    if (res.status === 401) {
      await res.body?.cancel();
      await this.authenticate(res.headers.get('www-authenticate'));
      res = await this.send(pathname, accept);
      if (res.status === 401) {
        await res.body?.cancel();
        throw new ImageError(`registry ${this.o.host} refused access to ${this.o.repo} even after authenticating: check the credentials and that they may pull it`, this.name);
      }
    }
    if (res.status === 404) {
      await res.body?.cancel();
      throw new ImageError(`${what} of ${this.name} is not on the registry (HTTP 404): check the repository and tag`, this.name);
    }
    if (!res.ok) {
      const text = (await res.text().catch(() => '')).slice(0, 300);
      throw new ImageError(`registry ${this.o.host} answered HTTP ${res.status} for ${what} of ${this.name}: ${text}`, this.name);
    }
    return res;
  }

  private async send(pathname: string, accept: string): Promise<Response> {
    const headers: Record<string, string> = { accept };
    if (this.authorization) headers.authorization = this.authorization;
    try {
      return await this.fetchFn(this.base + pathname, { headers, redirect: 'follow' });
    } catch (e) {
      const cause = causeOf(e);
      const hint = this.o.insecure ? '' : ' (a registry without TLS needs the insecure option)';
      throw new ImageError(`cannot reach registry ${this.o.host} at ${this.base}: ${cause}${hint}`, this.name);
    }
  }

  private async authenticate(header: string | null): Promise<void> {
    const challenge = header ? parseChallenge(header) : undefined;
    const creds = this.o.credentials;
    if (challenge?.scheme === 'bearer') {
      this.authorization = `Bearer ${await fetchToken(challenge, this.o.repo, this.o.host, creds, this.fetchFn)}`;
      return;
    }
    if (challenge?.scheme === 'basic' || !challenge) {
      if (!creds) {
        throw new ImageError(`registry ${this.o.host} needs credentials: set PXEHERD_REGISTRY_USER and PXEHERD_REGISTRY_PASSWORD, or log in with skopeo login (REGISTRY_AUTH_FILE)`, this.name);
      }
      if (this.authorization) throw new ImageError(`registry ${this.o.host} refused the credentials of "${creds.username}"`, this.name);
      this.authorization = basicAuth(creds);
      return;
    }
    throw new ImageError(`registry ${this.o.host} asks for "${challenge.scheme}" authentication, which pxeherd does not speak (Basic and Bearer tokens only)`, this.name);
  }
}

async function readLimited(res: Response, limit: number, what: string): Promise<Buffer> {
  const len = Number(res.headers.get('content-length') ?? 0);
  if (len > limit) throw new ImageError(`${what} is ${len} bytes, too large for a manifest`, what);
  const body = Buffer.from(await res.arrayBuffer());
  if (body.length > limit) throw new ImageError(`${what} is ${body.length} bytes, too large for a manifest`, what);
  return body;
}
