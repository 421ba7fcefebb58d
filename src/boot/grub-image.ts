/**
 * A network GRUB for UEFI HTTP boot. Debian's signed network image (grubnetx64.efi) has no
 * HTTP client built in and finds its configuration through the PXE base code's DHCP packet,
 * which HTTP boot firmware does not start: loaded by HTTP it can read nothing. So for HTTP
 * boot pxeherd makes an image at start with grub-mkimage from Debian's own GRUB modules
 * (grub-efi-amd64-bin / grub-efi-arm64-bin), with HTTP built in and a small embedded
 * configuration that asks DHCP for an address and reads the machine's generated
 * grub.cfg-<mac> from pxeherd over HTTP. Unsigned: for machines without Secure Boot (Secure
 * Boot machines PXE boot shim -> Debian's signed GRUB by TFTP).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CpuArch } from './loader.js';

export const HTTP_GRUB_FILES: Record<CpuArch, string> = { x86_64: 'grubx64-http.efi', arm64: 'grubaa64-http.efi' };
const PLATFORM: Record<CpuArch, { format: string; dir: string; pkg: string }> = {
  x86_64: { format: 'x86_64-efi', dir: '/usr/lib/grub/x86_64-efi', pkg: 'grub-efi-amd64-bin' },
  arm64: { format: 'arm64-efi', dir: '/usr/lib/grub/arm64-efi', pkg: 'grub-efi-arm64-bin' },
};
export const HTTP_GRUB_MODULES = ['efinet', 'net', 'http', 'tftp', 'normal', 'configfile', 'linux', 'echo', 'test', 'sleep', 'reboot', 'halt', 'gzio', 'boot', 'chain', 'all_video'];

/** Pure: the configuration built into the image. */
export function httpGrubEmbeddedConfig(server: { address: string; httpPort: number }): string {
  const origin = `(http,${server.address}:${server.httpPort})`;
  // Read before GRUB's normal mode by its rescue parser: no comments, no quotes. The firmware
  // configured the NIC; GRUB has to ask DHCP again (net_bootp). grub.cfg-aa:bb:cc:dd:ee:ff is
  // one of the per-MAC names pxeherd generates.
  return [
    'net_bootp',
    `set root=${origin}`,
    `set prefix=${origin}/tftp/grub`,
    'configfile /tftp/grub/grub.cfg-${net_default_mac}',
    `echo pxeherd: could not read the boot configuration from ${origin}/tftp/grub/grub.cfg-\${net_default_mac}`,
    'sleep 30',
    'reboot',
    '',
  ].join('\n');
}

export type HttpGrubResult = { ok: true; file: string; built: boolean } | { ok: false; reason: string };

/**
 * Build <root>/<HTTP_GRUB_FILES[arch]> for this server unless an identical build is there (the
 * embedded configuration is kept beside it to compare). Never overwrites a file the admin put
 * in place (one without pxeherd's .cfg beside it).
 */
export function buildHttpGrub(root: string, server: { address: string; httpPort: number }, arch: CpuArch = 'x86_64'): HttpGrubResult {
  const p = PLATFORM[arch];
  const out = path.join(root, HTTP_GRUB_FILES[arch]);
  const cfgCopy = `${out}.pxeherd.cfg`;
  const cfg = httpGrubEmbeddedConfig(server);
  if (fs.existsSync(out)) {
    if (!fs.existsSync(cfgCopy)) return { ok: true, file: out, built: false }; // the admin's own
    if (fs.readFileSync(cfgCopy, 'utf8') === cfg) return { ok: true, file: out, built: false };
  }
  if (!fs.existsSync(path.join(p.dir, 'http.mod'))) return { ok: false, reason: `${p.dir} has no GRUB modules: install Debian's "${p.pkg}" package` };
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-grub-'));
  try {
    const cfgFile = path.join(tmp, 'embedded.cfg');
    fs.writeFileSync(cfgFile, cfg);
    const img = path.join(tmp, 'grub.efi');
    const r = spawnSync('grub-mkimage', ['-O', p.format, '-d', p.dir, '-o', img, '-c', cfgFile, '-p', `(http,${server.address}:${server.httpPort})/tftp/grub`, ...HTTP_GRUB_MODULES], { encoding: 'utf8' });
    if (r.error) return { ok: false, reason: `grub-mkimage: ${r.error.message} (install Debian's "grub-common" package)` };
    if (r.status !== 0) return { ok: false, reason: `grub-mkimage failed: ${r.stderr.trim()}` };
    fs.mkdirSync(root, { recursive: true });
    fs.copyFileSync(img, `${out}.tmp`);
    fs.renameSync(`${out}.tmp`, out);
    fs.writeFileSync(cfgCopy, cfg);
    return { ok: true, file: out, built: true };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
