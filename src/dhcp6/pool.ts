/**
 * The DHCPv6 address pool: one prefix, one range inside it. Addresses are bigints so a /64
 * range costs nothing to describe; only addresses handed out are ever stored.
 */
import { bigIntToIp6, inPrefix, ip6ToBigInt, parsePrefix6, type Prefix6 } from './ip6.js';

/** The `dhcp6:` configuration keys (src/config/schema.ts documents each). */
export interface Dhcp6Config {
  mode: 'off' | 'full';
  port: number;
  address: string;
  prefix: string;
  range?: [string, string];
  lease_seconds: number;
  preferred_seconds?: number;
  dns: string[];
  domain_search: string[];
  rapid_commit: boolean;
  /** RFC 5970 option 60: parameters for the boot file, sent with the boot-file URL. */
  boot_params?: string[];
  ra: boolean;
  slaac: boolean;
  /** Several servers on one database: `standby` answers only clients the primary left waiting (handler.ts). */
  answer?: 'all' | 'standby' | 'balanced';
  standby_secs?: number;
}

export interface Pool6 {
  prefix: Prefix6;
  start: bigint;
  end: bigint;
  /** Next address to try (round robin, so a released address is not reused at once). */
  cursor: bigint;
  validSeconds: number;
  preferredSeconds: number;
}

/** The pool the config describes; throws a one-line Error naming the key when it is wrong. */
export function buildPool6(cfg: Pick<Dhcp6Config, 'prefix' | 'range' | 'lease_seconds' | 'preferred_seconds'>): Pool6 {
  const prefix = parsePrefix6(cfg.prefix);
  if (typeof prefix === 'string') throw new Error(`dhcp6.prefix: ${prefix}`);
  if (prefix.length > 120) throw new Error(`dhcp6.prefix ${prefix.text} is too small to hold a pool: use a /64`);
  const size = 1n << BigInt(128 - prefix.length);
  let start = prefix.network + 0x1000n;
  let end = prefix.network + (size > 0x10000n ? 0xffffn : size - 1n);
  if (cfg.range) {
    const s = ip6ToBigInt(cfg.range[0]);
    const e = ip6ToBigInt(cfg.range[1]);
    if (s === undefined || e === undefined) throw new Error(`dhcp6.range [${cfg.range.join(', ')}] must be two IPv6 addresses`);
    if (!inPrefix(prefix, s) || !inPrefix(prefix, e)) throw new Error(`dhcp6.range [${cfg.range.join(', ')}] is not inside dhcp6.prefix ${prefix.text}`);
    if (s > e) throw new Error(`dhcp6.range starts after it ends: [${cfg.range.join(', ')}]`);
    start = s;
    end = e;
  } else if (start > end) {
    start = prefix.network + 1n;
  }
  const valid = cfg.lease_seconds;
  const preferred = Math.min(cfg.preferred_seconds ?? valid, valid);
  return { prefix, start, end, cursor: start, validSeconds: valid, preferredSeconds: preferred };
}

export function poolHas(p: Pool6, n: bigint): boolean {
  return n >= p.start && n <= p.end;
}

export function describePool(p: Pool6): string {
  return `${bigIntToIp6(p.start)} - ${bigIntToIp6(p.end)} in ${p.prefix.text}`;
}
