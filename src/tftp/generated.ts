/**
 * Recognising the names boot loaders ask for that pxeherd renders from templates
 * instead of reading from disk. Pure: the renderer itself is injected into the server
 * (see GenerateFn) by the wiring, which knows the store and the templates.
 *
 *   pxelinux:  [dir/]pxelinux.cfg/01-aa-bb-cc-dd-ee-ff     (01 = ARP type Ethernet)
 *              [dir/]pxelinux.cfg/default
 *   grub:      [dir/]grub.cfg-01-aa-bb-cc-dd-ee-ff         (grub2 net boot search order)
 *              [dir/]grub.cfg-aa:bb:cc:dd:ee:ff            (Ubuntu/MAAS-patched grub)
 *              [dir/]grub.cfg-aa-bb-cc-dd-ee-ff
 *              [dir/]grub.cfg                              (grub's last try; no MAC)
 *
 * pxelinux's other guesses (UUID, hex IP prefixes) and grub's hex-IP names are not
 * generated: the wiring maps the peer IP to a node for the no-MAC names instead.
 */
import { parseMac } from '../nodes/mac.js';

export type GeneratedKind = 'pxelinux' | 'grub';

export interface GeneratedName {
  kind: GeneratedKind;
  /** Canonical MAC (aa:bb:cc:dd:ee:ff) when the name carries one. */
  mac?: string;
}

/** What the server hands to the renderer. */
export interface GeneratedRequest extends GeneratedName {
  /** The cleaned, root-relative name that was requested. */
  path: string;
}

export interface Peer {
  address: string;
  port: number;
}

/**
 * Renders a generated file. Resolve undefined to decline (the server then looks for a
 * real file of that name under the root, else answers "file not found").
 */
export type GenerateFn = (req: GeneratedRequest, peer: Peer) => Promise<Buffer | undefined>;

const PXE_MAC = /^01-((?:[0-9a-f]{2}-){5}[0-9a-f]{2})$/i;
const GRUB_MAC = /^grub\.cfg-(?:01-)?((?:[0-9a-f]{2}-){5}[0-9a-f]{2}|(?:[0-9a-f]{2}:){5}[0-9a-f]{2})$/i;

/** `name` is a root-relative path as produced by paths.cleanName. */
export function parseGeneratedName(name: string): GeneratedName | undefined {
  const slash = name.lastIndexOf('/');
  const base = name.slice(slash + 1);
  const dir = slash < 0 ? '' : name.slice(0, slash);
  const parentDir = dir.slice(dir.lastIndexOf('/') + 1);
  if (parentDir === 'pxelinux.cfg') {
    if (base === 'default') return { kind: 'pxelinux' };
    const m = PXE_MAC.exec(base);
    if (m) {
      const r = parseMac(m[1]!);
      if (r.ok) return { kind: 'pxelinux', mac: r.mac };
    }
    return undefined;
  }
  if (base === 'grub.cfg') return { kind: 'grub' };
  const g = GRUB_MAC.exec(base);
  if (g) {
    const r = parseMac(g[1]!);
    if (r.ok) return { kind: 'grub', mac: r.mac };
  }
  return undefined;
}
