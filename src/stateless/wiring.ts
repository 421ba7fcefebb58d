import type { Router } from 'express';
import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import type { EventSink, Node } from '../nodes/types.js';
import type { NodeTokens } from '../security/tokens.js';
import { installDefaultNodescripts } from '../nodescripts/install.js';
import { ensureKey } from '../remote/keys.js';
import { nodeImage } from './image.js';
import { resolveVnfsRef } from '../images/resolve.js';
import { DEFAULT_OVERLAYS_SRC } from './overlay.js';
import type { OverlaySources } from './context.js';
import { nodeFilesRouter } from './router.js';
import path from 'node:path';
import { arpLookup } from '../provisiond/arp.js';
import { installReportHandler } from '../install/state.js';
import { wipeReportHandler } from '../install/release.js';

/** vnfs.current_rev of the node's VNFS. */
export function currentRevOf(store: Store, vnfsField: string): number | undefined {
  const name = resolveVnfsRef(vnfsField).name;
  return name ? (store.vnfs.get(name)?.currentRev ?? undefined) : undefined;
}

/** The store and config as the overlay renderer sees them (serve, `overlay render`). */
export function overlaySources(config: Config, store: Store, server: { address: string; httpPort: number }): OverlaySources {
  return {
    statedir: config.statedir,
    server,
    allNodes: () => store.nodes.all(),
    attrsFor: (n: Node) => store.attrsFor(n),
    vnfs: (name) => store.vnfs.get(name),
    imageFor: (n, attrs) => nodeImage(n.vnfs, attrs, currentRevOf(store, n.vnfs)),
  };
}

/**
 * What stateless boot adds to `serve`: the default overlays copied into the state directory
 * (never over an admin's files), pxeherd's SSH key made (the nodescripts install its public
 * half), and the per-node files router.
 */
export async function statelessParts(args: { config: Config; store: Store; serverAddress: string; events: EventSink; tokens: NodeTokens }): Promise<{ routers: Router[]; installed: string[] }> {
  const { config, store, events, tokens } = args;
  const installed = await installDefaultNodescripts(DEFAULT_OVERLAYS_SRC, path.join(config.statedir, 'overlays'));
  ensureKey(config.statedir);
  const src = overlaySources(config, store, { address: args.serverAddress, httpPort: config.http.port });
  const installReport = installReportHandler(store, events);
  const wipeReport = wipeReportHandler(store, events);
  return {
    installed,
    routers: [
      nodeFilesRouter({
        ...src,
        byMac: (mac) => store.nodes.byMac(mac),
        events,
        tokens,
        tokensRequired: config.security.node_tokens,
        identityWithoutToken: config.security.identity_without_token,
        leaseIp: (mac) => {
          const l = store.leases.byMac(mac);
          return l && l.state === 'bound' && l.expiresAt > Date.now() ? l.ip : undefined;
        },
        neighbourMac: (ip) => arpLookup(ip),
        onReport: (node, kind, detail) => {
          installReport(node, kind, detail);
          wipeReport(node, kind);
        },
      }),
    ],
  };
}
