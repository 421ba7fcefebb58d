/**
 * In-memory Dhcp6Backend for tests and the namespace runner (not durable). The real one is the
 * store's (src/server/backends.ts).
 */
import type { BootEvent, Node } from '../nodes/types.js';
import { nodeRecord } from '../nodes/types.js';
import type { Dhcp6Backend, Lease6, Lease6Store } from './backend.js';

export class MemoryLease6Store implements Lease6Store {
  readonly leases = new Map<string, Lease6>();
  batches = 0;
  byKey(duid: string, iaid: number, mac: string): Lease6 | undefined {
    const l = this.leases.get(`${duid}/${iaid}/${mac}`);
    return l && { ...l };
  }
  byIp(ip: string): Lease6 | undefined {
    let best: Lease6 | undefined;
    for (const l of this.leases.values()) if (l.ip === ip && (!best || l.updatedAt > best.updatedAt)) best = l;
    return best && { ...best };
  }
  byDuid(duid: string): Lease6 | undefined {
    let best: Lease6 | undefined;
    for (const l of this.leases.values()) if (l.duid === duid && (!best || l.updatedAt > best.updatedAt)) best = l;
    return best && { ...best };
  }
  forMac(mac: string): Lease6[] {
    return [...this.leases.values()].filter((l) => l.mac === mac).map((l) => ({ ...l }));
  }
  active(now: number): Lease6[] {
    return [...this.leases.values()].filter((l) => (l.state === 'bound' || l.state === 'offered') && l.expiresAt > now).map((l) => ({ ...l }));
  }
  putMany(leases: Lease6[]): void {
    this.batches++;
    for (const l of leases) {
      // An address belongs to one IA: a new holder evicts the old record, as the SQLite store does.
      const k = `${l.duid}/${l.iaid}/${l.mac}`;
      for (const [other, o] of this.leases) if (o.ip === l.ip && other !== k) this.leases.delete(other);
      this.leases.set(k, { ...l });
    }
  }
}

export class MemoryDhcp6Backend implements Dhcp6Backend {
  readonly nodes = new Map<string, Node>();
  readonly leases: Lease6Store;
  readonly list: BootEvent[] = [];
  readonly events = { record: (ev: BootEvent) => void (this.list.length < 10_000 && this.list.push(ev)) };
  readonly boundCalls: Array<{ mac: string; ip: string }> = [];
  neighbours = new Map<string, string>();
  private seq = 0;

  constructor(opts: { autoRegister?: boolean; nodes?: Array<Partial<Node> & { mac: string }>; leases?: Lease6Store } = {}) {
    this.autoRegister = opts.autoRegister ?? true;
    this.leases = opts.leases ?? new MemoryLease6Store();
    for (const n of opts.nodes ?? []) this.nodes.set(n.mac, nodeRecord({ name: `n${String(this.seq++).padStart(4, '0')}`, ...n }));
  }
  autoRegister: boolean;

  lookupNode(mac: string): { node: Node; registered: boolean } | undefined {
    const n = this.nodes.get(mac);
    if (n) return { node: n, registered: false };
    if (!this.autoRegister) return undefined;
    const node = nodeRecord({ mac, name: `n${String(this.seq++).padStart(4, '0')}` });
    this.nodes.set(mac, node);
    this.events.record({ kind: 'node.register', mac, node: node.name, detail: { via: 'dhcp6' } });
    return { node, registered: true };
  }
  neighbourMac(address: string): string | undefined {
    return this.neighbours.get(address.replace(/%.*$/, ''));
  }
  bound(mac: string, ip: string): void {
    this.boundCalls.push({ mac, ip });
  }
}
