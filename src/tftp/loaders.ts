/**
 * Boot loaders the DHCP answers point at. At start they are copied from Debian's `ipxe`
 * package into the TFTP root when missing there — never over a file the admin put in
 * place — and the result is logged in one line so a missing loader is obvious before
 * the first machine fails to boot.
 */
import { constants, promises as fsp } from 'node:fs';
import path from 'node:path';
import type { TftpLogger } from './server.js';

export const DEFAULT_LOADERS = ['undionly.kpxe', 'ipxe.efi', 'snponly.efi'] as const;
export const DEFAULT_LOADER_SOURCE = '/usr/lib/ipxe';

export interface LoaderReport {
  /** Loaders in the root after the call (copied or already there). */
  present: string[];
  /** Those copied by this call. */
  copied: string[];
  /** Neither in the root nor in the source directory. */
  missing: string[];
}

export interface LoaderOptions {
  sourceDir?: string;
  names?: readonly string[];
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fsp.stat(p)).isFile();
  } catch {
    return false;
  }
}

/** One loader: its name in the TFTP root, the file a Debian package installs, that package. */
export interface LoaderSource {
  name: string;
  src: string;
  pkg: string;
}

/**
 * The pxelinux, GRUB and shim loaders of the non-iPXE chains (attribute boot_loader), from
 * Debian's packages. Debian's signed network GRUB is installed as grubx64.efi: shim loads
 * the file of that name from the directory it came from.
 */
export const DEBIAN_CHAIN_LOADERS: readonly LoaderSource[] = [
  { name: 'lpxelinux.0', src: '/usr/lib/PXELINUX/lpxelinux.0', pkg: 'pxelinux' },
  { name: 'ldlinux.c32', src: '/usr/lib/syslinux/modules/bios/ldlinux.c32', pkg: 'syslinux-common' },
  { name: 'grubx64.efi', src: '/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed', pkg: 'grub-efi-amd64-signed' },
  // Not signed: GRUB loads it only without Secure Boot (kernel and initrd over HTTP); see templates/grub.
  { name: 'grub/x86_64-efi/http.mod', src: '/usr/lib/grub/x86_64-efi/http.mod', pkg: 'grub-efi-amd64-bin' },
  { name: 'shimx64.efi', src: '/usr/lib/shim/shimx64.efi.signed', pkg: 'shim-signed' },
  { name: 'grubaa64.efi', src: '/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed', pkg: 'grub-efi-arm64-signed:arm64 (an amd64 master gets it with: pxeherd stage1 build --arch arm64)' },
];

export async function installLoaders(root: string, log: TftpLogger, opts: LoaderOptions = {}): Promise<LoaderReport> {
  const sourceDir = opts.sourceDir ?? DEFAULT_LOADER_SOURCE;
  const names = opts.names ?? DEFAULT_LOADERS;
  return copyLoaders(root, log, names.map((name) => ({ name, src: path.join(sourceDir, name), pkg: 'ipxe' })), `copied from ${sourceDir}`);
}

/** pxelinux, GRUB and shim (see DEBIAN_CHAIN_LOADERS): the same rules and the same available/missing lines. */
export async function installChainLoaders(root: string, log: TftpLogger, entries: readonly LoaderSource[] = DEBIAN_CHAIN_LOADERS): Promise<LoaderReport> {
  return copyLoaders(root, log, entries, "copied from Debian's packages");
}

async function copyLoaders(root: string, log: TftpLogger, entries: readonly LoaderSource[], from: string): Promise<LoaderReport> {
  const report: LoaderReport = { present: [], copied: [], missing: [] };
  await fsp.mkdir(root, { recursive: true });
  for (const { name, src } of entries) {
    const dest = path.join(root, name);
    if (await isFile(dest)) {
      report.present.push(name);
      continue;
    }
    if (!(await isFile(src))) {
      report.missing.push(name);
      continue;
    }
    try {
      await fsp.mkdir(path.dirname(dest), { recursive: true });
      // COPYFILE_EXCL: a file that appeared meanwhile (or a dangling symlink) is the admin's.
      await fsp.copyFile(src, dest, constants.COPYFILE_EXCL);
      report.present.push(name);
      report.copied.push(name);
    } catch (e) {
      log.warn({ loader: name, err: (e as Error).message }, `tftp: could not copy ${src} to ${dest}`);
      report.missing.push(name);
    }
  }
  const copied = report.copied.length ? ` (${from}: ${report.copied.join(', ')})` : '';
  if (report.present.length) log.info({ root, ...report }, `tftp: boot loaders available in ${root}: ${report.present.join(', ')}${copied}`);
  if (report.missing.length) {
    const pkgs = [...new Set(entries.filter((e) => report.missing.includes(e.name)).map((e) => e.pkg))];
    log.warn(
      { root, ...report },
      `tftp: boot loaders MISSING from ${root}: ${report.missing.join(', ')} — install Debian's ${pkgs.map((p) => `"${p}"`).join(', ')} package${pkgs.length > 1 ? 's' : ''} or put them into ${root}; machines asking for them will not boot`,
    );
  }
  return report;
}
