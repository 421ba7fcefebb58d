import type { BootMode, Node, Vnfs } from '../nodes/types.js';
import type { TemplateSelector } from './templates.js';
import { resolveVnfsRef } from '../images/resolve.js';

/**
 * What a machine's network boot does: the node's boot mode, plus the two situations of a
 * MAC the database does not know (discovery when auto-registration is on, else unknown).
 */
export type BootDecision = BootMode | 'discovery' | 'unknown';

export interface Decision {
  mode: BootDecision;
  /** Why a node does not boot (disabled), for the script to print. */
  reason: string;
  /** Template selection. */
  select: TemplateSelector;
  /** VNFS name to boot ('' when none is needed: local, disabled, unknown). */
  vnfs: string;
  /** The revision the node's vnfs field pins (NAME@REV); the `vnfs_rev` attribute is applied by the caller. */
  pin?: number;
}

export interface DecideOptions {
  autoRegister: boolean;
  /** nodes.default_vnfs: used when a node has no VNFS of its own. */
  defaultVnfs: string;
  /** The stage-one image unknown machines boot to register (and nodes without any VNFS). */
  discoveryVnfs: string;
}

/** Pure: node (or its absence) and policy in, decision out. */
export function decideBoot(node: Node | undefined, o: DecideOptions): Decision {
  if (!node) {
    if (!o.autoRegister) {
      return { mode: 'unknown', reason: 'unknown machine and nodes.auto_register is off: add it with pxeherd node add', select: { use: 'unknown' }, vnfs: '' };
    }
    return { mode: 'discovery', reason: '', select: { use: 'discovery' }, vnfs: o.discoveryVnfs };
  }
  const who = { node: node.name, group: node.group };
  if (!node.enabled) {
    return { mode: 'disabled', reason: `node is disabled (pxeherd node enable ${node.name})`, select: { use: 'disabled', ...who }, vnfs: '' };
  }
  switch (node.boot) {
    case 'disabled':
      return { mode: 'disabled', reason: `boot mode is "disabled" (pxeherd node set boot provision ${node.name})`, select: { use: 'disabled', ...who }, vnfs: '' };
    case 'local':
      return { mode: 'local', reason: '', select: { use: 'local', ...who }, vnfs: '' };
    case 'provision':
    case 'once': {
      const ref = resolveVnfsRef(node.vnfs || o.defaultVnfs || o.discoveryVnfs);
      const vnfs = ref.name;
      return { mode: node.boot, reason: '', select: { use: 'provision', node: node.name, group: node.group, vnfs }, vnfs, ...(ref.rev !== undefined ? { pin: ref.rev } : {}) };
    }
  }
}

export interface ServerInfo {
  /** Address nodes reach the master at (an IP: firmware often has no DNS). */
  address: string;
  httpPort: number;
  tftpPort?: number;
}

/** The values templates see. Every field is always present (strict mode errors on absent ones). */
export interface BootContext {
  mode: BootDecision;
  reason: string;
  node: {
    name: string;
    mac: string;
    /** aa-bb-cc-dd-ee-ff: safe in URLs, file names and grub device strings. */
    macHyphen: string;
    ip: string;
    group: string;
    vnfs: string;
    boot: string;
    state: string;
    enabled: boolean;
    debug: boolean;
    /** Group attributes overridden by the node's own. */
    attrs: Record<string, string>;
  };
  vnfs: {
    name: string;
    kernel: string;
    initrd: string;
    cmdline: string;
    kernelUrl: string;
    initrdUrl: string;
    /** The URLs' path and query (/vnfs/NAME/FILE?mac=...): GRUB names the server apart, (http,A:P)PATH. */
    kernelPath: string;
    initrdPath: string;
    /** The initrd's file name without directories (iPXE's `initrd --name` and the kernel's initrd=: UEFI stubs look it up flat). */
    initrdName: string;
    /** http://A:P/vnfs/NAME */
    baseUrl: string;
    attrs: Record<string, string>;
    /** The revision booted ('' for a kernel+initrd VNFS without a root filesystem). */
    rev: string;
    /** True when the VNFS has a root filesystem (rootfs.squashfs and manifest.json under r<rev>/). */
    rootfs: boolean;
    /** http://A:P/vnfs/NAME/r<rev> ('' without a root filesystem). */
    revUrl: string;
  };
  server: { address: string; httpPort: number; tftpPort: number; url: string };
  provision: { url: string; initUrl: string; readyUrl: string; token: string };
  token: string;
  /** The kernel arguments pxeherd adds after the VNFS's own (without initrd=). */
  cmdline: string;
  /** This machine's boot script URL (for retry loops). */
  bootUrl: string;
}

