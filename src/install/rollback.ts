/**
 * `node rollback`: a node installed to disk goes back to the install before the one on its
 * disk (node_installs keeps both, src/store/installs.ts). No second way of choosing a
 * revision: the node's vnfs field is pinned to the previous one (NAME@REV, the pin every boot
 * already honours, over attribute vnfs_rev and the VNFS's current revision), and the node is
 * reinstalled as `node reinstall` does it (boot mode once, next boot PXE, power cycle, and with
 * --wait each stage followed to ready and SSH).
 *
 * When the node reports install.done, what was on the disk becomes the previous install: a
 * rollback swaps the two, and a rollback of a rollback swaps them back (the disk holds what it
 * held before the first, and the node stays pinned to it). It never walks further back: to
 * install an older revision, pin it (node set vnfs NAME@REV) and reinstall.
 *
 * Everything is checked for every node before anything is changed: a node not installed to
 * disk, one with no earlier install recorded, or one whose earlier revision is gone (pruned,
 * or its packed files missing) refuses the whole command and changes nothing.
 */
import { InvalidInput } from '../nodes/mac.js';
import type { BootEvent, Node } from '../nodes/types.js';
import type { NodeInstall } from '../store/installs.js';
import type { Store } from '../store/store.js';
import { reinstall, type NodeOutcome, type ReinstallBackend, type ReinstallOptions } from '../lifecycle/reinstall.js';

/** A rollback that cannot be done as asked (the CLI's exit 2; the API's 409): nothing was changed. */
export class RollbackRefused extends InvalidInput {
  constructor(message: string) {
    super(message, 'nodes');
    this.name = 'RollbackRefused';
  }
}

export interface RevisionRef {
  vnfs: string;
  rev: number;
}

export interface RollbackPlan {
  node: Node;
  /** On the disk now. */
  from: RevisionRef;
  /** The install before it: what the node is reinstalled with. */
  to: RevisionRef;
  /** The node's vnfs field before and after the pin. */
  vnfsBefore: string;
  vnfsAfter: string;
}

/** What deciding a rollback reads; `storeRollbackLookups` (the CLI, the API) builds it from the store. */
export interface RollbackLookups {
  install(mac: string): NodeInstall | undefined;
  attrsFor(node: Node): Record<string, string>;
  /** Why revision REV of VNFS NAME cannot be installed any more ("was pruned on ..."), or undefined when it can. */
  revisionProblem(name: string, rev: number): string | undefined;
}

const ref = (r: RevisionRef) => `${r.vnfs} r${r.rev}`;

/** The rollback of one node, or the reason there is none (RollbackRefused). Pure over `l`. */
export function planRollback(node: Node, l: RollbackLookups): RollbackPlan {
  const n = node.name;
  if (!node.enabled) throw new RollbackRefused(`${n} is disabled: pxeherd node enable ${n} first`);
  const i = l.install(node.mac);
  const install = l.attrsFor(node).install ?? 'stateless';
  if (!i) {
    throw new RollbackRefused(
      install === 'disk'
        ? `${n} has no install on its disk that pxeherd recorded (no install.done yet): nothing to roll back; install it first with pxeherd node reinstall ${n}`
        : `${n} is not installed to disk (install=${install}): a rollback reinstalls a disk with the revision installed before; a stateless node boots whatever its vnfs field selects (pxeherd node set vnfs NAME@REV ${n})`,
    );
  }
  if (install !== 'disk') {
    throw new RollbackRefused(`${n} has install=${install} now: reinstalled, it would boot stateless instead of rewriting its disk (which holds ${ref(i)}); set it back first: pxeherd node set attr.install=disk ${n}`);
  }
  const from = { vnfs: i.vnfs, rev: i.rev };
  if (!i.previous) throw new RollbackRefused(`${n}: its disk holds ${ref(from)}, the first install pxeherd recorded for it: there is no earlier revision to roll back to`);
  const to = { vnfs: i.previous.vnfs, rev: i.previous.rev };
  if (to.vnfs === from.vnfs && to.rev === from.rev) throw new RollbackRefused(`${n}: the install before ${ref(from)} was the same revision: nothing to roll back to (to rewrite the disk anyway: pxeherd node reinstall ${n})`);
  const problem = l.revisionProblem(to.vnfs, to.rev);
  if (problem) {
    throw new RollbackRefused(
      `${n}: the install before ${ref(from)} was ${ref(to)}, and ${problem}: it cannot be installed again. Nothing was changed. ` +
        `Pick a revision that exists (pxeherd vnfs revisions ${to.vnfs}), then: pxeherd node set vnfs ${to.vnfs}@REV ${n} && pxeherd node reinstall ${n}`,
    );
  }
  return { node, from, to, vnfsBefore: node.vnfs, vnfsAfter: `${to.vnfs}@${to.rev}` };
}

