import type { BootEvent, EventSink, Node } from '../nodes/types.js';
import type { Store } from '../store/store.js';
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
  /** What 07-disk-wipe will do on the next boot (null: no wipe). */
  wipeMode: 'quick' | 'full' | null;
  power: 'off' | 'failed';
  error: string | null;
}

/**
 * `node release` (Apache VCL's reclaim): the node is marked first, so a node whose power off
 * fails is still reinstalled on its next boot; then it is powered off. One `release.done` (or `release.fail`)
 * event per node.
 */
export async function releaseNodes(nodes: Node[], b: ReleaseBackend, o: { wipe: boolean; wipeMode?: 'quick' | 'full' | null }): Promise<ReleaseResult[]> {
  const wipeMode = o.wipe ? (o.wipeMode ?? 'quick') : null;
  b.mark(nodes, o.wipe);
  return b.map(nodes, async (n) => {
    const p = await b.powerOff(n);
    const r: ReleaseResult = { node: n.name, boot: 'once', wipe: o.wipe, wipeMode, power: p.ok ? 'off' : 'failed', error: p.ok ? null : (p.error ?? 'unknown error') };
    b.record({ mac: n.mac, node: n.name, kind: p.ok ? 'release.done' : 'release.fail', detail: { boot: 'once', wipe: wipeMode ?? false, power: r.power, error: r.error } });
    return r;
  });
}

/** `mark` over the store: boot mode once, and wipe_on_boot (yes = quick, or full) when asked. */
export function markForRelease(store: Store, nodes: Node[], wipeMode: 'quick' | 'full' | null): void {
  const macs = nodes.map((n) => n.mac);
  store.db.transaction(() => {
    store.nodes.set(macs, 'boot', 'once');
    if (wipeMode) store.nodes.set(macs, 'attr.wipe_on_boot', wipeMode === 'full' ? 'full' : 'yes');
  })();
}

/**
 * The node erased its disks (nodescript 07-disk-wipe reported wipe.done): its own
 * wipe_on_boot is removed, so the next boot does not erase them again. One set on the group
 * stays: the admin asked for every boot of every member to start from blank disks.
 */
export function wipeReportHandler(store: Store, events: EventSink) {
  return (node: Node, kind: string): void => {
    // `node` was read for this report: its own attributes, not the group's.
    if (kind !== 'wipe.done' || node.attrs.wipe_on_boot === undefined) return;
    store.nodes.set([node.mac], 'attr.wipe_on_boot', '');
    events.record({ mac: node.mac, node: node.name, kind: 'wipe.recorded', detail: { attr: 'wipe_on_boot', removed: true } });
  };
}
