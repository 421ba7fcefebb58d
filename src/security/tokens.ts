import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseMac } from '../nodes/mac.js';

/**
 * Per-boot node tokens. The iPXE script embeds one in the kernel command line; the node
 * sends it back on /provision (and the provisiond protocol), which proves the request comes
 * from a machine that booted through this master recently, not from anyone on the LAN who
 * knows a MAC address.
 *
 *   token = <issued-at, seconds, base36> "." <boot id, 8 random bytes hex> "." <mac>
 *   hmac  = HMAC-SHA256(key, mac "|" issued-at "|" boot-id), base64url, first 22 chars
 *   wire  = <issued-at>.<boot-id>.<hmac>
 *
 * Stateless: the master keeps no token table, so tokens survive restarts and the key file
 * is the only secret. The wire form is URL- and kernel-command-line-safe (no '=', '&', ' ').
 */
export type VerifyResult = { ok: true; issuedAt: number; bootId: string; expiresAt: number } | { ok: false; reason: string };

export interface NodeTokenOptions {
  key: Buffer;
  ttlSeconds: number;
  /** ms since epoch; injected so tests can expire tokens without sleeping. */
  now?: () => number;
  /** Random boot id; injected for deterministic tests. */
  bootId?: () => string;
}

/** Tokens issued slightly in the future (clock steps on the master) are still accepted. */
const CLOCK_SKEW_S = 300;
const MAC_LEN = 22;

export class NodeTokens {
  private readonly key: Buffer;
  readonly ttlSeconds: number;
  private readonly now: () => number;
  private readonly newBootId: () => string;

  constructor(opts: NodeTokenOptions) {
    if (opts.key.length < 16) throw new Error('node token key must be at least 16 bytes');
    this.key = opts.key;
    this.ttlSeconds = opts.ttlSeconds;
    this.now = opts.now ?? Date.now;
    this.newBootId = opts.bootId ?? (() => crypto.randomBytes(8).toString('hex'));
  }

  private sign(mac: string, issuedAt: number, bootId: string): string {
    return crypto.createHmac('sha256', this.key).update(`${mac}|${issuedAt}|${bootId}`).digest('base64url').slice(0, MAC_LEN);
  }

  /** A fresh token for this MAC (any accepted spelling). */
  issueToken(mac: string): string {
    const m = parseMac(mac);
    if (!m.ok) throw new Error(m.error);
    const issuedAt = Math.floor(this.now() / 1000);
    const bootId = this.newBootId();
    return `${issuedAt.toString(36)}.${bootId}.${this.sign(m.mac, issuedAt, bootId)}`;
  }

  verifyToken(mac: string, token: string | undefined): VerifyResult {
    const m = parseMac(mac);
    if (!m.ok) return { ok: false, reason: m.error };
    if (token === undefined || token === '') return { ok: false, reason: 'no token' };
    const parts = token.split('.');
    if (parts.length !== 3 || !/^[0-9a-z]{1,10}$/.test(parts[0]!) || !/^[0-9a-f]{1,32}$/.test(parts[1]!) || parts[2]!.length !== MAC_LEN) {
      return { ok: false, reason: 'malformed token' };
    }
    const issuedAt = parseInt(parts[0]!, 36);
    const bootId = parts[1]!;
    const want = Buffer.from(this.sign(m.mac, issuedAt, bootId));
    const got = Buffer.from(parts[2]!);
    if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) {
      return { ok: false, reason: `token was not issued for ${m.mac} by this master` };
    }
    const nowS = Math.floor(this.now() / 1000);
    const expiresAt = issuedAt + this.ttlSeconds;
    if (issuedAt > nowS + CLOCK_SKEW_S) return { ok: false, reason: `token issued in the future (${new Date(issuedAt * 1000).toISOString()}): check the master's clock` };
    if (nowS >= expiresAt) {
      return { ok: false, reason: `token expired at ${new Date(expiresAt * 1000).toISOString()} (valid ${this.ttlSeconds}s): reboot the node through pxeherd for a new one` };
    }
    return { ok: true, issuedAt, bootId, expiresAt };
  }
}

/**
 * The HMAC key: 32 random bytes in <statedir>/node-token.key, mode 0600, made on first use.
 * Created with O_EXCL so two processes starting at once agree on one key.
 */
export function loadOrCreateKey(file: string): Buffer {
  try {
    const key = fs.readFileSync(file);
    if (key.length < 16) throw new Error(`${file} holds ${key.length} bytes, need at least 16: delete it to make a new key`);
    return key;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const key = crypto.randomBytes(32);
  try {
    const fd = fs.openSync(file, 'wx', 0o600);
    try {
      fs.writeSync(fd, key);
    } finally {
      fs.closeSync(fd);
    }
    return key;
  } catch (e) {
    // Lost the race: the other process's key wins.
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return fs.readFileSync(file);
    throw e;
  }
}

export function tokenKeyPath(statedir: string): string {
  return path.join(statedir, 'node-token.key');
}

/** NodeTokens from the state directory and `security.token_ttl_seconds`. */
export function nodeTokensFor(statedir: string, ttlSeconds: number, now?: () => number): NodeTokens {
  return new NodeTokens({ key: loadOrCreateKey(tokenKeyPath(statedir)), ttlSeconds, now });
}
