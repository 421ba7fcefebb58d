/**
 * The server's in-memory view of leases: every active lease is loaded at start and every
 * decision updates it at once, so two DISCOVERs in the same event-loop turn never get the same
 * address even before the batch reaches the disk. Older (expired, released) records are read
 * through from the LeaseStore on demand.
 */
import type { Lease } from '../nodes/types.js';
import type { LeaseStore } from './backend.js';
import { ipToInt } from './ip.js';

export function isActive(l: Lease | undefined, now: number): l is Lease {
  return !!l && (l.state === 'bound' || l.state === 'offered') && l.expiresAt > now;
}

export class LeaseTable {
  private readonly mac = new Map<string, Lease>();
  /** Current record per address (any state); activity is checked by the reader. */
  private readonly ip = new Map<number, Lease>();
  /**
   * MACs and addresses the store was asked about and has no record of. Only this server writes
   * leases, so a miss stays a miss until we set one: remembering it saves a query per packet
   * from every new client.
   */
  private readonly noMac = new Set<string>();
  private readonly noIp = new Set<number>();

  constructor(private readonly store: Pick<LeaseStore, 'byMac' | 'byIp' | 'active'>) {}

  load(now: number): number {
    const list = this.store.active(now);
    for (const l of list) this.set(l);
    return list.length;
  }

  /** The client's lease record, active or not; memory first, then the store. */
  get(mac: string): Lease | undefined {
    const m = this.mac.get(mac);
    if (m || this.noMac.has(mac)) return m;
    const s = this.store.byMac(mac);
    if (s) this.set(s);
    else this.noMac.add(mac);
    return s;
  }

  /** Active lease holding this address. Memory is authoritative: all active leases are in it. */
  holder(ip: number, now: number): Lease | undefined {
    const l = this.ip.get(ip);
    return isActive(l, now) ? l : undefined;
  }

  /** Whoever had this address last, even if expired (so a returning client can get it back). */
  lastOwner(ip: number, ipText: string): Lease | undefined {
    const m = this.ip.get(ip);
    if (m || this.noIp.has(ip)) return m;
    const s = this.store.byIp(ipText);
    if (!s) this.noIp.add(ip);
    return s;
  }

  set(l: Lease): void {
    const prev = this.mac.get(l.mac);
    if (prev && prev.ip !== l.ip) {
      const p = ipToInt(prev.ip);
      if (p !== undefined && this.ip.get(p) === prev) this.ip.delete(p);
    }
    this.mac.set(l.mac, l);
    this.noMac.delete(l.mac);
    const n = ipToInt(l.ip);
    if (n !== undefined) {
      this.ip.set(n, l);
      this.noIp.delete(n);
    }
  }

  /**
   * Another server (through the shared database) changed this client's record: take it as is,
   * or forget it (undefined) so the next read goes to the store.
   */
  replace(mac: string, l: Lease | undefined): void {
    if (l) return this.set(l);
    const prev = this.mac.get(mac);
    this.mac.delete(mac);
    this.noMac.delete(mac);
    const n = prev && ipToInt(prev.ip);
    if (n !== undefined && this.ip.get(n) === prev) this.ip.delete(n);
  }

  /** Forget an unpersisted offer (the client chose another server). */
  dropOffer(mac: string): void {
    const l = this.mac.get(mac);
    if (!l || l.state !== 'offered') return;
    this.mac.delete(mac);
    const n = ipToInt(l.ip);
    if (n !== undefined && this.ip.get(n) === l) this.ip.delete(n);
  }
}
