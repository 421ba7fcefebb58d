import type { BootEvent, EventSink, Node } from '../nodes/types.js';
import { nodeRecord } from '../nodes/types.js';
import { InvalidInput, normalizeMac } from '../nodes/mac.js';
import type { ProvisionBackend } from './backend.js';

/**
 * In-memory ProvisionBackend for tests and benchmarks (the server uses the SQLite store).
 * Events are kept in an array so tests can inspect them.
 */
export class MemoryProvisionBackend implements ProvisionBackend {
  readonly nodes = new Map<string, Node>();
  readonly groupAttrs = new Map<string, Record<string, string>>();
  readonly ipToMac = new Map<string, string>();
  readonly log: BootEvent[] = [];
  readonly events: EventSink = { record: (ev) => void this.log.push({ time: Date.now(), ...ev }) };
  private next: number;

  constructor(
    readonly opts: { autoRegister?: boolean; namePattern?: string; firstNumber?: number; defaultGroup?: string; defaultVnfs?: string } = {},
  ) {
    this.next = opts.firstNumber ?? 0;
  }

  add(partial: Partial<Node> & { mac: string; name: string }): Node {
    const now = Date.now();
    const node = nodeRecord(
      { group: this.opts.defaultGroup ?? 'cluster', vnfs: this.opts.defaultVnfs ?? '', ...partial, mac: normalizeMac(partial.mac) },
      Date.now(),
    );
    this.nodes.set(node.mac, node);
    return node;
  }

  byMac(mac: string): Node | undefined {
    return this.nodes.get(mac);
  }

  byName(name: string): Node | undefined {
    for (const n of this.nodes.values()) if (n.name === name) return n;
    return undefined;
  }

  macForIp(ip: string): string | undefined {
    return this.ipToMac.get(ip);
  }

  register(mac: string, opts: { name?: string; ip?: string }): Node {
    if (this.opts.autoRegister === false) throw new InvalidInput('auto-registration is off (nodes.auto_register: false)');
    let name = opts.name && !this.byName(opts.name) ? opts.name : undefined;
    const pattern = this.opts.namePattern ?? 'n####';
    while (!name) {
      const n = this.next++;
      const candidate = pattern.replace(/#+/, (h) => String(n).padStart(h.length, '0'));
      if (!this.byName(candidate)) name = candidate;
    }
    return this.add({ mac, name, ip: opts.ip ?? '' });
  }

  touch(mac: string, state: string, ip: string | undefined): void {
    const n = this.nodes.get(mac);
    if (!n) return;
    n.state = state;
    if (ip) n.ip = ip;
    n.lastContact = Date.now();
    n.updatedAt = n.lastContact;
  }

  attrsFor(node: Node): Record<string, string> {
    return { ...(this.groupAttrs.get(node.group) ?? {}), ...node.attrs };
  }
}