function hostPort(s: ServerInfo): string {
  return s.httpPort === 80 ? s.address : `${s.address}:${s.httpPort}`;
}

function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

/** Kernel arguments are space separated: a value with blanks would split into two arguments. */
function argSafe(v: string): string {
  return v.replace(/\s+/g, '_');
}

/** Pure: assemble the template context. `mac` is canonical or '' (no MAC known, e.g. pxelinux.cfg/default). */
export function buildContext(args: {
  decision: Decision;
  mac: string;
  node?: Node;
  attrs: Record<string, string>;
  /** Already reflected in vnfs.kernel/initrd: the revision of a VNFS with a root filesystem. */
  vnfs?: Vnfs;
  rev?: number;
  server: ServerInfo;
  token: string;
}): BootContext {
  const { decision, mac, node, vnfs, server, token } = args;
  const base = `http://${hostPort(server)}`;
  const macHyphen = mac.replace(/:/g, '-');
  const q = (extra: string) => (macHyphen ? `?mac=${macHyphen}${extra}` : extra ? `?${extra.slice(1)}` : '');
  const tokQ = token ? `&token=${token}` : '';
  const vBase = vnfs ? `${base}/vnfs/${encodeURIComponent(vnfs.name)}` : '';
  const provisionUrl = `${base}/provision/init`;
  const cmd = [
    vnfs?.cmdline ?? '',
    args.attrs.kernel_args ?? '',
    `pxeherd.url=${provisionUrl}`,
    macHyphen ? `pxeherd.mac=${macHyphen}` : '',
    token ? `pxeherd.token=${token}` : '',
    node ? `pxeherd.node=${argSafe(node.name)}` : '',
    `pxeherd.master=${base}`,
  ]
    .map((s) => s.trim())
    .filter(Boolean)
    .join(' ');
  return {
    mode: decision.mode,
    reason: decision.reason,
    node: {
      name: node?.name ?? '',
      mac,
      macHyphen,
      ip: node?.ip ?? '',
      group: node?.group ?? '',
      vnfs: decision.vnfs,
      boot: node?.boot ?? '',
      state: node?.state ?? '',
      enabled: node?.enabled ?? false,
      debug: node?.debug ?? false,
      attrs: args.attrs,
    },
    vnfs: {
      name: vnfs?.name ?? '',
      kernel: vnfs?.kernel ?? '',
      initrd: vnfs?.initrd ?? '',
      cmdline: vnfs?.cmdline ?? '',
      // Per segment: a revision's files are r<REV>/vmlinuz, and an encoded '/' is no path separator.
      kernelUrl: vnfs ? `${vBase}/${encodePath(vnfs.kernel)}${q('')}` : '',
      initrdUrl: vnfs ? `${vBase}/${encodePath(vnfs.initrd)}${q('')}` : '',
      kernelPath: vnfs ? `/vnfs/${encodeURIComponent(vnfs.name)}/${encodePath(vnfs.kernel)}${q('')}` : '',
      initrdPath: vnfs ? `/vnfs/${encodeURIComponent(vnfs.name)}/${encodePath(vnfs.initrd)}${q('')}` : '',
      initrdName: vnfs ? vnfs.initrd.split('/').pop()! : '',
      baseUrl: vBase,
      attrs: vnfs?.attrs ?? {},
      rev: args.rev !== undefined ? String(args.rev) : '',
      rootfs: args.rev !== undefined,
      revUrl: args.rev !== undefined ? `${vBase}/r${args.rev}` : '',
    },
    server: { address: server.address, httpPort: server.httpPort, tftpPort: server.tftpPort ?? 69, url: base },
    provision: {
      url: provisionUrl,
      initUrl: `${provisionUrl}${q(tokQ)}`,
      readyUrl: `${base}/provision/ready${q(tokQ)}`,
      token,
    },
    token,
    cmdline: cmd,
    bootUrl: macHyphen ? `${base}/boot/${macHyphen}.ipxe` : `${base}/boot.ipxe`,
  };
}
