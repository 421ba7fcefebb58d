import type { Node, EventSink } from '../nodes/types.js';
import type { Health } from '../inventory/inventory.js';

/**
 * What the provision service needs from the node store. Narrow on purpose: the SQLite store
 * implements it in production, memory-backend.ts in tests.
 */
export interface ProvisionBackend {
  byMac(mac: string): Node | undefined;
  byName(name: string): Node | undefined;
  /** For provisiond without nodeid: leases then ARP. */
  macForIp(ip: string): string | undefined;
  /** Register an unknown MAC (auto_register). name = requested name if valid & free, else next pattern name. Throws InvalidInput if auto-registration is off. */
  register(mac: string, opts: { name?: string; ip?: string }): Node;
  /** Record a contact: state word, peer IP, time. */
  touch(mac: string, state: string, ip: string | undefined): void;
  /** Merged attributes (group attrs overridden by node attrs) for ATTR_ vars. */
  attrsFor(node: Node): Record<string, string>;
  /** The latest health a check-in carried (uptime, load, free memory); optional for fakes. */
  recordHealth?(mac: string, health: Health): void;
  events: EventSink;
  /** A fresh node token (security.node_tokens on), handed to the scripts as NODETOKEN. */
  issueToken?(mac: string): string;
}
