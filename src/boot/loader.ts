/**
 * Which boot loader chain a node gets (attribute `boot_loader`, node beats group) and which
 * CPU architecture it and its VNFS are. Pure: the DHCP handler, the boot renderer and
 * `pxeherd explain` all decide from these functions.
 *
 *   ipxe       firmware -> iPXE (undionly.kpxe / ipxe.efi) -> /boot/<mac>.ipxe     (default)
 *   pxelinux   BIOS -> lpxelinux.0 (TFTP) -> pxelinux.cfg/01-<mac> -> kernel+initrd over HTTP
 *              (UEFI machines of such a node get GRUB: pxelinux has no UEFI network loader in Debian)
 *   grub       UEFI -> Debian's signed network GRUB -> grub.cfg-01-<mac> -> kernel+initrd over HTTP
 *              (BIOS machines of such a node get lpxelinux.0, which reads the same kind of config)
 *   shim-grub  UEFI Secure Boot -> shim (signed by Microsoft's UEFI CA) -> grubx64.efi next to
 *              it -> Debian's signed kernel. Unsigned iPXE is never offered to such a node.
 */

export const BOOT_LOADERS = ['ipxe', 'pxelinux', 'grub', 'shim-grub'] as const;
export type BootLoader = (typeof BOOT_LOADERS)[number];

/** Loader file names in the TFTP root (and under HTTP /tftp/) for the non-iPXE chains. */
export const LOADER_FILES = {
  pxelinux: 'lpxelinux.0',
  grub_x64: 'grubx64.efi',
  grub_arm64: 'grubaa64.efi',
  shim_x64: 'shimx64.efi',
  shim_arm64: 'shimaa64.efi',
  /** Built at start for UEFI HTTP boot (see grub-image.ts): Debian's signed image cannot boot by HTTP. */
  grub_http_x64: 'grubx64-http.efi',
  grub_http_arm64: 'grubaa64-http.efi',
} as const;

/** The node's chain from its merged attributes; a bad value is an error naming the choices. */
export function bootLoaderOf(attrs: Record<string, string>): { loader: BootLoader; error?: string } {
  const v = attrs.boot_loader;
  if (v === undefined || v === '') return { loader: 'ipxe' };
  if ((BOOT_LOADERS as readonly string[]).includes(v)) return { loader: v as BootLoader };
  return { loader: 'ipxe', error: `attribute boot_loader="${v}" is not a boot loader: use one of ${BOOT_LOADERS.join(', ')} (falling back to ipxe)` };
}

export type CpuArch = 'x86_64' | 'arm64';
export const CPU_ARCHS: readonly CpuArch[] = ['x86_64', 'arm64'];

/** The CPU of a DHCP client from its architecture type (RFC 4578 / IANA), undefined when not known. */
export function cpuOfClientArch(arch: number | undefined): CpuArch | undefined {
  if (arch === undefined) return undefined;
  if (arch === 11 || arch === 19) return 'arm64';
  if (arch === 0 || arch === 6 || arch === 7 || arch === 9 || arch === 15 || arch === 16) return 'x86_64';
  return undefined;
}

/** Accepts the spellings people use (amd64, aarch64...). */
export function parseCpuArch(v: string): CpuArch | undefined {
  const s = v.trim().toLowerCase();
  if (s === 'x86_64' || s === 'amd64' || s === 'x64') return 'x86_64';
  if (s === 'arm64' || s === 'aarch64') return 'arm64';
  return undefined;
}

/** Debian's name of the architecture (package suffixes, dpkg --add-architecture). */
export function debianArch(a: CpuArch): 'amd64' | 'arm64' {
  return a === 'x86_64' ? 'amd64' : 'arm64';
}

/**
 * The architecture a VNFS's kernel is built for. Read in this one place: today from the VNFS
 * attribute `arch` (absent = x86_64); once the images branch's migration 3 adds the column
 * `vnfs.arch`, the integrator switches this function to read it.
 */
export function vnfsArch(v: { attrs: Record<string, string>; arch?: string }): CpuArch {
  // The VNFS's arch column (set by image builds and imports), unless an attribute overrides it.
  return parseCpuArch(v.attrs.arch ?? '') ?? parseCpuArch(v.arch ?? '') ?? 'x86_64';
}

/**
 * The architecture of a node: its attribute `arch` (node beats group) when set, else what its
 * firmware said in its last DHCP request (option 93), else x86_64.
 */
export function nodeArch(attrs: Record<string, string>, seen: CpuArch | undefined): { arch: CpuArch; source: 'attribute' | 'dhcp' | 'default' } {
  const a = parseCpuArch(attrs.arch ?? '');
  if (a) return { arch: a, source: 'attribute' };
  if (seen) return { arch: seen, source: 'dhcp' };
  return { arch: 'x86_64', source: 'default' };
}

/** The discovery image for an architecture: `stage1` for x86_64, `stage1-arm64` for arm64. */
export function discoveryVnfsFor(base: string, arch: CpuArch): string {
  return arch === 'x86_64' ? base : `${base}-${arch}`;
}

/**
 * Firmware's last DHCP word about its CPU, by MAC, in memory: the DHCP server notes it, the
 * boot renderer reads it a second later when the loader asks for its configuration. A restart
 * forgets it; the next DHCP request (every boot starts with one) says it again.
 */
export class ClientArchs {
  private readonly seen = new Map<string, CpuArch>();
  note(mac: string, arch: number | undefined): void {
    const a = cpuOfClientArch(arch);
    if (!a) return;
    if (this.seen.get(mac) === a) return;
    if (this.seen.size > 100_000) this.seen.clear(); // bounded: a flood of random MACs cannot grow it forever
    this.seen.set(mac, a);
  }
  get(mac: string): CpuArch | undefined {
    return this.seen.get(mac);
  }
}
