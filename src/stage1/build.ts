import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { writeCpio, type CpioEntry } from './cpio.js';
import { readModinfo, modDepends, moduleName } from './elf.js';
import { moduleLoadOrder, type ModuleFile } from './modules.js';
import { debianArch, type CpuArch } from '../boot/loader.js';
import { extractDeb, fetchDeb, readModuleFile, resolveKernelPackage, Stage1Error, type Log } from './debs.js';

/**
 * NIC drivers for the machines pxeherd is tested on (QEMU e1000/virtio) and common Intel boards,
 * and disk drivers (virtio, NVMe, AHCI/SATA) so the hardware inventory sees the disks.
 */
export const DEFAULT_MODULES = ['e1000', 'e1000e', 'virtio_net', 'virtio_pci', 'virtio_blk', 'nvme', 'ahci', 'sd_mod'];

/** Console on screen and serial: the last console= is /dev/console, where the node's shell writes. */
export const STAGE1_CMDLINE = 'console=tty0 console=ttyS0,115200';
/** arm64 machines (QEMU virt, most servers) have a PL011 UART: ttyAMA0. */
export const STAGE1_CMDLINE_ARM64 = 'console=tty0 console=ttyAMA0,115200';

export function stage1Cmdline(arch: CpuArch): string {
  return arch === 'arm64' ? STAGE1_CMDLINE_ARM64 : STAGE1_CMDLINE;
}

export interface BuildOptions {
  /** Where vmlinuz and initrd.img are written. */
  outDir: string;
  /** Downloaded .deb files and unpacked kernel pieces are kept here between builds. */
  cacheDir: string;
  /** Template directories searched for stage1/init and stage1/udhcpc.script (override first). */
  templatesDirs: string[];
  /** e.g. linux-image-6.1.0-28-amd64; default: what linux-image-amd64 depends on. */
  kernelPackage?: string;
  modules?: string[];
  /** The CPU the image is for (default x86_64): kernel and busybox come from Debian's packages of that architecture. */
  arch?: CpuArch;
  log?: Log;
}

export interface BuildResult {
  kernel: string;
  initrd: string;
  kernelVersion: string;
  kernelPackage: string;
  /** Modules in load order. */
  modules: string[];
  initrdBytes: number;
  cmdline: string;
  /** True when the kernel pieces came from the cache without unpacking the package. */
  cached: boolean;
}

interface KernelPieces {
  version: string;
  vmlinuz: string;
  /** Load order and file for each module, decompressed. */
  modules: { name: string; file: string }[];
}

