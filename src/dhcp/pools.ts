/**
 * Address pools from the configuration: the main one (`dhcp.range` on the server's own link)
 * and one per `dhcp.subnets` entry, chosen by giaddr for relayed requests.
 */
import type { Config } from '../config/schema.js';
import { cidrText, inCidr, intToIp, ipToInt, maskToPrefix, parseCidr, prefixToMask, type Cidr } from './ip.js';
import { compileSiteOptions } from './site-options.js';

export type DhcpConfig = Config['dhcp'];

export interface Pool {
  /** "10.0.0.0/24": stored on leases, shown by explain. */
  name: string;
  cidr: Cidr;
  start: number;
  end: number;
  router?: string;
  dns: string[];
  domain: string;
  leaseSeconds: number;
  netmask: string;
  broadcast: string;
  /** Site options (dhcp.options, with the subnet's own entries over them), sent when requested. */
  options: Map<number, Buffer>;
  /** Next address the allocator tries; moves forward so freed addresses are not reused at once. */
  cursor: number;
}

export class PoolConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PoolConfigError';
  }
}

function makePool(cidr: Cidr, range: [string, string], extra: { router?: string; dns: string[]; domain: string; leaseSeconds: number; options: Map<number, Buffer> }, key: string): Pool {
  const start = ipToInt(range[0]);
  const end = ipToInt(range[1]);
  if (start === undefined || end === undefined) throw new PoolConfigError(`${key}: not IPv4 addresses`);
  if (start > end) throw new PoolConfigError(`${key}: ${range[0]} comes after ${range[1]}`);
  if (!inCidr(start, cidr) || !inCidr(end, cidr)) throw new PoolConfigError(`${key}: ${range[0]}-${range[1]} is not inside ${cidrText(cidr)}`);
  const bcast = (cidr.network | ~cidr.mask) >>> 0;
  return {
    name: cidrText(cidr),
    cidr,
    start,
    end,
    router: extra.router,
    dns: extra.dns,
    domain: extra.domain,
    leaseSeconds: extra.leaseSeconds,
    netmask: intToIp(prefixToMask(cidr.prefix)),
    broadcast: intToIp(bcast),
    options: extra.options,
    cursor: start,
  };
}

/** Pools in configuration order; the first is the server's own link when `dhcp.range` is set. */
export function buildPools(cfg: DhcpConfig): { local?: Pool; all: Pool[] } {
  const all: Pool[] = [];
  let local: Pool | undefined;
  const site = compileSiteOptions(cfg.options ?? {});
  if (cfg.range) {
    const prefix = maskToPrefix(cfg.netmask);
    if (prefix === undefined) throw new PoolConfigError(`dhcp.netmask: ${cfg.netmask} is not a contiguous netmask`);
    const cidr = parseCidr(`${cfg.range[0]}/${prefix}`)!;
    local = makePool(cidr, cfg.range, { router: cfg.router, dns: cfg.dns, domain: cfg.domain, leaseSeconds: cfg.lease_seconds, options: site }, 'dhcp.range');
    all.push(local);
  }
  cfg.subnets.forEach((s, i) => {
    const cidr = parseCidr(s.network);
    if (!cidr) throw new PoolConfigError(`dhcp.subnets[${i}].network: ${s.network} is not a network`);
    all.push(
      makePool(
        cidr,
        s.range,
        {
          router: s.router,
          dns: s.dns ?? cfg.dns,
          domain: cfg.domain,
          leaseSeconds: s.lease_seconds ?? cfg.lease_seconds,
          options: new Map([...site, ...compileSiteOptions(s.options ?? {}, `dhcp.subnets[${i}].options`)]),
        },
        `dhcp.subnets[${i}].range`,
      ),
    );
  });
  return { local, all };
}

/**
 * The pool serving a request: by giaddr when relayed (RFC 2131 §4.3.1), else the local pool,
 * else the configured subnet that holds the server's own address.
 */
export function selectPool(pools: { local?: Pool; all: Pool[] }, giaddr: string, serverAddress: string): Pool | undefined {
  const g = ipToInt(giaddr) ?? 0;
  if (g !== 0) return pools.all.find((p) => inCidr(g, p.cidr));
  if (pools.local) return pools.local;
  const s = ipToInt(serverAddress);
  return s === undefined ? undefined : pools.all.find((p) => inCidr(s, p.cidr));
}

export function poolContains(pool: Pool, ip: number): boolean {
  return ip >= pool.start && ip <= pool.end;
}

/** Host address inside the pool's network (not its network or broadcast address). */
export function usableInNetwork(pool: Pool, ip: number): boolean {
  if (!inCidr(ip, pool.cidr)) return false;
  if (pool.cidr.prefix >= 31) return true;
  const bcast = (pool.cidr.network | ~pool.cidr.mask) >>> 0;
  return ip !== pool.cidr.network && ip !== bcast;
}
