import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AdminTokens } from './tokens.js';

export type Role = 'admin' | 'readonly';

export const SESSION_COOKIE = 'pxeherd_session';

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function hmac(key: string, what: string): string {
  return crypto.createHmac('sha256', key).update(what).digest('base64url');
}

export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of (header ?? '').split(';')) {
    const part = raw.trim();
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const k = part.slice(0, i).trim();
    const v = part.slice(i + 1).trim();
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      out[k] = v;
    }
  }
  return out;
}

/**
 * Who is asking. API clients send `Authorization: Bearer <token>`; the browser UI holds a
 * session cookie derived from the token (HMAC), so sessions are stateless, survive a restart
 * and end when the token file is replaced. The CSRF token of a session is derived the same way.
 */
export class AdminAuth {
  constructor(private readonly tokens: AdminTokens) {}

  private tokenOf(role: Role): string {
    return role === 'admin' ? this.tokens.admin : this.tokens.readonly;
  }

  roleOfToken(token: string | undefined): Role | undefined {
    if (!token) return undefined;
    if (sameText(token, this.tokens.admin)) return 'admin';
    if (sameText(token, this.tokens.readonly)) return 'readonly';
    return undefined;
  }

  sessionValue(role: Role): string {
    return `${role}.${hmac(this.tokenOf(role), 'pxeherd-ui-session')}`;
  }

  roleOfSession(value: string | undefined): Role | undefined {
    if (!value) return undefined;
    const role = value.slice(0, value.indexOf('.'));
    if (role !== 'admin' && role !== 'readonly') return undefined;
    return sameText(value, this.sessionValue(role)) ? role : undefined;
  }

  csrfToken(role: Role): string {
    return hmac(this.tokenOf(role), 'pxeherd-ui-csrf');
  }

  checkCsrf(role: Role, given: unknown): boolean {
    return typeof given === 'string' && sameText(given, this.csrfToken(role));
  }

  /** Bearer header first, then the session cookie (when `cookie` is allowed). */
  identify(req: IncomingMessage, opts: { cookie: boolean }): { role: Role; via: 'bearer' | 'cookie' } | { role?: undefined; problem: string } {
    const h = req.headers.authorization;
    if (h !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
      if (!m) return { problem: 'the Authorization header must be "Bearer <token>"' };
      const role = this.roleOfToken(m[1]);
      return role ? { role, via: 'bearer' } : { problem: 'wrong token' };
    }
    if (opts.cookie) {
      const c = parseCookies(req.headers.cookie)[SESSION_COOKIE];
      if (c !== undefined) {
        const role = this.roleOfSession(c);
        return role ? { role, via: 'cookie' } : { problem: 'session expired (the admin token changed): open the link printed by pxeherd serve again' };
      }
    }
    return { problem: 'missing token: send "Authorization: Bearer <token>" (the token is in <statedir>/admin.token)' };
  }

  /** Set-Cookie value for a UI session: HttpOnly, SameSite=Strict, whole site. */
  sessionCookie(role: Role): string {
    return `${SESSION_COOKIE}=${this.sessionValue(role)}; Path=/; HttpOnly; SameSite=Strict`;
  }
}