export function findTemplate(dirs: string[], rel: string): string {
  for (const d of dirs) {
    const f = path.join(d, rel);
    if (fs.existsSync(f)) return f;
  }
  throw new Stage1Error(`template ${rel} not found in ${dirs.join(', ')}`);
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/**
 * The wanted modules and their dependencies, in load order, read (decompressed) from a
 * kernel's module directory: an unpacked kernel package's, or an image's own
 * /lib/modules/<version>. `label` names the source in errors.
 */
export function modulesFromDir(modRoot: string, wanted: string[], label: string): { order: string[]; bodies: Map<string, Buffer> } {
  if (!fs.existsSync(modRoot)) throw new Stage1Error(`${label} has no module directory ${modRoot}`);
  const files = new Map<string, string>();
  for (const f of walk(modRoot)) {
    const m = /\/([^/]+)\.ko(\.xz|\.zst|\.gz)?$/.exec(f);
    if (m) files.set(moduleName(m[1]!), f);
  }
  const builtinFile = path.join(modRoot, 'modules.builtin');
  const builtin = new Set(
    fs.existsSync(builtinFile)
      ? fs
          .readFileSync(builtinFile, 'utf8')
          .split('\n')
          .map((l) => moduleName(path.basename(l).replace(/\.ko.*$/, '')))
      : [],
  );
  const bodies = new Map<string, Buffer>();
  const lookup = (name: string): ModuleFile | undefined => {
    const f = files.get(name);
    if (!f) return undefined;
    let body = bodies.get(name);
    if (!body) {
      body = readModuleFile(f, (b) => zlib.gunzipSync(b));
      bodies.set(name, body);
    }
    const info = readModinfo(body);
    if (!info.ok) throw new Stage1Error(`${path.relative(modRoot, f)}: ${info.error}`);
    return { path: f, depends: modDepends(info.info) };
  };
  const order = moduleLoadOrder(wanted.map(moduleName), lookup, (n) => builtin.has(n));
  if (!order.ok) throw new Stage1Error(`${order.error} (${label})`);
  return { order: order.order, bodies };
}

/**
 * The kernel and the module closure, unpacked once per (package file, module list) into
 * <cache>/stage1/<key>/ — a rebuild then needs neither apt nor dpkg-deb.
 */
function kernelPieces(deb: string, wanted: string[], cacheDir: string, log: Log): KernelPieces & { cached: boolean } {
  const key = `${path.basename(deb, '.deb')}-${crypto.createHash('sha256').update(wanted.join(',')).digest('hex').slice(0, 8)}`;
  const dir = path.join(cacheDir, 'stage1', key);
  const manifest = path.join(dir, 'manifest.json');
  try {
    const m = JSON.parse(fs.readFileSync(manifest, 'utf8')) as KernelPieces;
    if (fs.existsSync(m.vmlinuz) && m.modules.every((x) => fs.existsSync(x.file))) return { ...m, cached: true };
  } catch {
    /* not cached yet */
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-stage1-'));
  try {
    log(`unpacking ${path.basename(deb)}`);
    extractDeb(deb, tmp);
    const vmlinuz = fs.readdirSync(path.join(tmp, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Stage1Error(`${path.basename(deb)} has no boot/vmlinuz-*: is it a kernel image package?`);
    const version = vmlinuz.slice('vmlinuz-'.length);
    const modRoot = path.join(tmp, 'lib', 'modules', version);
    const { order, bodies } = modulesFromDir(modRoot, wanted, path.basename(deb));
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(path.join(dir, 'modules'), { recursive: true });
    const kernelOut = path.join(dir, 'vmlinuz');
    fs.copyFileSync(path.join(tmp, 'boot', vmlinuz), kernelOut);
    const modules = order.map((name) => {
      const file = path.join(dir, 'modules', `${name}.ko`);
      fs.writeFileSync(file, bodies.get(name)!);
      return { name, file };
    });
    const pieces: KernelPieces = { version, vmlinuz: kernelOut, modules };
    fs.writeFileSync(manifest, JSON.stringify(pieces, null, 2));
    return { ...pieces, cached: false };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** busybox from busybox-static (cached like the kernel). */
export function busyboxBinary(cacheDir: string, log: Log, arch: CpuArch = 'x86_64'): Buffer {
  const cached = path.join(cacheDir, 'stage1', arch === 'x86_64' ? 'busybox' : `busybox-${debianArch(arch)}`);
  if (fs.existsSync(cached)) return fs.readFileSync(cached);
  const deb = fetchDeb('busybox-static', path.join(cacheDir, 'debs'), log, arch === 'x86_64' ? undefined : debianArch(arch));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-busybox-'));
  try {
    extractDeb(deb, tmp);
    const bin = path.join(tmp, 'bin', 'busybox');
    if (!fs.existsSync(bin)) throw new Stage1Error(`${path.basename(deb)} has no bin/busybox`);
    fs.mkdirSync(path.dirname(cached), { recursive: true });
    fs.copyFileSync(bin, cached);
    return fs.readFileSync(cached);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Pure: the initramfs file list. */
export function initramfsEntries(p: { init: Buffer; udhcpcScript: Buffer; inventoryScript?: Buffer; busybox: Buffer; modules: { name: string; data: Buffer }[]; buildInfo: string; extra?: CpioEntry[] }): CpioEntry[] {
  const dirs = ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'run', 'etc', 'etc/pxeherd', 'lib', 'lib/modules', 'root', 'var'];
  // Extra programs (an image's unsquashfs and its libraries) bring their own parents: once each.
  const extra = (p.extra ?? []).filter((e) => !(e.type === 'dir' && dirs.includes(e.name)));
  return [
    ...dirs.map((name): CpioEntry => ({ type: 'dir', name, mode: name === 'tmp' ? 0o1777 : 0o755 })),
    // The kernel opens /dev/console for init before anything is mounted.
    { type: 'char', name: 'dev/console', major: 5, minor: 1, mode: 0o600 },
    { type: 'char', name: 'dev/null', major: 1, minor: 3, mode: 0o666 },
    { type: 'file', name: 'bin/busybox', data: p.busybox, mode: 0o755 },
    { type: 'symlink', name: 'bin/sh', target: 'busybox' },
    { type: 'file', name: 'init', data: p.init, mode: 0o755 },
    { type: 'file', name: 'etc/udhcpc.script', data: p.udhcpcScript, mode: 0o755 },
    { type: 'file', name: 'etc/pxeherd/build-info', data: Buffer.from(p.buildInfo), mode: 0o644 },
    // The hardware collector /init runs before asking for init (POST /inventory).
    ...(p.inventoryScript ? [{ type: 'file', name: 'etc/pxeherd/inventory.sh', data: p.inventoryScript, mode: 0o755 } as CpioEntry] : []),
    ...p.modules.map((m): CpioEntry => ({ type: 'file', name: `lib/modules/${m.name}.ko`, data: m.data, mode: 0o644 })),
    { type: 'file', name: 'lib/modules/load.order', data: Buffer.from(p.modules.map((m) => `${m.name}.ko\n`).join('')), mode: 0o644 },
    ...extra,
  ];
}

/** The stage-one initramfs (gzip'd newc cpio): templates' init scripts, busybox, modules in load order. */
export function stage1Initrd(p: { templatesDirs: string[]; busybox: Buffer; modules: { name: string; data: Buffer }[]; buildInfo: string; extra?: CpioEntry[] }): Buffer {
  const entries = initramfsEntries({
    init: fs.readFileSync(findTemplate(p.templatesDirs, 'stage1/init')),
    udhcpcScript: fs.readFileSync(findTemplate(p.templatesDirs, 'stage1/udhcpc.script')),
    inventoryScript: fs.readFileSync(findTemplate(p.templatesDirs, 'stage1/inventory.sh')),
    busybox: p.busybox,
    modules: p.modules,
    buildInfo: p.buildInfo,
    extra: p.extra,
  });
  return zlib.gzipSync(writeCpio(entries), { level: 9 });
}

/** Build vmlinuz + initrd.img (gzip'd newc cpio) into outDir. */
export function buildStage1(o: BuildOptions): BuildResult {
  const log = o.log ?? (() => {});
  const wanted = (o.modules ?? DEFAULT_MODULES).map(moduleName);
  const debDir = path.join(o.cacheDir, 'debs');
  const arch = o.arch ?? 'x86_64';
  const foreign = arch === 'x86_64' ? undefined : debianArch(arch);
  const pkg = o.kernelPackage ?? resolveKernelPackage(debDir, log, `linux-image-${debianArch(arch)}`, foreign);
  const deb = fetchDeb(pkg, debDir, log, foreign);
  const k = kernelPieces(deb, wanted, o.cacheDir, log);
  const busybox = busyboxBinary(o.cacheDir, log, arch);
  const initrd = stage1Initrd({
    templatesDirs: o.templatesDirs,
    busybox,
    modules: k.modules.map((m) => ({ name: m.name, data: fs.readFileSync(m.file) })),
    buildInfo: `kernel=${k.version}\npackage=${pkg}\narch=${arch}\nmodules=${k.modules.map((m) => m.name).join(',')}\n`,
  });
  fs.mkdirSync(o.outDir, { recursive: true });
  const kernelOut = path.join(o.outDir, 'vmlinuz');
  const initrdOut = path.join(o.outDir, 'initrd.img');
  // Write-then-rename: a node booting meanwhile never gets half a file.
  for (const [dst, write] of [
    [kernelOut, (f: string) => fs.copyFileSync(k.vmlinuz, f)],
    [initrdOut, (f: string) => fs.writeFileSync(f, initrd)],
  ] as const) {
    const tmp = path.join(o.outDir, `.${path.basename(dst)}.tmp-${process.pid}`);
    write(tmp);
    fs.renameSync(tmp, dst);
  }
  log(`built ${initrdOut} (${(initrd.length / 1048576).toFixed(2)} MiB, modules: ${k.modules.map((m) => m.name).join(' ')}) and ${kernelOut} (${k.version})`);
  return {
    kernel: kernelOut,
    initrd: initrdOut,
    kernelVersion: k.version,
    kernelPackage: pkg,
    modules: k.modules.map((m) => m.name),
    initrdBytes: initrd.length,
    cmdline: stage1Cmdline(arch),
    cached: k.cached,
  };
}

/**
 * The arm64 network GRUB (Debian's signed grubnetaa64.efi from grub-efi-arm64-signed) and its
 * http.mod (grub-efi-arm64-bin), fetched as arm64 packages like the kernel and copied into the
 * TFTP root as grubaa64.efi and grub/arm64-efi/http.mod — an amd64 master cannot install arm64
 * packages, so building the arm64 stage one brings the arm64 loader along. Never over a file
 * that is there already. Returns the names copied.
 */
export function installArm64Grub(tftpRoot: string, cacheDir: string, log: Log): string[] {
  const debDir = path.join(cacheDir, 'debs');
  const wanted = [
    { pkg: 'grub-efi-arm64-signed', src: 'usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed', dest: 'grubaa64.efi' },
    { pkg: 'grub-efi-arm64-bin', src: 'usr/lib/grub/arm64-efi/http.mod', dest: 'grub/arm64-efi/http.mod' },
  ];
  const copied: string[] = [];
  for (const w of wanted) {
    const dest = path.join(tftpRoot, w.dest);
    if (fs.existsSync(dest)) continue;
    const deb = fetchDeb(w.pkg, debDir, log, 'arm64');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-arm64-grub-'));
    try {
      extractDeb(deb, tmp);
      const src = path.join(tmp, w.src);
      if (!fs.existsSync(src)) throw new Stage1Error(`${path.basename(deb)} has no ${w.src}`);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.copyFileSync(src, dest, fs.constants.COPYFILE_EXCL);
      copied.push(w.dest);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (copied.length) log(`copied the arm64 network GRUB into ${tftpRoot}: ${copied.join(', ')}`);
  return copied;
}
