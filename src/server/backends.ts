import type { Config } from '../config/schema.js';
import type { Store } from '../store/store.js';
import type { BootEvent, EventSink } from '../nodes/types.js';
import type { DhcpBackend, ExplainBackend } from '../dhcp/backend.js';
import type { Dhcp6Backend } from '../dhcp6/backend.js';
import { neighbourMac } from '../dhcp6/neighbour.js';
import type { ProvisionBackend } from '../provision/backend.js';
import type { NamingPolicy } from '../store/nodes.js';
import { InvalidInput } from '../nodes/mac.js';
import type { Logger } from '../util/log.js';
import { arpLookup } from '../provisiond/arp.js';
import { peerIp } from '../util/net.js';
import type { ClientArchs } from '../boot/loader.js';

/** The SQLite store seen through each protocol server's narrow interface. */

export function namingPolicy(config: Config): NamingPolicy {
  const n = config.nodes;
  return { pattern: n.name_pattern, firstNumber: n.first_number, defaultGroup: n.default_group, defaultVnfs: n.default_vnfs };
}

/**
 * The event sink every protocol server reports to. It completes events (a TFTP transfer knows
 * only the peer's address: the lease gives the MAC, the MAC gives the node), writes one
 * structured log line per event, and hands them to the store (batched) and to subscribers.
 */
export function eventSink(store: Store, log?: Logger, also: ((ev: BootEvent) => void)[] = []): EventSink {
  const macOf = (ip: string): string | undefined =>
    ip.includes(':') ? store.leases6.byIp(ip.replace(/%.*$/, ''))?.mac : (store.leases.byIp(ip)?.mac ?? store.nodes.macByIp(ip));
  return {
    record(ev: BootEvent) {
      // Built field by field, not spread: one object shape for every event (this runs four or
      // five times per DHCP exchange, and a spread of differently shaped events costs more).
      const e: BootEvent = { time: ev.time ?? Date.now(), mac: ev.mac, node: ev.node, kind: ev.kind, detail: ev.detail };
      if (e.mac === '') {
        // Attributed by the caller through attribute(): no node at that address.
        e.mac = undefined;
      } else if (!e.mac) {
        const d = (e.detail ?? {}) as Record<string, unknown>;
        const ip = typeof d.ip === 'string' ? peerIp(d.ip) : typeof d.peer === 'string' ? peerIp(d.peer) : undefined;
        if (ip) e.mac = macOf(ip);
      }
      // Only the name: this runs for several events of every DHCP exchange. `node: ''`: the
      // caller looked it up already and the MAC was no node (the DHCP slice, dhcpBackend).
      if (e.node === '') e.node = undefined;
      else if (e.mac && !e.node) e.node = store.nodes.nameByMac(e.mac);
      // The store redacts secrets; the log line and the subscribers see the event as stored.
      const stored = store.events.record(e);
      if (log) {
        const level = /\.(fail|error|denied|corrupt|rejected)$|^nodescript\.fail/.test(stored.kind) ? 'warn' : 'info';
        // The line's object only when it is written (log.level warn: not for the DHCP steps).
        if (log.isLevelEnabled(level)) log[level]({ event: stored.kind, node: stored.node, mac: stored.mac, ...stored.detail }, stored.kind);
      }
      for (const fn of also) fn(stored);
    },
    attribute(address: string) {
      const ip = peerIp(address);
      const mac = ip ? macOf(ip) : undefined;
      return mac ? { mac, node: store.nodes.nameByMac(mac) } : { mac: '' };
    },
  };
}

