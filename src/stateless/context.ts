import type { Node, Vnfs } from '../nodes/types.js';
import type { BootContext } from '../boot/decide.js';
import type { NodeImage } from './image.js';
import { buildOverlay, overlayLayers, type Overlay } from './overlay.js';

/**
 * What overlay templates (`*.hbs`) see: the boot templates' node, vnfs and server values
 * (never the node's token) plus `nodes`, every node of the cluster sorted by name, for
 * files such as /etc/hosts.
 */
export interface OverlayContext {
  /** The same node values boot templates see. */
  node: BootContext['node'];
  vnfs: { name: string; rev: number | null; kernel: string; initrd: string; cmdline: string; attrs: Record<string, string> };
  server: { address: string; httpPort: number; url: string };
  nodes: { name: string; mac: string; ip: string; group: string }[];
}

export interface OverlaySources {
  statedir: string;
  server: { address: string; httpPort: number };
  allNodes(): Node[];
  attrsFor(node: Node): Record<string, string>;
  vnfs(name: string): Vnfs | undefined;
  imageFor(node: Node, attrs: Record<string, string>): NodeImage;
}

export function overlayContext(src: OverlaySources, node: Node): { context: OverlayContext; image: NodeImage } {
  const attrs = src.attrsFor(node);
  const image = src.imageFor(node, attrs);
  const v = image.name ? src.vnfs(image.name) : undefined;
  const host = src.server.address.includes(':') ? `[${src.server.address}]` : src.server.address;
  const context: OverlayContext = {
    node: {
      name: node.name,
      mac: node.mac,
      macHyphen: node.mac.replace(/:/g, '-'),
      ip: node.ip,
      group: node.group,
      vnfs: image.name,
      boot: node.boot,
      state: node.state,
      enabled: node.enabled,
      debug: node.debug,
      attrs,
    },
    vnfs: { name: image.name, rev: image.rev ?? null, kernel: v?.kernel ?? '', initrd: v?.initrd ?? '', cmdline: v?.cmdline ?? '', attrs: v?.attrs ?? {} },
    server: { address: src.server.address, httpPort: src.server.httpPort, url: `http://${host}:${src.server.httpPort}` },
    nodes: src
      .allNodes()
      .map((n) => ({ name: n.name, mac: n.mac, ip: n.ip, group: n.group }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  };
  return { context, image };
}

/** The overlay `node` gets (throws OverlayError naming the file and key on a template error). */
export function nodeOverlay(src: OverlaySources, node: Node): Overlay {
  const { context, image } = overlayContext(src, node);
  return buildOverlay(overlayLayers(src.statedir, node, image.name), context);
}
