/**
 * What the master does with a disk install's life: the node's install.done report is recorded
 * (the revision on its disk, the previous one kept for a rollback) and its boot mode becomes
 * `local`; a local boot handed out while the previous one never reached the OS (no check-in
 * since, no DHCP from the OS, no power action by pxeherd) is a disk boot that failed and came
 * back to PXE: event install.local_boot_failed and node state `local_boot_failed`, never a
 * silent loop.
 */
import type { EventSink, Node } from '../nodes/types.js';
import type { Store } from '../store/store.js';

export function installReportHandler(store: Store, events: EventSink) {
  return (node: Node, kind: string, detail: Record<string, unknown>): void => {
    if (kind !== 'install.done') return;
    const rev = Number(detail.rev);
    const vnfs = typeof detail.vnfs === 'string' ? detail.vnfs : node.vnfs.split('@')[0]!;
    const rec = store.installs.recordDone(node.mac, { vnfs, rev, disk: String(detail.disk ?? ''), firmware: String(detail.firmware ?? '') });
    if (node.boot !== 'disabled') store.nodes.set([node.mac], 'boot', 'local');
    store.nodes.set([node.mac], 'state', 'installed');
    events.record({ mac: node.mac, node: node.name, kind: 'install.recorded', detail: { vnfs, rev, previous: rec.previous ? `${rec.previous.vnfs}@${rec.previous.rev}` : null, boot: node.boot !== 'disabled' ? 'local' : node.boot } });
  };
}

/** Power actions after which a machine comes back to PXE because pxeherd restarted it. */
const RESTARTS = new Set(['power.off', 'power.cycle', 'power.on']);

/**
 * An event after a local boot that shows the machine did not come back to PXE because its disk
 * failed: the OS checked in; the OS asked for an address (a DHCP client that is no network-boot
 * client gets boot "none": the disk's kernel got as far as its network); or pxeherd itself
 * powered the machine off or cycled it (a reboot before the OS checked in is no failed boot).
 */
function diskBootWasNotTheProblem(e: { kind: string; detail?: Record<string, unknown> | null }): boolean {
  const d = e.detail ?? {};
  if (e.kind === 'node.checkin') return true;
  if (e.kind === 'dhcp.ack' && d.boot === 'none') return true;
  return RESTARTS.has(e.kind) && d.skipped !== true;
}

/** Called when a node is handed a local boot script (boot mode local). */
export function localBootServed(store: Store, events: EventSink, node: Node, now = Date.now()): void {
  // Events are written in batches: the check-in that would clear this one must be on disk.
  store.events.flush();
  const r = store.installs.localBoot(node.mac, (since) => store.events.query({ mac: node.mac, since, limit: 2000 }).some(diskBootWasNotTheProblem), now);
  if (!r.failed || !r.install) return;
  store.nodes.set([node.mac], 'state', 'local_boot_failed');
  events.record({
    mac: node.mac,
    node: node.name,
    kind: 'install.local_boot_failed',
    detail: {
      vnfs: r.install.vnfs,
      rev: r.install.rev,
      failures: r.failures,
      hint: `the disk boot came back to PXE without the OS checking in: see the console; reinstall with pxeherd node set boot provision ${node.name} (or node reinstall)`,
    },
  });
}
