/**
 * What a DHCP client should boot, decided from what it says about itself (options 60, 77, 93,
 * 175). Pure: `pxeherd explain` reuses it to show the same decision the server makes.
 */
import type { Options } from './options.js';
import { getArchs, getString, getUserClasses, Opt } from './options.js';
import { LOADER_FILES, type BootLoader } from '../boot/loader.js';

export interface BootFiles {
  bios: string;
  uefi_x64: string;
  uefi_arm64: string;
  uefi_http: string;
}

/** What the client told us, distilled from its options (or given by `explain`). */
export interface ClientKind {
  /** First type from option 93, else the Arch field of a PXEClient vendor class. */
  arch?: number;
  /** Option 60 as sent. */
  vendorClass?: string;
  /** Running iPXE already: user class "iPXE" (77) or iPXE's option 175 present. */
  ipxe: boolean;
}

export type BootKind = 'ipxe-script' | 'bios' | 'uefi-x64' | 'uefi-arm64' | 'uefi-http' | 'none';

export interface BootDecision {
  kind: BootKind;
  /** The file name for the BOOTP file field / option 67 (a URL for HTTP and iPXE clients). */
  bootFile?: string;
  /** Set when the client fetches over HTTP (iPXE script, UEFI HTTP boot). */
  bootUrl?: string;
  /** Option 60 the reply must carry: PXE ROMs want PXEClient, UEFI HTTP boot wants HTTPClient. */
  replyVendorClass?: 'PXEClient' | 'HTTPClient';
  /** Send 175.176 = 1 so iPXE skips its ProxyDHCP wait. */
  ipxeNoProxyWait: boolean;
  /** Why, in words, for logs and `explain`. */
  reasons: string[];
}

export interface BootContext {
  mac: string;
  /** Address the client reaches pxeherd at. */
  serverAddress: string;
  httpPort: number;
  bootFiles: BootFiles;
  /** The node's chain (attribute boot_loader); default ipxe. */
  loader?: BootLoader;
}

/** RFC 4578 / IANA processor architecture types pxeherd knows. */
export const ARCH_NAMES: Record<number, string> = {
  0: 'x86 BIOS',
  6: 'x86 UEFI (32-bit)',
  7: 'x64 UEFI',
  9: 'x64 UEFI (EBC)',
  10: 'ARM 32-bit UEFI',
  11: 'ARM 64-bit UEFI',
  15: 'x86 UEFI HTTP',
  16: 'x64 UEFI HTTP',
  18: 'ARM 32-bit UEFI HTTP',
  19: 'ARM 64-bit UEFI HTTP',
};

/** Read the client's kind from its request options. */
export function clientKind(options: Options): ClientKind {
  const vendorClass = getString(options, Opt.VendorClass);
  let arch = getArchs(options)?.[0];
  if (arch === undefined && vendorClass) {
    // PXEClient:Arch:00007:UNDI:003016 — the arch is in the vendor class when 93 is absent.
    const m = /^(?:PXEClient|HTTPClient):Arch:(\d{5})/.exec(vendorClass);
    if (m) arch = Number(m[1]);
  }
  const ipxe = options.has(Opt.Ipxe) || getUserClasses(options).includes('iPXE');
  return { arch, vendorClass, ipxe };
}

export function isPxeVendor(vc: string | undefined): boolean {
  return !!vc && (vc.startsWith('PXEClient') || vc.startsWith('HTTPClient'));
}

