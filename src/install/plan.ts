/**
 * The disk plan of a node installed to disk (install=disk), from its attributes and the disks
 * its hardware inventory reported. Pure: nothing here touches a disk. Stage one runs the
 * sfdisk script and the mkfs commands this produces; `pxeherd node plan` prints them.
 *
 * Attributes (node over group):
 *   install        stateless (default) | disk
 *   install_disk   serial:XYZ | /dev/NAME | NAME | size rules: size>=100G, size<2T, smallest,
 *                  largest, comma-separated (size>=100G,smallest). Unset: the only disk there is.
 *                  A choice that is not unique is an error listing the candidates, never a guess.
 *   install_fs     ext4 (default) | xfs
 *   install_swap   a size (4G, 512M) or none (default)
 *   install_esp    size of the EFI system partition (default 512M)
 *   install_firmware  bios | uefi (default: what the inventory reported)
 * Sizes: K/M/G/T (and KiB...) are powers of 1024; KB/MB/GB/TB powers of 1000 (disks are sold so).
 */
import type { Disk } from '../inventory/inventory.js';
import { InvalidInput } from '../nodes/mac.js';

export class PlanError extends Error {
  constructor(
    message: string,
    readonly attr?: string,
  ) {
    super(message);
  }
}

export const INSTALL_METHODS = ['stateless', 'disk'] as const;
export type InstallMethod = (typeof INSTALL_METHODS)[number];
export const ROOT_FILESYSTEMS = ['ext4', 'xfs'] as const;
export type RootFs = (typeof ROOT_FILESYSTEMS)[number];

const MIB = 1024 * 1024;
const UNITS: Record<string, number> = {
  '': 1,
  K: 1024,
  KIB: 1024,
  M: MIB,
  MIB: MIB,
  G: 1024 ** 3,
  GIB: 1024 ** 3,
  T: 1024 ** 4,
  TIB: 1024 ** 4,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
};

/** "4G" -> bytes; undefined when it is not a size. */
export function parseSize(v: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?(?:I?B)?)\s*$/i.exec(v);
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toUpperCase()];
  if (unit === undefined) return undefined;
  return Math.round(Number(m[1]) * unit);
}

/** 4294967296 -> "4 GiB", 64000000000 -> "59.6 GiB". */
export function fmtSize(bytes: number): string {
  for (const [u, n] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', MIB],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= n) {
      const x = bytes / n;
      return `${Number.isInteger(x) ? x : x.toFixed(1)} ${u}`;
    }
  }
  return `${bytes} B`;
}

// GPT partition type GUIDs (UEFI spec; Discoverable Partitions Specification for root x86-64).
export const GPT_TYPES = {
  bios_boot: '21686148-6449-6E6F-744E-656564454649',
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  swap: '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F',
  root: '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709',
} as const;

export interface PlannedPartition {
  number: number;
  /** GPT partition name. */
  name: 'bios_boot' | 'esp' | 'swap' | 'root';
  device: string;
  /** Bytes; the root partition takes the rest of the disk (its size is what remains). */
  sizeBytes: number;
  rest: boolean;
  type: string;
  fs: 'vfat' | 'swap' | RootFs | null;
  mount: string | null;
  /** The command that makes its filesystem (none for the BIOS boot partition). */
  mkfs: string[] | null;
}

export interface DiskPlan {
  node: string;
  install: InstallMethod;
  firmware: 'bios' | 'uefi';
  disk: { name: string; path: string; sizeBytes: number; serial: string; model: string; chosenBy: string };
  label: 'gpt';
  partitions: PlannedPartition[];
  /** What `sfdisk <disk>` reads on its standard input. */
  sfdisk: string;
}

/** Devices a plan may target: no removable media, optical drives, loop or RAM devices, empty slots. */
export function installableDisks(disks: readonly Disk[]): Disk[] {
  return disks.filter((d) => d.size_bytes > 0 && d.removable !== 1 && !/^(loop|sr|ram|zram|fd|md|dm-|nbd)/.test(d.name));
}

function describe(d: Disk): string {
  return `${d.name} (${fmtSize(d.size_bytes)}${d.serial ? `, serial ${d.serial}` : ''}${d.model ? `, ${d.model}` : ''})`;
}

function candidates(ds: readonly Disk[]): string {
  return ds.length ? ds.map(describe).join('; ') : 'none';
}

type SizeOp = '>=' | '<=' | '>' | '<' | '=';
type Rule = { kind: 'serial'; serial: string } | { kind: 'name'; name: string } | { kind: 'size'; op: SizeOp; bytes: number } | { kind: 'pick'; which: 'smallest' | 'largest' };

