/**
 * Registry credentials and the two challenges a registry answers 401 with:
 * `Basic realm=...` (send the credentials) and `Bearer realm=...,service=...,scope=...`
 * (trade them, or nothing, for a token at the realm: the Docker token protocol).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ImageError } from '../errors.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** `Bearer realm="https://a/token",service="reg",scope="repository:x:pull"` → scheme + params. */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/g;
  for (let p; (p = re.exec(m[2])); ) params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  return { scheme: m[1].toLowerCase(), params };
}

/** The places skopeo, podman and docker keep logins, in the order they read them. */
export function authFiles(env: NodeJS.ProcessEnv): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(path.join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  const home = env.HOME ?? os.homedir();
  files.push(path.join(home, '.config', 'containers', 'auth.json'));
  files.push(path.join(env.DOCKER_CONFIG ?? path.join(home, '.docker'), 'config.json'));
  return files;
}

/**
 * Credentials for `host`: PXEHERD_REGISTRY_USER + PXEHERD_REGISTRY_PASSWORD when set, else the
 * first auth file with an `auths` entry for the host (base64 "user:password" in `auth`).
 */
export function findCredentials(host: string, env: NodeJS.ProcessEnv, read: (f: string) => string | undefined = readIfExists): Credentials | undefined {
  if (env.PXEHERD_REGISTRY_USER && env.PXEHERD_REGISTRY_PASSWORD !== undefined) {
    return { username: env.PXEHERD_REGISTRY_USER, password: env.PXEHERD_REGISTRY_PASSWORD };
  }
  const keys = host === 'registry-1.docker.io' ? [host, 'docker.io', 'https://index.docker.io/v1/'] : [host, `https://${host}`, `http://${host}`];
  for (const file of authFiles(env)) {
    const text = read(file);
    if (text === undefined) continue;
    let auths: Record<string, { auth?: string; username?: string; password?: string }>;
    try {
      auths = (JSON.parse(text) as { auths?: typeof auths }).auths ?? {};
    } catch (e) {
      throw new ImageError(`registry credentials file ${file} is not JSON (${(e as Error).message}): fix or remove it`, file);
    }
    for (const k of keys) {
      const a = auths[k];
      if (!a) continue;
      if (a.username !== undefined && a.password !== undefined) return { username: a.username, password: a.password };
      if (a.auth) {
        const plain = Buffer.from(a.auth, 'base64').toString('utf8');
        const i = plain.indexOf(':');
        if (i > 0) return { username: plain.slice(0, i), password: plain.slice(i + 1) };
      }
    }
  }
  return undefined;
}

function readIfExists(f: string): string | undefined {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return undefined;
  }
}

export function basicAuth(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** Ask the realm of a Bearer challenge for a token to pull `repo`. */
export async function fetchToken(challenge: Challenge, repo: string, host: string, creds: Credentials | undefined, fetchFn: typeof fetch): Promise<string> {
  const realm = challenge.params.realm;
  if (!realm) throw new ImageError(`registry ${host} asked for a Bearer token without saying where to get one (no realm)`, host);
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new ImageError(`registry ${host} gave a token realm "${realm}" that is not a URL`, host);
  }
  if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
  url.searchParams.set('scope', challenge.params.scope ?? `repository:${repo}:pull`);
  const headers: Record<string, string> = {};
  if (creds) headers.authorization = basicAuth(creds);
  let res: Response;
  try {
    res = await fetchFn(url, { headers });
  } catch (e) {
    throw new ImageError(`cannot reach the token service ${url.origin} of registry ${host}: ${causeOf(e)}`, host);
  }
  if (res.status === 401 || res.status === 403) {
    throw new ImageError(
      creds
        ? `the token service of registry ${host} refused the credentials of "${creds.username}" (HTTP ${res.status}): check them`
        : `registry ${host} needs credentials: set PXEHERD_REGISTRY_USER and PXEHERD_REGISTRY_PASSWORD, or log in with skopeo login (REGISTRY_AUTH_FILE)`,
      host,
    );
  }
  if (!res.ok) throw new ImageError(`the token service of registry ${host} answered HTTP ${res.status}`, host);
  const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string };
  const token = body.token ?? body.access_token;
  if (!token) throw new ImageError(`the token service of registry ${host} answered without a token`, host);
  return token;
}

export function causeOf(e: unknown): string {
  const err = e as { cause?: { code?: string; message?: string }; message?: string };
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}
