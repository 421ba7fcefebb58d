import type { Node } from '../nodes/types.js';
import type { Store } from '../store/store.js';
import { planDisk, type DiskPlan } from './plan.js';

/** The plan of one node from its merged attributes and its last hardware report (CLI and API). */
export function planForNode(store: Pick<Store, 'attrsFor' | 'inventory'>, n: Node): DiskPlan {
  const inv = store.inventory.current(n.mac)?.data;
  return planDisk({ node: n.name, attrs: store.attrsFor(n), disks: inv?.disks ?? [], firmware: inv?.firmware });
}
