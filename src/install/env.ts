/**
 * The disk plan as the nodescripts see it (INSTALL_* variables on the master). Pure. The
 * shipped scripts 08-disk-plan, 20-disk-install and 85-disk-boot turn these into the shell
 * that stage one runs; `pxeherd script render NODE` shows the result.
 *
 *   INSTALL            disk (unset for a stateless node)
 *   INSTALL_ERROR      why there is no plan (no disk matches, the plan does not fit ...);
 *                      the node then stops before anything is downloaded or written
 *   INSTALL_ERROR_ATTR the attribute to change; INSTALL_ERROR_URL the error, URL-encoded (for a report)
 *   INSTALL_DISK       /dev/vda          INSTALL_FIRMWARE  bios | uefi
 *   INSTALL_SFDISK     what sfdisk reads (several lines)
 *   INSTALL_PARTS      one line per partition: NUMBER NAME DEVICE FS MOUNT MKFS... ('-' for none)
 */
import { PlanError, type DiskPlan } from './plan.js';

export function planEnv(plan: DiskPlan): Record<string, string> {
  return {
    INSTALL: 'disk',
    INSTALL_DISK: plan.disk.path,
    INSTALL_FIRMWARE: plan.firmware,
    INSTALL_SFDISK: plan.sfdisk,
    INSTALL_PARTS: plan.partitions.map((p) => [p.number, p.name, p.device, p.fs ?? '-', p.mount ?? '-', ...(p.mkfs ?? ['-'])].join(' ')).join('\n'),
  };
}

/** INSTALL_* for a node: nothing unless install=disk on a VNFS with a root filesystem. */
export function installEnv(attrs: Record<string, string>, root: boolean, plan: () => DiskPlan): Record<string, string> {
  if (attrs.install !== 'disk') return {};
  if (!root) {
    const error = 'install=disk needs a VNFS with a root filesystem (vnfs build or vnfs import): this VNFS is a kernel and an initrd only';
    return { INSTALL: 'disk', INSTALL_ERROR: error, INSTALL_ERROR_ATTR: 'vnfs', INSTALL_ERROR_URL: encodeURIComponent(error) };
  }
  try {
    return planEnv(plan());
  } catch (e) {
    if (!(e instanceof PlanError)) throw e;
    return { INSTALL: 'disk', INSTALL_ERROR: e.message, INSTALL_ERROR_ATTR: e.attr ?? '', INSTALL_ERROR_URL: encodeURIComponent(e.message) };
  }
}
