import type { Store } from '../store/store.js';
import type { PowerService } from '../power/service.js';
import type { KeyPair } from '../remote/keys.js';
import { sshRun } from '../remote/ssh.js';
import { nodeTarget } from '../remote/target.js';
import type { ReinstallBackend } from './reinstall.js';

/**
 * The reinstall edges over the store, a power service and pxeherd's SSH key: what
 * `node reinstall`, `node rollback` and POST /api/v1/nodes/NODE/rollback drive.
 */
export function storeReinstallBackend(o: { store: Store; statedir: string; power: PowerService; key: () => KeyPair }): ReinstallBackend {
  const { store, power, key } = o;
  return {
    setBootOnce: (ns) => void store.nodes.set(ns.map((n) => n.mac), 'boot', 'once'),
    setBootPxe: (n) => power.run(n, 'pxe'),
    powerCycle: (n) => power.cycleOrOn(n),
    eventsSince: (n, since) => store.events.query({ mac: n.mac, since, order: 'asc', limit: 100000 }),
    probeSsh: async (n0, timeoutMs) => {
      // Read afresh: a node seen for the first time got its address during this boot.
      const n = store.nodes.byMac(n0.mac) ?? n0;
      const r = await sshRun(nodeTarget(n, store.attrsFor(n), key(), o.statedir), 'true', { timeoutMs });
      if (r.exit !== 0) throw new Error(`"true" over SSH ended with ${r.exit === null ? 'no status' : `exit code ${r.exit}`}`);
    },
    record: (ev) => store.events.record(ev),
    now: () => Date.now(),
    sleep: (ms) => new Promise((res) => setTimeout(res, ms)),
  };
}
