import type { Store } from '../store/store.js';
import type { QueryContext } from '../nodes/query.js';
import type { Node } from '../nodes/types.js';
import { checkinInterval, isStale } from './inventory.js';
import { rootPasswordState } from '../security/secrets.js';

/**
 * The one QueryContext built from the store, shared by the CLI (CliContext.nodes) and the
 * server (the admin NodeService): `hw:` terms see the current report's facts, `state:stale`
 * the check-in rule.
 */
export function queryContextFor(store: Store, now: () => number = Date.now): QueryContext {
  return {
    hardware: (mac) => store.inventory.facts(mac),
    facts: (mac) => {
      const n = store.nodes.byMac(mac);
      return n ? { stale: staleFor(store, n, now()) ? 1 : 0 } : undefined;
    },
  };
}

export function staleFor(store: Store, n: Node, now: number): boolean {
  return isStale(n.lastContact, store.attrsFor(n), now);
}

/** The `hardware` key of node JSON (null when the node never reported). */
export function hardwareJson(store: Store, mac: string) {
  const cur = store.inventory.current(mac);
  if (!cur) return null;
  const prev = store.inventory.previous(mac);
  return {
    version: cur.version,
    reported: new Date(cur.time).toISOString(),
    seen: new Date(cur.seen).toISOString(),
    facts: cur.facts,
    report: cur.data,
    previous: prev ? { version: prev.version, reported: new Date(prev.time).toISOString(), facts: prev.facts } : null,
  };
}

/** The `health` key of node JSON: the latest check-in's values (null when none since the last replace). */
export function healthJson(store: Store, n: Node) {
  const h = store.inventory.health(n.mac);
  // `node replace` clears last_contact; health carried over from the old machine is not this one's.
  if (!h || n.lastContact === null) return null;
  return { time: new Date(h.time).toISOString(), uptime: h.uptime ?? null, load: h.load ?? null, memfree_kb: h.memfree_kb ?? null };
}

/**
 * The extras nodeJson takes: `stale` always, `hardware` and `health` when `detail` (node show,
 * GET /api/v1/nodes/NODE). Also the check-in interval in force, for display.
 */
export function nodeExtras(store: Store, n: Node, opts: { detail?: boolean; now?: number } = {}) {
  const now = opts.now ?? Date.now();
  const stale = staleFor(store, n, now);
  if (!opts.detail) return { stale };
  const effective = store.attrsFor(n);
  return { stale, hardware: hardwareJson(store, n.mac), health: healthJson(store, n), checkinInterval: checkinInterval(effective), rootPassword: rootPasswordState(effective) };
}