export function dhcpBackend(store: Store, config: Config, events: EventSink, archs?: ClientArchs): DhcpBackend {
  const policy = namingPolicy(config);
  // MACs the running slice found not to be nodes (isKnown, asked inside its transaction, where
  // nothing else writes): their lookup goes straight to registration. Registration reads the MAC
  // itself, so this saves a query per new MAC and can never give a wrong answer. Emptied with
  // each slice.
  const newInSlice = new Set<string>();
  // What the running slice learned of each MAC (isKnown, lookupNode): its node's name, or null
  // for no node. Inside the slice's transaction only this slice writes nodes, so the answer
  // holds until the slice itself registers the MAC (which updates it). Emptied with each slice.
  const sliceNames = new Map<string, string | null>();
  // The slice's events, in order, recorded at its end (still in its transaction). An event whose
  // node the slice did not know when it happened (dhcp.request comes before its node lookup)
  // waits for the lookup that follows in the same exchange instead of a query of its own: the
  // sink asked the store for the name of two events of every DORA, now of none.
  let sliceEvents: { ev: BootEvent; unresolved: boolean }[] | undefined;
  const sliceGroupAttrs = new Map<string, Record<string, string>>();
  const settleEvents = () => {
    const queued = sliceEvents;
    sliceEvents = undefined;
    if (!queued) return;
    for (const q of queued) {
      if (q.unresolved) {
        const name = sliceNames.get(q.ev.mac!);
        // A name the slice found (not registered after the event): the node was there already.
        // Otherwise the sink asks the store, as for any event.
        q.ev.node = name ?? undefined;
      }
      events.record(q.ev);
    }
  };
  const sliceSink: EventSink = {
    record(ev) {
      if (!sliceEvents) return events.record(ev);
      const e: BootEvent = { time: ev.time ?? Date.now(), mac: ev.mac, node: ev.node, kind: ev.kind, detail: ev.detail };
      let unresolved = false;
      if (e.mac && !e.node) {
        const name = sliceNames.get(e.mac);
        if (name === undefined) unresolved = true;
        else e.node = name ?? '';
      }
      sliceEvents.push({ ev: e, unresolved });
    },
    attribute: events.attribute?.bind(events),
  };
  /** The slice registered `mac`: its earlier events named no node (there was none then). */
  const registeredInSlice = (mac: string, name: string) => {
    if (sliceEvents) for (const q of sliceEvents) if (q.unresolved && q.ev.mac === mac) ((q.unresolved = false), (q.ev.node = ''));
    sliceNames.set(mac, name);
  };
  const slice = store.db.transaction((work: () => void) => {
    sliceEvents = [];
    work();
    settleEvents();
    store.events.flushIfDue();
  });
  return {
    lookupNode(mac, hint) {
      if (!newInSlice.delete(mac)) {
        const existing = store.nodes.byMac(mac);
        if (existing) {
          if (sliceEvents) sliceNames.set(mac, existing.name);
          return { node: existing, registered: false };
        }
      }
      if (!config.nodes.auto_register) {
        if (sliceEvents) sliceNames.set(mac, null);
        return undefined;
      }
      const r = store.nodes.register(mac, policy, { preferredName: hint.hostname });
      if (sliceEvents) {
        if (r.created) registeredInSlice(mac, r.node.name);
        else sliceNames.set(mac, r.node.name);
      }
      if (r.created) sliceSink.record({ mac, node: r.node.name, kind: 'node.register', detail: { via: 'dhcp' } });
      return { node: r.node, registered: r.created };
    },
    isKnown(mac) {
      const name = store.nodes.nameByMac(mac);
      if (sliceEvents) sliceNames.set(mac, name ?? null);
      if (name !== undefined) return true;
      newInSlice.add(mac);
      return false;
    },
    // Only the MAC (asked for each address the handler considers): not the node and its attributes.
    reservationOwner: (ip) => store.nodes.macByIp(ip),
    bound: (mac, ip) => store.nodes.touchAddress(mac, ip),
    leases: store.leases,
    events: sliceSink,
    // One IMMEDIATE transaction per slice of queued datagrams: registrations and leases
    // nest in it as savepoints, so a slice costs one commit instead of one per new MAC.
    // Pending events (dhcp.discover/offer/request/ack, node.register) are written in a slice's
    // transaction when they are due: no separate commit for the event log.
    batch(work) {
      try {
        slice.immediate(work);
      } finally {
        // A slice that failed (nothing of it was committed or sent) still reports what it saw.
        settleEvents();
        newInSlice.clear();
        sliceNames.clear();
        sliceGroupAttrs.clear();
      }
    },
    // Group attributes once per group per slice (nothing else writes them during its transaction).
    attrsFor(node) {
      if (!sliceEvents || !node.group) return store.attrsFor(node);
      let g = sliceGroupAttrs.get(node.group);
      if (!g) sliceGroupAttrs.set(node.group, (g = store.groups.attrsOf(node.group)));
      return { ...g, ...node.attrs };
    },
    noteClientArch: archs ? (mac, arch) => archs.note(mac, arch) : undefined,
  };
}

/** DHCPv6: nodes by MAC as for DHCPv4 (same registration), leases in leases6. */
export function dhcp6Backend(store: Store, config: Config, events: EventSink): Dhcp6Backend {
  const v4 = dhcpBackend(store, config, events);
  return {
    lookupNode(mac, hint) {
      const existing = store.nodes.byMac(mac);
      if (existing) return { node: existing, registered: false };
      if (!config.nodes.auto_register) return undefined;
      const r = store.nodes.register(mac, namingPolicy(config), { preferredName: hint.hostname });
      if (r.created) events.record({ mac, node: r.node.name, kind: 'node.register', detail: { via: 'dhcp6' } });
      return { node: r.node, registered: r.created };
    },
    neighbourMac,
    bound: (mac, ip) => v4.bound(mac, ip),
    leases: store.leases6,
    events,
  };
}

export function explainBackend(store: Store): ExplainBackend {
  return {
    findNode: (mac) => store.nodes.byMac(mac),
    reservationOwner: (ip) => store.nodes.byIp(ip)?.mac,
    leases: store.leases,
    attrsFor: (node) => store.attrsFor(node),
  };
}

/** Registration events are the provision service's own (node.register). */
export function provisionBackend(store: Store, config: Config, events: EventSink, tokens?: { issueToken(mac: string): string }): ProvisionBackend {
  const policy = namingPolicy(config);
  return {
    byMac: (mac) => store.nodes.byMac(mac),
    byName: (name) => store.nodes.byName(name),
    macForIp: (ip) => (ip.includes(':') ? store.leases6.byIp(ip)?.mac : (store.leases.byIp(ip)?.mac ?? store.nodes.byIp(ip)?.mac ?? arpLookup(ip))),
    register(mac, opts) {
      if (!config.nodes.auto_register) {
        throw new InvalidInput(`unknown node ${mac} and nodes.auto_register is off: add it with "pxeherd node add ${mac}"`, 'mac');
      }
      const r = store.nodes.register(mac, policy, { preferredName: opts.name, ip: opts.ip });
      return r.node;
    },
    touch: (mac, state, ip) => store.nodes.touch(mac, state, ip),
    recordHealth: (mac, h) => store.inventory.recordHealth(mac, h),
    issueToken: tokens ? (mac) => tokens.issueToken(mac) : undefined,
    attrsFor: (node) => store.attrsFor(node),
    events,
  };
}
