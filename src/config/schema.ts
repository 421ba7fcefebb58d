import { z } from 'zod';
import { IPV4_RE } from '../util/net.js';
import { compileSiteOptions } from '../dhcp/site-options.js';
import { ip6ToBuffer, parsePrefix6 } from '../dhcp6/ip6.js';
import { buildPool6 } from '../dhcp6/pool.js';

/**
 * The configuration contract (DESIGN.md "Configuration"). Every key has a default, unknown
 * keys are errors (a typo such as `dchp:` must not silently leave DHCP off), and values are
 * checked here once so the rest of the program can trust them.
 */
const ipv4 = z
  .string()
  .regex(IPV4_RE, 'must be an IPv4 address such as 10.0.0.1');
const port = z.number().int().min(0).max(65535);
const ipv6 = z.string().refine((v) => ip6ToBuffer(v) !== undefined && !v.includes('%'), 'must be an IPv6 address such as fd00:77::1');

/**
 * More DHCP options by name or code (src/dhcp/site-options.ts), sent to clients that ask for
 * them in option 55. Checked here so a bad entry stops `serve` with the key and the reason.
 */
const siteOptions = z
  .record(z.string(), z.union([z.string(), z.number(), z.array(z.string())]))
  .superRefine((v, ctx) => {
    try {
      compileSiteOptions(v, '');
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  });

const subnet = z
  .object({
    /** Network this pool serves, e.g. 10.1.0.0/24; relayed requests pick it by giaddr. */
    network: z.string().regex(/^\d+\.\d+\.\d+\.\d+\/\d{1,2}$/, 'must be a network such as 10.1.0.0/24'),
    range: z.tuple([ipv4, ipv4]),
    router: ipv4.optional(),
    dns: z.array(ipv4).optional(),
    lease_seconds: z.number().int().min(60).optional(),
    /** Replaces dhcp.options entry by entry for this subnet's clients. */
    options: siteOptions.optional(),
    /** Several servers on one segment (src/dhcp/policy.ts): all answer, or this one only when the primary is silent; default dhcp.answer. */
    answer: z.enum(['all', 'standby', 'balanced']).optional(),
    /** standby: answer once the client's secs field reaches this; default dhcp.standby_secs. */
    standby_secs: z.number().int().min(1).max(600).optional(),
  })
  .strict();

export const configSchema = z
  .object({
    statedir: z.string().min(1).default('./var'),
    /**
     * Where nodes, leases and events live: '' = SQLite under `statedir` (one server); a
     * postgres:// URL = PostgreSQL shared by any number of servers (issue 19). Also $PXEHERD_DATABASE.
     */
    database: z.union([z.literal(''), z.string().regex(/^(postgres(ql)?:\/\/|sqlite:)/i, 'must be a postgres:// URL (e.g. postgres://pxeherd@db.example/pxeherd), sqlite:PATH, or empty for SQLite under statedir')]).default(''),
    /** This server's name on leases and events when several share a database; '' = the host name. */
    server_id: z.union([z.literal(''), z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 letters, digits, dots, dashes or underscores')]).default(''),
    /** Interface DHCP/TFTP answer on; '' = any. */
    interface: z.string().default(''),
    /** Address nodes reach the master at; '' = taken from `interface`, else the first non-loopback IPv4. */
    address: z.union([ipv4, z.literal('')]).default(''),
    dhcp: z
      .object({
        mode: z.enum(['off', 'full', 'proxy']).default('off'),
        range: z.tuple([ipv4, ipv4]).optional(),
        netmask: ipv4.default('255.255.255.0'),
        router: ipv4.optional(),
        dns: z.array(ipv4).default([]),
        domain: z.string().default(''),
        lease_seconds: z.number().int().min(60).default(3600),
        /** e.g. { ntp-servers: [10.0.0.1], interface-mtu: 9000, domain-search: [c.example] } */
        options: siteOptions.default({}),
        port: port.default(67),
        /** ProxyDHCP boot server port (PXE clients ask here after the site DHCP answered). */
        proxy_port: port.default(4011),
        /**
         * A datagram that waited this long in pxeherd's queue is shed unanswered (counted in
         * pxeherd_dhcp_shed_total): past saturation the server answers fresh requests at its
         * peak rate instead of answering clients that gave up (ISC perfdhcp waits 1 s, PXE
         * ROMs retransmit after 4 s).
         */
        queue_max_age_ms: z.number().int().min(50).max(60000).default(1000),
        /**
         * Answer IPv6 router solicitations on `interface` with an empty advertisement, so iPXE
         * does not wait ~16 s for IPv6 on an IPv4-only network (native/ra helper).
         */
        ipv6_ra: z.boolean().default(true),
        /** More pools, for relayed requests (giaddr). */
        subnets: z.array(subnet).default([]),
        /**
         * Several servers on one segment (PostgreSQL, src/dhcp/policy.ts): `all` answer every
         * client; `standby` answers only a client whose secs field shows it has tried for
         * standby_secs (the primary is silent); `balanced` answers only the clients whose hash
         * bucket is this server's among the live servers (heartbeats in PostgreSQL), the others once
         * their secs reach standby_secs. For the dhcp.range pool, and the subnets' default.
         */
        answer: z.enum(['all', 'standby', 'balanced']).default('all'),
        standby_secs: z.number().int().min(1).max(600).default(3),
        /** Boot loader file names by client kind. */
        boot_files: z
          .object({
            bios: z.string().default('undionly.kpxe'),
            uefi_x64: z.string().default('ipxe.efi'),
            uefi_arm64: z.string().default(''),
            uefi_http: z.string().default('ipxe.efi'),
          })
          .strict()
          .default({ bios: 'undionly.kpxe', uefi_x64: 'ipxe.efi', uefi_arm64: '', uefi_http: 'ipxe.efi' }),
      })
      .strict()
      .prefault({}),
    tftp: z
      .object({
        port: port.default(69),
        /** '' = <statedir>/tftproot */
        root: z.string().default(''),
        /** Largest block offered; with `interface` set also at most its MTU - 32 (one frame per block, as dnsmasq does). */
        max_blksize: z.number().int().min(8).max(65464).default(65464),
        max_windowsize: z.number().int().min(1).max(65535).default(64),
        max_transfers: z.number().int().min(1).default(1024),
        /** Transfers sent at once; more RRQs wait in arrival order (0 = no limit). Native engine: a transfer whose client is silent stream_hold_ms gives its stream up; JavaScript engine: after stream_hold_ms in any case. */
        streams: z.number().int().min(0).default(32),
        /** See streams (ms); a transfer that gives its stream up finishes outside the streams and the next request starts. */
        stream_hold_ms: z.number().int().min(1).default(250),
        /** A window never holds more than this many bytes (a burst larger than a client's receive buffer is lost). */
        max_window_bytes: z.number().int().min(512).default(65536),
        /** Threads pumping DATA, 0 = default: native engine 1 C worker (max 4); JavaScript engine min(4, CPUs). */
        threads: z.number().int().min(0).max(64).default(0),
        /** Who pumps DATA: 'native' (C addon native/tftpdata), 'js' (worker threads), 'auto' = native when built. */
        engine: z.enum(['auto', 'native', 'js']).default('auto'),
        /** Native engine: a pump thread with several transfers polls briefly before it sleeps: 'auto' = when measured faster (idle cores), 'off', 'on'. */
        pump_poll: z.enum(['auto', 'off', 'on']).default('auto'),
        /** seconds between retransmissions unless the client negotiates `timeout` */
        timeout_seconds: z.number().min(0.1).max(255).default(1),
        retries: z.number().int().min(1).max(50).default(5),
      })
      .strict()
      .prefault({}),
    http: z
      .object({
        port: port.default(8080),
        /** '::' = every IPv4 and IPv6 address (falls back to 0.0.0.0 where IPv6 is off). */
        listen: z.string().default('::'),
        /** MiB of in-memory copies of served files (kernels, initrds, loaders); 0 streams every response from disk. */
        cache_mib: z.number().int().min(0).default(512),
        /**
         * Large bodies (kernels, initrds: 256 KiB and up) streamed at once; more wait in arrival
         * order. Each holds its place for at most 1 s, so a slow client delays no one for longer.
         * 0 = no limit (every download shares the link from its first byte).
         */
        streams: z.number().int().min(0).max(100000).default(32),
      })
      .strict()
      .prefault({}),
    provisiond: z.object({ port: port.default(987), listen: z.string().default('::') }).strict().prefault({}),
    nodes: z
      .object({
        name_pattern: z.string().regex(/#/, 'must contain at least one # (the number), e.g. n####').default('n####'),
        first_number: z.number().int().min(0).default(0),
        default_group: z.string().default('cluster'),
        default_vnfs: z.string().default(''),
        auto_register: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    nodescripts: z
      .object({
        /** '' = <statedir>/nodescripts */
        dir: z.string().default(''),
        timeout_seconds: z.number().positive().default(60),
        max_parallel: z.number().int().min(1).max(1024).default(8),
        on_error: z.enum(['abort', 'continue']).default('abort'),
      })
      .strict()
      .prefault({}),
    vnfs: z
      .object({
        method: z.string().default('http'),
        master: z.string().default(''),
        prefix: z.string().default(''),
        /** `vnfs capture`: paths on the node left out of every capture (globs), besides /proc /sys /dev /run /tmp. */
        capture_exclude: z.array(z.string()).default([]),
      })
      .strict()
      .prefault({}),
    security: z
      .object({
        node_tokens: z.boolean().default(true),
        /** how long a per-boot token stays valid */
        token_ttl_seconds: z.number().int().min(60).default(86400),
        /** with node_tokens off: serve /node/identity.tar (host private keys) on the source address alone */
        identity_without_token: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    admin: z
      .object({ listen: z.string().default('127.0.0.1'), port: port.default(8081) })
      .strict()
      .prefault({}),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
      .strict()
      .prefault({}),
    /**
     * IPv6 netboot (src/dhcp6): a DHCPv6 server (RFC 8415) handing out addresses from `prefix`
     * and the boot-file URL of RFC 5970 (option 59), plus router advertisements with the
     * Managed/Other flags on `interface` (native/ra). Boot loaders are dhcp.boot_files'.
     */
    dhcp6: z
      .object({
        mode: z.enum(['off', 'full']).default('off'),
        port: port.default(547),
        /** Address nodes reach the master at over IPv6 (boot URLs); '' = the first global address of `interface`. */
        address: z.union([ipv6, z.literal('')]).default(''),
        /** The served link's prefix, e.g. fd00:77::/64 (advertised in RAs; addresses come from `range` inside it). */
        prefix: z.string().default(''),
        /** First and last address handed out; default <prefix>::1000 - <prefix>::ffff. */
        range: z.tuple([ipv6, ipv6]).optional(),
        /** Valid lifetime of an address. */
        lease_seconds: z.number().int().min(60).default(3600),
        /** Preferred lifetime (T1/T2 are 0.5 and 0.8 of it); default = lease_seconds. */
        preferred_seconds: z.number().int().min(60).optional(),
        dns: z.array(ipv6).default([]),
        domain_search: z.array(z.string()).default([]),
        /** RFC 5970 option 60: parameters handed to the boot file with its URL (empty: not sent). */
        boot_params: z.array(z.string().min(1).max(255)).default([]),
        /** Answer a Solicit carrying Rapid Commit (option 14) with a Reply at once (two messages instead of four). */
        rapid_commit: z.boolean().default(true),
        /** Send router advertisements (M and O flags, the prefix) on `interface`: hosts only ask DHCPv6 when told to. */
        ra: z.boolean().default(true),
        /**
         * Set the autonomous flag on the advertised prefix, so hosts without a DHCPv6 client
         * (pxeherd's stage one: Debian's busybox has no udhcpc6) configure an address themselves.
         */
        slaac: z.boolean().default(true),
        /**
         * Several servers on one PostgreSQL (src/server/pg-dhcp6.ts): `all` answer every client;
         * `standby` answers a Solicit, Confirm or Information-request only once its Elapsed Time
         * (option 8) reaches standby_secs (the primary is silent); `balanced` as dhcp.answer,
         * the client's DUID picking its bucket. Rebind: any server.
         */
        answer: z.enum(['all', 'standby', 'balanced']).default('all'),
        standby_secs: z.number().int().min(1).max(600).default(3),
      })
      .strict()
      .superRefine((v, ctx) => {
        if (v.mode === 'off') return;
        if (!v.prefix) ctx.addIssue({ code: 'custom', path: ['prefix'], message: 'dhcp6.mode is full: set dhcp6.prefix, the served link\'s IPv6 prefix (e.g. fd00:77::/64)' });
        else {
          const p = parsePrefix6(v.prefix);
          if (typeof p === 'string') ctx.addIssue({ code: 'custom', path: ['prefix'], message: p });
          else if (v.slaac && p.length !== 64) ctx.addIssue({ code: 'custom', path: ['prefix'], message: `SLAAC needs a /64 prefix, not /${p.length} (or set dhcp6.slaac: false)` });
          else {
            try {
              buildPool6(v);
            } catch (e) {
              ctx.addIssue({ code: 'custom', path: ['range'], message: (e as Error).message.replace(/^dhcp6\.range /, '') });
            }
          }
        }
      })
      .prefault({}),
    /**
     * Several servers (issue 19): each keeps VNFS revision artifacts on its own disk and
     * fetches one it lacks from these servers (http://peer:8080 ...), in order, verified against
     * the database's manifest before it is served. Empty: only local files, still verified.
     */
    images: z
      .object({
        origins: z.array(z.string().regex(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, 'must be a base URL such as http://boot2:8080')).default([]),
        fetch_attempts: z.number().int().min(1).max(20).default(3),
        fetch_idle_timeout_seconds: z.number().positive().default(30),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