/** install_disk -> rules; throws naming the part that is not understood. */
export function parseDiskSelector(v: string): Rule[] {
  const raw = v.trim();
  if (raw.startsWith('serial:')) {
    const serial = raw.slice(7).trim();
    if (!serial) throw new PlanError('install_disk "serial:" needs the serial, e.g. serial:S4EVNF0M123456', 'install_disk');
    return [{ kind: 'serial', serial }];
  }
  if (raw.startsWith('/dev/')) {
    const name = raw.slice(5);
    if (!/^[a-z][a-z0-9]*$/.test(name)) throw new PlanError(`install_disk "${raw}": give the kernel's name of the whole disk (/dev/sda, /dev/nvme0n1, /dev/vda), or serial:..., or a size rule`, 'install_disk');
    return [{ kind: 'name', name }];
  }
  const rules: Rule[] = [];
  for (const part of raw.split(',').map((p) => p.trim())) {
    if (part === 'smallest' || part === 'largest') {
      rules.push({ kind: 'pick', which: part });
      continue;
    }
    const m = /^size\s*(>=|<=|>|<|=)\s*(.+)$/.exec(part);
    if (m) {
      const bytes = parseSize(m[2]!);
      if (bytes === undefined) throw new PlanError(`install_disk: "${m[2]}" in "${part}" is not a size: use e.g. 100G (GiB) or 100GB (10^9 bytes)`, 'install_disk');
      rules.push({ kind: 'size', op: m[1] as SizeOp, bytes });
      continue;
    }
    if (/^[a-z][a-z0-9]*$/.test(part) && rules.length === 0 && raw === part) return [{ kind: 'name', name: part }];
    throw new PlanError(`install_disk "${raw}": "${part}" is not understood: use serial:XYZ, /dev/NAME, or size rules like size>=100G, smallest, largest (comma-separated)`, 'install_disk');
  }
  if (rules.filter((r) => r.kind === 'pick').length > 1) throw new PlanError(`install_disk "${raw}": use smallest or largest, not both`, 'install_disk');
  return rules;
}

const cmp = (a: number, op: SizeOp, b: number) => (op === '>=' ? a >= b : op === '<=' ? a <= b : op === '>' ? a > b : op === '<' ? a < b : a === b);

/** The one disk the selector names, or an error listing what it could have been. */
export function chooseDisk(disks: readonly Disk[], selector: string | undefined, node: string): { disk: Disk; chosenBy: string } {
  const all = installableDisks(disks);
  if (disks.length === 0) throw new PlanError(`node ${node} has not reported its disks yet: boot it once (the stage-one image reports its hardware), then plan again`);
  if (!selector) {
    if (all.length === 1) return { disk: all[0]!, chosenBy: 'the only disk' };
    throw new PlanError(
      all.length === 0
        ? `node ${node} has no disk to install to (reported: ${candidates(disks)})`
        : `node ${node} has ${all.length} disks and install_disk is not set: set it to serial:..., /dev/NAME or a size rule (candidates: ${candidates(all)})`,
      'install_disk',
    );
  }
  const rules = parseDiskSelector(selector);
  let left = all;
  for (const r of rules) {
    if (r.kind === 'serial') left = left.filter((d) => d.serial === r.serial);
    else if (r.kind === 'name') left = left.filter((d) => d.name === r.name);
    else if (r.kind === 'size') left = left.filter((d) => cmp(d.size_bytes, r.op, r.bytes));
    else if (left.length > 1) {
      const best = r.which === 'smallest' ? Math.min(...left.map((d) => d.size_bytes)) : Math.max(...left.map((d) => d.size_bytes));
      left = left.filter((d) => d.size_bytes === best);
    }
  }
  if (left.length === 1) return { disk: left[0]!, chosenBy: `install_disk=${selector}` };
  if (left.length === 0) throw new PlanError(`node ${node}: no disk matches install_disk=${selector} (candidates: ${candidates(all)})`, 'install_disk');
  throw new PlanError(`node ${node}: install_disk=${selector} matches ${left.length} disks (${candidates(left)}): make it unique, e.g. serial:${left[0]!.serial || '...'}`, 'install_disk');
}

/** /dev/vda + 1 -> /dev/vda1; /dev/nvme0n1 + 1 -> /dev/nvme0n1p1 (a name ending in a digit takes "p"). */
export function partitionDevice(disk: string, n: number): string {
  return `/dev/${disk}${/\d$/.test(disk) ? 'p' : ''}${n}`;
}

/** Validation of the install_* attributes, for `node set` / `group set` and the planner. */
export function installAttrError(key: string, value: string): string | undefined {
  if (value === '') return undefined;
  switch (key) {
    case 'install':
      return (INSTALL_METHODS as readonly string[]).includes(value) ? undefined : `install must be ${INSTALL_METHODS.join(' or ')}, not "${value}"`;
    case 'install_fs':
      return (ROOT_FILESYSTEMS as readonly string[]).includes(value) ? undefined : `install_fs must be ${ROOT_FILESYSTEMS.join(' or ')}, not "${value}"`;
    case 'install_firmware':
      return value === 'bios' || value === 'uefi' ? undefined : `install_firmware must be bios or uefi, not "${value}"`;
    case 'install_swap':
      if (value === 'none' || value === '0') return undefined;
      return parseSize(value) !== undefined && parseSize(value)! >= MIB ? undefined : `install_swap must be a size of at least 1M (e.g. 4G) or none, not "${value}"`;
    case 'install_esp': {
      const b = parseSize(value);
      return b !== undefined && b >= 32 * MIB && b <= 4096 * MIB ? undefined : `install_esp must be a size from 32M to 4G (e.g. 512M), not "${value}"`;
    }
    case 'install_disk':
      try {
        parseDiskSelector(value);
        return undefined;
      } catch (e) {
        return (e as Error).message;
      }
    default:
      return undefined;
  }
}