/** Every node's plan, or one RollbackRefused naming every node refused (a line each). */
export function planRollbacks(nodes: Node[], l: RollbackLookups): RollbackPlan[] {
  const plans: RollbackPlan[] = [];
  const refused: string[] = [];
  for (const n of nodes) {
    try {
      plans.push(planRollback(n, l));
    } catch (e) {
      if (!(e instanceof RollbackRefused)) throw e;
      refused.push(e.message);
    }
  }
  if (refused.length) throw new RollbackRefused(refused.length === 1 ? refused[0]! : `${refused.length} of ${nodes.length} node(s) cannot be rolled back (nothing was changed):\n  ${refused.join('\n  ')}`);
  return plans;
}

export interface RollbackBackend extends ReinstallBackend {
  /** Pin every node's vnfs field to its plan's `vnfsAfter`, all in one transaction. */
  pin(plans: RollbackPlan[]): void;
  /** What is recorded on the node's disk now (for --wait: did the rollback land?). */
  install(mac: string): NodeInstall | undefined;
}

export interface RollbackOutcome extends NodeOutcome {
  from: RevisionRef;
  to: RevisionRef;
  vnfsBefore: string;
  vnfsAfter: string;
}

/** One line for the event detail and the CLI: `deb12@2`. */
export const pinOf = (r: RevisionRef) => `${r.vnfs}@${r.rev}`;

/**
 * Pin, one install.rollback event per node, then reinstall. With wait, a node that reached
 * ready is checked against what it reported: its disk must now hold the rollback's revision,
 * installed during this run (else `failed`, event install.rollback.fail).
 */
export async function rollbackNodes(plans: RollbackPlan[], b: RollbackBackend, o: ReinstallOptions): Promise<RollbackOutcome[]> {
  b.pin(plans);
  for (const p of plans) {
    const ev: BootEvent = { mac: p.node.mac, node: p.node.name, kind: 'install.rollback', detail: { from: pinOf(p.from), to: pinOf(p.to), vnfsBefore: p.vnfsBefore, vnfsAfter: p.vnfsAfter } };
    b.record(ev);
    o.onProgress?.(`${p.node.name}: rolling back ${ref(p.from)} -> ${ref(p.to)} (vnfs ${p.vnfsBefore || '-'} -> ${p.vnfsAfter})`);
  }
  const start = b.now();
  const outcomes = await reinstall(
    plans.map((p) => ({ ...p.node, vnfs: p.vnfsAfter })),
    b,
    o,
  );
  return outcomes.map((out, k) => {
    const p = plans[k]!;
    const r: RollbackOutcome = { ...out, from: p.from, to: p.to, vnfsBefore: p.vnfsBefore, vnfsAfter: p.vnfsAfter };
    if (out.result !== 'ready') return r;
    const i = b.install(p.node.mac);
    const landed = i && i.installedAt >= start && i.vnfs === p.to.vnfs && i.rev === p.to.rev;
    if (landed) return { ...r, message: `${r.message}; its disk holds ${ref(p.to)} (before it: ${ref(p.from)})` };
    const message = !i || i.installedAt < start ? `reached ready without reporting install.done: its disk was not rewritten (still ${i ? ref(i) : 'nothing recorded'})` : `its disk holds ${ref(i)}, not ${ref(p.to)}`;
    b.record({ mac: p.node.mac, node: p.node.name, kind: 'install.rollback.fail', detail: { to: pinOf(p.to), error: message } });
    o.onProgress?.(`${p.node.name}: FAILED: ${message}`);
    return { ...r, result: 'failed', stage: 'ready', message };
  });
}

/** The lookups over the store; `images` checks a revision's packed files (ImageService.missingArtifact). */
export function storeRollbackLookups(store: Store, images: { missingArtifact(name: string, rev: number): string | undefined }): RollbackLookups {
  return {
    install: (mac) => store.installs.get(mac),
    attrsFor: (n) => store.attrsFor(n),
    revisionProblem: (name, rev) => {
      if (!store.vnfs.get(name)) return `VNFS "${name}" no longer exists`;
      if (!store.vnfs.revision(name, rev)) {
        // The prune that removed it, when the event log still has it.
        const pruned = store.events
          .query({ kind: 'vnfs.prune', limit: 1000 })
          .find((e) => e.detail?.vnfs === name && Array.isArray(e.detail?.removed) && (e.detail.removed as unknown[]).includes(rev));
        return pruned ? `revision ${rev} of VNFS "${name}" was pruned on ${new Date(pruned.time ?? 0).toISOString()} (vnfs prune)` : `revision ${rev} of VNFS "${name}" no longer exists (pruned)`;
      }
      const missing = images.missingArtifact(name, rev);
      return missing ? `revision ${rev} of VNFS "${name}" is missing ${missing} on disk` : undefined;
    },
  };
}

/** The pin over the store: one transaction for all nodes. */
export function pinInStore(store: Store, plans: RollbackPlan[]): void {
  store.db.transaction(() => {
    for (const p of plans) store.nodes.set([p.node.mac], 'vnfs', p.vnfsAfter);
  })();
}