export function decideBoot(client: ClientKind, ctx: BootContext): BootDecision {
  const reasons: string[] = [];
  const http = (path: string) => `http://${ctx.serverAddress}:${ctx.httpPort}${path}`;
  if (client.ipxe && ctx.loader && ctx.loader !== 'ipxe' && client.arch !== 16 && client.arch !== 15 && client.arch !== 19) {
    // An iPXE NIC ROM (QEMU's, many boards') in front of a node with another chain: iPXE
    // fetches that loader by TFTP and runs it (it offers the PXE/UNDI or SNP interface the
    // loader needs). No loop: the loader does not ask as iPXE again.
    const sub = decideBoot({ ...client, ipxe: false, vendorClass: client.vendorClass && isPxeVendor(client.vendorClass) ? client.vendorClass : 'PXEClient' }, ctx);
    if (sub.bootFile) {
      sub.reasons.unshift(`client is iPXE (a NIC ROM) but the node's boot_loader is ${ctx.loader}: iPXE chainloads that loader`);
      return { ...sub, ipxeNoProxyWait: true };
    }
  }
  if (client.ipxe) {
    // Loop-break: iPXE asking again must get its script, not another iPXE binary.
    const url = http(`/boot/${ctx.mac}.ipxe`);
    reasons.push('client is iPXE already (user class "iPXE" or option 175): hand it its boot script over HTTP');
    return { kind: 'ipxe-script', bootFile: url, bootUrl: url, ipxeNoProxyWait: true, reasons };
  }
  const vc = client.vendorClass;
  const httpClient = !!vc?.startsWith('HTTPClient');
  if (!isPxeVendor(vc)) {
    reasons.push(
      vc === undefined ? 'no vendor class (60): not a network-boot client, address only' : `vendor class "${vc}" is neither PXEClient nor HTTPClient: address only`,
    );
    return { kind: 'none', ipxeNoProxyWait: false, reasons };
  }
  const arch = client.arch;
  const archName = arch === undefined ? 'unknown arch' : `arch ${arch} (${ARCH_NAMES[arch] ?? 'unknown'})`;
  const loader = ctx.loader ?? 'ipxe';
  const arm = arch === 11 || arch === 19;
  /** The UEFI loader of a non-iPXE chain (pxelinux has no UEFI network loader: such nodes get GRUB there). */
  const efiLoader = (): { file: string; why: string } => {
    if (loader === 'shim-grub') return { file: arm ? LOADER_FILES.shim_arm64 : LOADER_FILES.shim_x64, why: 'boot_loader shim-grub: signed shim, then signed GRUB next to it (never unsigned iPXE)' };
    const why = loader === 'pxelinux' ? 'boot_loader pxelinux: pxelinux has no UEFI network loader, so UEFI gets network GRUB' : loader === 'grub' ? 'boot_loader grub: network GRUB' : 'no arm64 iPXE configured (dhcp.boot_files.uefi_arm64): network GRUB';
    return { file: arm ? LOADER_FILES.grub_arm64 : LOADER_FILES.grub_x64, why };
  };
  if (httpClient || arch === 16 || arch === 15 || arch === 19) {
    let file: string;
    let key: string;
    if (loader === 'ipxe' && !(arm && !ctx.bootFiles.uefi_arm64)) {
      key = arch === 19 ? 'dhcp.boot_files.uefi_arm64' : 'dhcp.boot_files.uefi_http';
      file = arch === 19 ? ctx.bootFiles.uefi_arm64 : ctx.bootFiles.uefi_http;
    } else if (loader === 'shim-grub') {
      reasons.push(
        `UEFI HTTP boot client, ${archName}: boot_loader shim-grub, but Debian's signed GRUB has no HTTP client and cannot boot by HTTP; a Secure Boot machine must PXE boot (TFTP), so no HTTP boot is offered`,
      );
      return { kind: 'none', ipxeNoProxyWait: false, reasons };
    } else {
      file = arm ? LOADER_FILES.grub_http_arm64 : LOADER_FILES.grub_http_x64;
      key = `${efiLoader().why}, with HTTP built in (made at start with grub-mkimage from Debian's GRUB modules)`;
    }
    if (!file) {
      reasons.push(`UEFI HTTP boot client, ${archName}: no loader configured (${key})`);
      return { kind: 'none', ipxeNoProxyWait: false, reasons };
    }
    const url = http(`/tftp/${file}`);
    reasons.push(`UEFI HTTP boot client (${httpClient ? 'vendor class HTTPClient' : archName}): loader ${file} over HTTP (${key}), option 60 HTTPClient`);
    return { kind: 'uefi-http', bootFile: url, bootUrl: url, replyVendorClass: 'HTTPClient', ipxeNoProxyWait: false, reasons };
  }
  if (loader !== 'ipxe') {
    if (arch === undefined || arch === 0) {
      if (arch === undefined) reasons.push('PXE client without an architecture (no option 93, none in the vendor class): assuming BIOS');
      const why = loader === 'pxelinux' ? 'boot_loader pxelinux' : `boot_loader ${loader}: BIOS has no Secure Boot and Debian ships no network GRUB image for it, so BIOS gets lpxelinux.0`;
      reasons.push(`PXE client, ${archName}: TFTP ${LOADER_FILES.pxelinux} (${why}); it reads pxelinux.cfg/01-<mac>`);
      return { kind: 'bios', bootFile: LOADER_FILES.pxelinux, replyVendorClass: 'PXEClient', ipxeNoProxyWait: false, reasons };
    }
    if (arch === 7 || arch === 9 || arch === 11) {
      const l = efiLoader();
      reasons.push(`PXE client, ${archName}: TFTP ${l.file} (${l.why}); Debian's network GRUB reads grub/grub.cfg`);
      return { kind: arch === 11 ? 'uefi-arm64' : 'uefi-x64', bootFile: l.file, replyVendorClass: 'PXEClient', ipxeNoProxyWait: false, reasons };
    }
  }
  const pick = (kind: BootKind, file: string, key: string): BootDecision => {
    if (!file) {
      reasons.push(`PXE client, ${archName}: no loader configured (dhcp.boot_files.${key})`);
      return { kind: 'none', ipxeNoProxyWait: false, reasons };
    }
    reasons.push(`PXE client, ${archName}: TFTP ${file} (dhcp.boot_files.${key})`);
    return { kind, bootFile: file, replyVendorClass: 'PXEClient', ipxeNoProxyWait: false, reasons };
  };
  switch (arch) {
    case undefined:
      reasons.push('PXE client without an architecture (no option 93, none in the vendor class): assuming BIOS');
      return pick('bios', ctx.bootFiles.bios, 'bios');
    case 0:
      return pick('bios', ctx.bootFiles.bios, 'bios');
    case 7:
    case 9:
      return pick('uefi-x64', ctx.bootFiles.uefi_x64, 'uefi_x64');
    case 11: {
      if (ctx.bootFiles.uefi_arm64) return pick('uefi-arm64', ctx.bootFiles.uefi_arm64, 'uefi_arm64');
      const l = efiLoader();
      reasons.push(`PXE client, ${archName}: TFTP ${l.file} (${l.why}); Debian's network GRUB reads grub/grub.cfg`);
      return { kind: 'uefi-arm64', bootFile: l.file, replyVendorClass: 'PXEClient', ipxeNoProxyWait: false, reasons };
    }
    default:
      reasons.push(`PXE client, ${archName}: no loader for this architecture, address only`);
      return { kind: 'none', ipxeNoProxyWait: false, reasons };
  }
}
