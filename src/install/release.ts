import type { BootEvent, Node } from '../nodes/types.js';
import type { PowerOutcome } from '../power/types.js';

/** The edges a release touches; the CLI builds it from the store and the power service. */
export interface ReleaseBackend {
  /** Boot mode once (and attribute wipe_on_boot=yes) for all of them, before any power is touched. */
  mark(nodes: Node[], wipe: boolean): void;
  powerOff(node: Node): Promise<PowerOutcome>;
  record(ev: BootEvent): void;
  map<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]>;
}

export interface ReleaseResult {
  node: string;
  /** Always `once`: the next boot provisions the node again. */
  boot: 'once';
  wipe: boolean;
  power: 'off' | 'failed';
  error: string | null;
}

/**
 * `node release` (Apache VCL's reclaim): the node is marked first, so a node whose power off
 * fails is still reinstalled on its next boot; then it is powered off. One `release.done` (or `release.fail`)
 * event per node.
 */
export async function releaseNodes(nodes: Node[], b: ReleaseBackend, o: { wipe: boolean }): Promise<ReleaseResult[]> {
  b.mark(nodes, o.wipe);
  return b.map(nodes, async (n) => {
    const p = await b.powerOff(n);
    const r: ReleaseResult = { node: n.name, boot: 'once', wipe: o.wipe, power: p.ok ? 'off' : 'failed', error: p.ok ? null : (p.error ?? 'unknown error') };
    b.record({ mac: n.mac, node: n.name, kind: p.ok ? 'release.done' : 'release.fail', detail: { boot: 'once', wipe: o.wipe, power: r.power, error: r.error } });
    return r;
  });
}
