/**
 * In-memory DhcpBackend: for tests, the namespace runner and the benchmark's node side. Not
 * durable (except through an optional LeaseStore passed in). The real one is the store's.
 */
import type { BootEvent, Lease, Node } from '../nodes/types.js';
import { nodeRecord } from '../nodes/types.js';
import type { DhcpBackend, ExplainBackend, LeaseStore } from './backend.js';

export class MemoryLeaseStore implements LeaseStore {
  readonly leases = new Map<string, Lease>();
  /** How many putMany transactions ran (tests check batching). */
  batches = 0;

  byMac(mac: string): Lease | undefined {
    const l = this.leases.get(mac);
    return l ? { ...l } : undefined;
  }

  byIp(ip: string): Lease | undefined {
    let best: Lease | undefined;
    for (const l of this.leases.values()) if (l.ip === ip && (!best || l.updatedAt > best.updatedAt)) best = l;
    return best ? { ...best } : undefined;
  }

  active(now: number): Lease[] {
    return [...this.leases.values()].filter((l) => (l.state === 'bound' || l.state === 'offered') && l.expiresAt > now).map((l) => ({ ...l }));
  }

  putMany(leases: Lease[]): void {
    this.batches++;
    for (const l of leases) this.leases.set(l.mac, { ...l });
  }
}

export interface MemoryBackendOptions {
  autoRegister?: boolean;
  /** Nodes known from the start (mac -> partial node). */
  nodes?: Array<Partial<Node> & { mac: string }>;
  leases?: LeaseStore;
  now?: () => number;
}

export class MemoryDhcpBackend implements DhcpBackend, ExplainBackend {
  readonly nodes = new Map<string, Node>();
  readonly events: { record(ev: BootEvent): void; list: BootEvent[] };
  readonly leases: LeaseStore;
  readonly boundCalls: Array<{ mac: string; ip: string }> = [];
  autoRegister: boolean;
  private seq = 0;
  /** ip -> mac of nodes with a fixed address; an index so pool scans stay O(1) per address. */
  private readonly reserved = new Map<string, string>();
  private readonly now: () => number;

  constructor(opts: MemoryBackendOptions = {}) {
    this.autoRegister = opts.autoRegister ?? true;
    this.leases = opts.leases ?? new MemoryLeaseStore();
    this.now = opts.now ?? Date.now;
    const list: BootEvent[] = [];
    // Bounded so a fuzz run or a benchmark does not grow memory without limit.
    this.events = {
      list,
      record(ev: BootEvent) {
        list.push(ev);
        if (list.length > 10000) list.splice(0, 5000);
      },
    };
    for (const n of opts.nodes ?? []) this.addNode(n);
  }

  addNode(p: Partial<Node> & { mac: string }): Node {
    const node = this.makeNode(p);
    this.nodes.set(node.mac, node);
    if (node.ip) this.reserved.set(node.ip, node.mac);
    return node;
  }

  /** Change a node's fixed address (keeps the reservation index right). */
  setIp(mac: string, ip: string): void {
    const n = this.nodes.get(mac);
    if (!n) return;
    if (n.ip && this.reserved.get(n.ip) === mac) this.reserved.delete(n.ip);
    n.ip = ip;
    if (ip) this.reserved.set(ip, mac);
  }

  private makeNode(p: Partial<Node> & { mac: string }): Node {
    return nodeRecord({ ...p, name: p.name ?? `n${String(this.seq++).padStart(4, '0')}` }, this.now());
  }


  findNode(mac: string): Node | undefined {
    return this.nodes.get(mac);
  }

  lookupNode(mac: string): { node: Node; registered: boolean } | undefined {
    const n = this.nodes.get(mac);
    if (n) return { node: n, registered: false };
    if (!this.autoRegister) return undefined;
    return { node: this.addNode({ mac }), registered: true };
  }

  reservationOwner(ip: string): string | undefined {
    return this.reserved.get(ip);
  }

  bound(mac: string, ip: string): void {
    this.boundCalls.push({ mac, ip });
    if (this.boundCalls.length > 10000) this.boundCalls.splice(0, 5000);
    const n = this.nodes.get(mac);
    if (n) n.lastContact = this.now();
  }
}
