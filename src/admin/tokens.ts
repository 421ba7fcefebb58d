import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeSecretFile } from '../security/secret-file.js';

export interface AdminTokens {
  /** Full access: reads and writes. */
  admin: string;
  /** GETs only; writes answer 403. */
  readonly: string;
}

export const ADMIN_TOKEN_FILE = 'admin.token';
export const READONLY_TOKEN_FILE = 'admin-readonly.token';

/** 32 random bytes, URL-safe so it can travel in the one-click link. */
export function newToken(): string {
  return crypto.randomBytes(32).toString('base64url');
}

/**
 * Read a token file, creating it (mode 0600) with a fresh token when it is missing or empty.
 * An existing file keeps its token (admins may have handed it out) but is tightened to 0600.
 */
function ensureTokenFile(file: string): string {
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    if (text.length >= 16 && !/\s/.test(text)) {
      if ((fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
      return text;
    }
    if (text.length > 0) throw new Error(`${file} does not hold a usable token (16+ characters, no spaces): fix or delete it`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const token = newToken();
  writeSecretFile(file, token + '\n');
  return token;
}

/** The admin and read-only tokens of `<statedir>/admin.token` and `<statedir>/admin-readonly.token`. */
export function ensureAdminTokens(statedir: string): AdminTokens {
  fs.mkdirSync(statedir, { recursive: true });
  const admin = ensureTokenFile(path.join(statedir, ADMIN_TOKEN_FILE));
  const readonly = ensureTokenFile(path.join(statedir, READONLY_TOKEN_FILE));
  if (admin === readonly) throw new Error(`${ADMIN_TOKEN_FILE} and ${READONLY_TOKEN_FILE} hold the same token: replace one of them`);
  return { admin, readonly };
}

/**
 * The one-click link `pxeherd serve` prints. A wildcard listen address is shown as loopback
 * (the link is for the admin on this machine); IPv6 addresses get brackets.
 */
export function adminLink(listen: string, port: number, token: string): string {
  let host = listen;
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::' || host === '[::]') host = '[::1]';
  else if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `http://${host}:${port}/?token=${encodeURIComponent(token)}`;
}
