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

export async function installLoaders(root: string, log: TftpLogger, opts: LoaderOptions = {}): Promise<LoaderReport> {
  const sourceDir = opts.sourceDir ?? DEFAULT_LOADER_SOURCE;
  const names = opts.names ?? DEFAULT_LOADERS;
  const report: LoaderReport = { present: [], copied: [], missing: [] };
  await fsp.mkdir(root, { recursive: true });
  for (const name of names) {
    const dest = path.join(root, name);
    if (await isFile(dest)) {
      report.present.push(name);
      continue;
    }
    const src = path.join(sourceDir, name);
    if (!(await isFile(src))) {
      report.missing.push(name);
      continue;
    }
    try {
      // COPYFILE_EXCL: a file that appeared meanwhile (or a dangling symlink) is the admin's.
      await fsp.copyFile(src, dest, constants.COPYFILE_EXCL);
      report.present.push(name);
      report.copied.push(name);
    } catch (e) {
      log.warn({ loader: name, err: (e as Error).message }, `tftp: could not copy ${src} to ${dest}`);
      report.missing.push(name);
    }
  }
  const copied = report.copied.length ? ` (copied from ${sourceDir}: ${report.copied.join(', ')})` : '';
  if (report.present.length) log.info({ root, ...report }, `tftp: boot loaders available in ${root}: ${report.present.join(', ')}${copied}`);
  if (report.missing.length)
    log.warn(
      { root, ...report },
      `tftp: boot loaders MISSING from ${root}: ${report.missing.join(', ')} — install Debian's "ipxe" package or put them into ${root}; machines asking for them will not boot`,
    );
  return report;
}
