import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { nameError } from '../nodes/names.js';
import type { TarEntry } from './tar.js';

/**
 * A node's identity, kept on the master so reboots and reinstalls keep it:
 *   <statedir>/hostkeys/<node>/ssh_host_{ed25519,ecdsa,rsa}_key{,.pub}   (made with ssh-keygen)
 *   <statedir>/hostkeys/<node>/machine-id                                 (32 hex digits)
 * The private keys are served only to that node (src/stateless/router.ts) and never printed.
 * pxeherd's SSH client verifies a node against the .pub files here (src/remote/hostkeys.ts).
 */
export const HOST_KEY_TYPES = ['ed25519', 'ecdsa', 'rsa'] as const;

export class IdentityError extends Error {}

const execFileP = promisify(execFile);
/** One generation per node at a time, shared by concurrent requests. */
const inFlight = new Map<string, Promise<string>>();

export function identityDir(statedir: string, node: string): string {
  const bad = nameError('node', node);
  if (bad) throw new IdentityError(bad);
  return path.join(statedir, 'hostkeys', node);
}

/**
 * Create what is missing of a node's identity (ssh-keygen runs as a child process: the
 * server's event loop keeps answering other nodes meanwhile). Made in a temporary directory
 * and renamed into place, so two processes at once end with one identity.
 */
export function ensureIdentity(statedir: string, node: string): Promise<string> {
  const dir = identityDir(statedir, node);
  if (complete(dir)) return Promise.resolve(dir);
  let p = inFlight.get(dir);
  if (!p) {
    p = makeIdentity(dir, node).finally(() => inFlight.delete(dir));
    inFlight.set(dir, p);
  }
  return p;
}

async function makeIdentity(dir: string, node: string): Promise<string> {
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o700 });
  const tmp = `${dir}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  fs.mkdirSync(tmp, { mode: 0o700 });
  try {
    // Keep whatever part of an identity exists (an admin may have put old keys there).
    if (fs.existsSync(dir)) for (const f of fs.readdirSync(dir)) fs.copyFileSync(path.join(dir, f), path.join(tmp, f));
    for (const t of HOST_KEY_TYPES) {
      const key = path.join(tmp, `ssh_host_${t}_key`);
      if (fs.existsSync(key)) continue;
      try {
        await execFileP('ssh-keygen', ['-q', '-t', t, '-N', '', '-C', `root@${node}`, '-f', key]);
      } catch (e) {
        const err = e as NodeJS.ErrnoException & { stderr?: string };
        if (err.code === 'ENOENT') throw new IdentityError('ssh-keygen not found: install openssh-client (Debian) to make node host keys');
        throw new IdentityError(`ssh-keygen -t ${t} for ${node} failed: ${String(err.stderr ?? '').trim() || err.message}`);
      }
    }
    const mid = path.join(tmp, 'machine-id');
    if (!fs.existsSync(mid)) fs.writeFileSync(mid, crypto.randomBytes(16).toString('hex') + '\n', { mode: 0o644 });
    if (complete(dir)) return dir; // another process finished first
    fs.rmSync(dir, { recursive: true, force: true });
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
    }
    return dir;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function complete(dir: string): boolean {
  return HOST_KEY_TYPES.every((t) => fs.existsSync(path.join(dir, `ssh_host_${t}_key`)) && fs.existsSync(path.join(dir, `ssh_host_${t}_key.pub`))) && fs.existsSync(path.join(dir, 'machine-id'));
}

/** The node's public host keys as "type base64" (no comment); [] when none are kept. */
export function keptHostKeys(statedir: string, node: string): string[] {
  let dir: string;
  try {
    dir = identityDir(statedir, node);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const t of HOST_KEY_TYPES) {
    try {
      const [type, b64] = fs.readFileSync(path.join(dir, `ssh_host_${t}_key.pub`), 'utf8').trim().split(/\s+/);
      if (type && b64) out.push(`${type} ${b64}`);
    } catch {
      /* not kept */
    }
  }
  return out;
}

/** A crypt(3) hash ($1$, $5$, $6$, yescrypt $y$, $gy$, bcrypt $2b$...) or a locked '!'/'*'. */
export function isCryptHash(s: string): boolean {
  if (s === '!' || s === '*' || s === '!*') return true;
  return /^\$(1|5|6|y|gy|7|2[abxy]|sha1|md5)\$[./A-Za-z0-9$=,]{8,}$/.test(s);
}

export function passwordHashError(s: string): string | undefined {
  if (isCryptHash(s)) return undefined;
  return 'attribute root_password_hash must be a crypt(3) hash (e.g. from `mkpasswd -m yescrypt` or `openssl passwd -6`), never a plain password';
}

/**
 * The identity bundle stage one unpacks into a staging directory: the host keys (root-owned,
 * private keys 0600), machine-id, and the root password hash when the attribute is set.
 */
export async function identityEntries(statedir: string, node: string, attrs: Record<string, string>): Promise<TarEntry[]> {
  const hash = attrs.root_password_hash;
  if (hash) {
    const err = passwordHashError(hash);
    if (err) throw new IdentityError(err);
  }
  const dir = await ensureIdentity(statedir, node);
  const root = { uid: 0, gid: 0 };
  const entries: TarEntry[] = [{ path: 'etc', type: 'dir', mode: 0o755, ...root }, { path: 'etc/ssh', type: 'dir', mode: 0o755, ...root }];
  for (const t of HOST_KEY_TYPES) {
    entries.push({ path: `etc/ssh/ssh_host_${t}_key`, type: 'file', mode: 0o600, ...root, data: fs.readFileSync(path.join(dir, `ssh_host_${t}_key`)) });
    entries.push({ path: `etc/ssh/ssh_host_${t}_key.pub`, type: 'file', mode: 0o644, ...root, data: fs.readFileSync(path.join(dir, `ssh_host_${t}_key.pub`)) });
  }
  entries.push({ path: 'etc/machine-id', type: 'file', mode: 0o444, ...root, data: fs.readFileSync(path.join(dir, 'machine-id')) });
  if (hash) {
    entries.push({ path: 'root-password.hash', type: 'file', mode: 0o600, ...root, data: Buffer.from(hash + '\n') });
  }
  return entries;
}
