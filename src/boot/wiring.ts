import path from 'node:path';
import type { Router } from 'express';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import type { EventSink } from '../nodes/types.js';
import { bootServiceFor, defaultTemplateDirs, type BootService } from './service.js';
import { bootRouter } from '../http/boot.js';
import { storeVnfsFiles, tftpHttpRouter, vnfsRouter } from '../http/vnfs.js';
import { FileCache, SendGate } from '../http/files.js';
import { nodeTokensFor, type NodeTokens } from '../security/tokens.js';
import { httpAuthorizer, provisiondAuthorizer } from '../security/authorize.js';
import { isActive } from '../dhcp/leases.js';
import { arpLookup } from '../provisiond/arp.js';
import type { ClientArchs } from './loader.js';
import { peerIp } from '../util/net.js';
import { revisionArtifactsFor } from '../peers/wiring.js';
import type { RevisionArtifacts } from '../peers/artifacts.js';

/**
 * Everything the boot path contributes to the server, built from the configuration in one
 * call, for src/server/server.ts:
 *
 *   const boot = bootParts({ config, store, serverAddress: address, events });
 *   createHttpApp({ routers: [provisionRouter(svc, { authorize: boot.authorize }), ...boot.routers] });
 *   new ProvisiondServer(svc, { ..., authorize: boot.provisiondAuthorize });
 *   tftp generate: boot.tftpGenerate;   explain: boot.boot.renderBootScript(mac)
 */
export interface BootParts {
  boot: BootService;
  tokens: NodeTokens;
  /** /boot/<mac>.ipxe + /boot.ipxe, /vnfs/NAME/FILE, /tftp/FILE */
  routers: Router[];
  /** provisionRouter's `authorize` option. */
  authorize: ReturnType<typeof httpAuthorizer>;
  /** ProvisiondServer's `authorize` option. */
  provisiondAuthorize: ReturnType<typeof provisiondAuthorizer>;
  /** The TFTP server's GenerateFn: pxelinux.cfg/* and grub.cfg* rendered from templates. */
  tftpGenerate: (req: { kind: 'pxelinux' | 'grub'; mac?: string }, peer?: { address: string }) => Promise<Buffer | undefined>;
  /** The admission of kernels and initrds (http.streams), for metrics; absent when 0. */
  gate?: SendGate;
  /** Revision artifacts, verified (or fetched from peers) before they are served: for TFTP's vnfs/ mount too. */
  artifacts: RevisionArtifacts;
}

export function bootParts(args: { config: Config; store: Store; serverAddress: string; events: EventSink; templatesDirs?: string[]; now?: () => number; archs?: ClientArchs }): BootParts {
  const { config, store, events } = args;
  const tokens = nodeTokensFor(config.statedir, config.security.token_ttl_seconds, args.now);
  const boot = bootServiceFor({ config, store, serverAddress: args.serverAddress, tokens, events, templatesDirs: args.templatesDirs ?? defaultTemplateDirs(config.statedir), archs: args.archs });
  const tftpRoot = config.tftp.root || path.join(config.statedir, 'tftproot');
  const auth = { enabled: config.security.node_tokens, tokens, events };
  // One cache for /vnfs and /tftp: the same few kernels, initrds and loaders go to every node.
  const mib = config.http.cache_mib;
  const cache = mib > 0 ? new FileCache({ maxBytes: mib * 1048576, maxFileBytes: Math.min(256, mib) * 1048576 }) : false;
  // Kernels and initrds in arrival order through a few streams: see SendGate.
  const gate = config.http.streams > 0 ? new SendGate(config.http.streams, 1000) : undefined;
  // A name without a MAC (Debian's network GRUB reads $prefix/grub.cfg, nothing per MAC): the
  // asking address's lease (or the neighbour table) says which machine it is.
  const render = (req: { kind: 'pxelinux' | 'grub'; mac?: string }, ip?: string) => {
    const peer = ip ? (peerIp(ip) ?? ip) : undefined;
    const now = args.now?.() ?? Date.now();
    if (req.mac && peer && config.security.node_tokens) {
      // As for /boot/<mac>.ipxe: a config carries its node's token, so one node must not fetch another's.
      const asker = nodeAt(store, peer, now);
      if (asker && asker.mac !== req.mac) {
        events.record({ mac: req.mac, kind: 'security.denied', detail: { reason: `the ${req.kind} config of ${req.mac} was asked for from ${peer}, which is node ${asker.name} (${asker.mac}): a node gets only its own config (and token)`, ip: peer, asker: asker.name } });
        return undefined;
      }
    }
    const mac = req.mac ?? (peer ? macAt(store, peer, now) : undefined);
    return req.kind === 'pxelinux' ? boot.renderPxelinux(mac) : boot.renderGrub(mac);
  };
  const artifacts = revisionArtifactsFor(config, store, events);
  return {
    boot,
    tokens,
    gate,
    artifacts,
    routers: [
      bootRouter({ boot, events, nodeAt: config.security.node_tokens ? (ip) => nodeAt(store, ip, args.now?.() ?? Date.now()) : undefined }),
      vnfsRouter({ vnfsRoot: path.join(config.statedir, 'vnfs'), backend: storeVnfsFiles(store), events, cache, gate, artifacts }),
      tftpHttpRouter({ root: tftpRoot, events, cache, gate, generate: (req, ip) => render(req, ip) }),
    ],
    authorize: httpAuthorizer(auth),
    provisiondAuthorize: provisiondAuthorizer(auth),
    tftpGenerate: (req, peer) => Promise.resolve(render(req, peer?.address)),
  };
}

/**
 * The registered node a request from `ip` comes from, as far as the master knows: the holder
 * of the address's active lease, else the MAC in the kernel's neighbour table (on-link
 * clients, also when another DHCP server gave the address). Undefined when neither knows the
 * address or the MAC is not a node (the master itself, a proxy, an admin's laptop).
 */
function macAt(store: Store, ip: string, now: number): string | undefined {
  const lease = store.leases.byIp(ip);
  return isActive(lease, now) ? lease.mac : arpLookup(ip);
}

function nodeAt(store: Store, ip: string, now: number): { mac: string; name: string } | undefined {
  const lease = store.leases.byIp(ip);
  const mac = isActive(lease, now) ? lease.mac : arpLookup(ip);
  const node = mac ? store.nodes.byMac(mac) : undefined;
  return node && { mac: node.mac, name: node.name };
}