/** For the stores: refuse a bad install_* value when it is set, as `node set` / `group set` do; returns the key. */
export function validateInstallAttr(key: string, value: string): string {
  const e = installAttrError(key, value);
  if (e) throw new InvalidInput(e, `attr.${key}`);
  return key;
}

/** Smallest root filesystem a plan accepts: an OS image needs room. */
export const MIN_ROOT_BYTES = 2 * 1024 ** 3;

function mib(bytes: number): number {
  return Math.ceil(bytes / MIB);
}

/**
 * The plan for one node. `firmware` is the inventory's (the attribute install_firmware wins).
 * Throws PlanError naming the attribute and what to do.
 */
export function planDisk(input: { node: string; attrs: Record<string, string>; disks: readonly Disk[]; firmware?: 'bios' | 'uefi' }): DiskPlan {
  const a = input.attrs;
  for (const k of ['install', 'install_fs', 'install_swap', 'install_esp', 'install_firmware']) {
    const err = installAttrError(k, a[k] ?? '');
    if (err) throw new PlanError(`node ${input.node}: ${err}`, k);
  }
  const install = (a.install || 'stateless') as InstallMethod;
  const fs = (a.install_fs || 'ext4') as RootFs;
  const { disk, chosenBy } = chooseDisk(input.disks, a.install_disk, input.node);
  const firmware = (a.install_firmware || input.firmware) as 'bios' | 'uefi' | undefined;
  if (!firmware) throw new PlanError(`node ${input.node}: firmware unknown (no hardware report): set install_firmware=bios or uefi`, 'install_firmware');

  const parts: Omit<PlannedPartition, 'number' | 'device'>[] = [];
  if (firmware === 'bios') {
    // GRUB's core image lives here on a GPT disk booted by a BIOS.
    parts.push({ name: 'bios_boot', sizeBytes: MIB, rest: false, type: GPT_TYPES.bios_boot, fs: null, mount: null, mkfs: null });
  } else {
    const esp = parseSize(a.install_esp || '512M')!;
    parts.push({ name: 'esp', sizeBytes: mib(esp) * MIB, rest: false, type: GPT_TYPES.esp, fs: 'vfat', mount: '/boot/efi', mkfs: ['mkfs.vfat', '-F', '32', '-n', 'ESP'] });
  }
  const swap = a.install_swap && a.install_swap !== 'none' && a.install_swap !== '0' ? mib(parseSize(a.install_swap)!) * MIB : 0;
  if (swap) parts.push({ name: 'swap', sizeBytes: swap, rest: false, type: GPT_TYPES.swap, fs: 'swap', mount: null, mkfs: ['mkswap', '-L', 'swap'] });
  // GPT: 1 MiB before the first partition (alignment, primary table), the backup table at the end.
  const overhead = 2 * MIB;
  const fixed = parts.reduce((n, p) => n + p.sizeBytes, 0);
  const rootBytes = Math.floor((disk.size_bytes - overhead - fixed) / MIB) * MIB;
  if (rootBytes < MIN_ROOT_BYTES) {
    const need = overhead + fixed + MIN_ROOT_BYTES;
    throw new PlanError(
      `node ${input.node}: the plan does not fit ${disk.name}: it needs ${fmtSize(need)} (${parts.map((p) => `${p.name} ${fmtSize(p.sizeBytes)}`).join(', ')}, root at least ${fmtSize(MIN_ROOT_BYTES)}) and the disk has ${fmtSize(disk.size_bytes)}: ${swap ? 'make install_swap smaller, ' : ''}choose a larger disk with install_disk`,
      swap ? 'install_swap' : 'install_disk',
    );
  }
  parts.push({ name: 'root', sizeBytes: rootBytes, rest: true, type: GPT_TYPES.root, fs, mount: '/', mkfs: fs === 'xfs' ? ['mkfs.xfs', '-f', '-L', 'root'] : ['mkfs.ext4', '-F', '-L', 'root'] });

  const partitions = parts.map((p, i) => ({ ...p, number: i + 1, device: partitionDevice(disk.name, i + 1) }));
  const lines = ['label: gpt', ''];
  for (const p of partitions) lines.push(`${p.rest ? '' : `size=${p.sizeBytes / MIB}MiB, `}type=${p.type}, name="${p.name}"`);
  return {
    node: input.node,
    install,
    firmware,
    disk: { name: disk.name, path: `/dev/${disk.name}`, sizeBytes: disk.size_bytes, serial: disk.serial, model: disk.model, chosenBy },
    label: 'gpt',
    partitions,
    sfdisk: lines.join('\n') + '\n',
  };
}
