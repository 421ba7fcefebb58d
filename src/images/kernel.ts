import fs from 'node:fs';
import path from 'node:path';
import { ImageError } from './errors.js';

/** Pure: compare kernel versions the way `sort -V` does (6.1.0-9 < 6.1.0-10). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/(\d+)/);
  const pb = b.split(/(\d+)/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    if (x === y) continue;
    if (i % 2 === 1) {
      const d = Number(x || -1) - Number(y || -1);
      if (d !== 0) return d;
    }
    return x < y ? -1 : 1;
  }
  return 0;
}

/** Kernel versions an image holds: /boot/vmlinuz-<ver> files, oldest first. */
export function kernelVersions(tree: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(path.join(tree, 'boot'));
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith('vmlinuz-') && n.length > 'vmlinuz-'.length && !n.endsWith('.dpkg-bak') && !n.endsWith('.old'))
    .filter((n) => fs.statSync(path.join(tree, 'boot', n), { throwIfNoEntry: false })?.isFile() && !fs.lstatSync(path.join(tree, 'boot', n)).isSymbolicLink())
    .map((n) => n.slice('vmlinuz-'.length))
    .sort(compareVersions);
}

/**
 * Pure: the kernel a revision boots. `wanted` (--kernel) must be one the image holds;
 * without it the newest is taken (an upgrade inside the image boots the new kernel).
 * Undefined when the image has none: the revision is kept, and cannot boot until one is installed.
 */
export function chooseKernel(versions: string[], wanted: string | undefined, image: string): string | undefined {
  if (wanted) {
    if (!versions.includes(wanted)) {
      throw new ImageError(
        versions.length
          ? `image ${image} has no kernel ${wanted} in /boot: it has ${versions.join(', ')} (pick one with --kernel)`
          : `image ${image} has no kernel in /boot (no /boot/vmlinuz-*): install one (e.g. vnfs exec ${image} -- apt-get install -y linux-image-amd64) or drop --kernel`,
        `/boot/vmlinuz-${wanted}`,
      );
    }
    return wanted;
  }
  return versions[versions.length - 1];
}
