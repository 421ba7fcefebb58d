import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { busyboxBinary, findTemplate, modulesFromDir, stage1Initrd, DEFAULT_MODULES } from '../stage1/build.js';
import { Stage1Error } from '../stage1/debs.js';
import type { CpioEntry } from '../stage1/cpio.js';
import { hostBinaryEntries, whichBinary } from '../stage1/hostbin.js';
import { ImageError } from './errors.js';
import { chooseKernel, kernelVersions } from './kernel.js';
import type { ArtifactInfo, ArtifactName, ImageManifest } from './manifest.js';
import { treeDigest, walkTree } from './tree.js';

/**
 * Packing a revision into what nodes download (<statedir>/vnfs/<name>/r<rev>/):
 *
 * - vmlinuz: the image's own kernel (/boot/vmlinuz-<ver>).
 * - initrd.img: pxeherd's stage one (templates/stage1/init + busybox) with the image's OWN
 *   modules from /lib/modules/<ver>: NICs and disks (the stage one's defaults) plus squashfs,
 *   overlay and loop, which mounting the root filesystem needs. Matching modules, always.
 * - rootfs.squashfs: mksquashfs with zstd. Why squashfs rather than a compressed cpio for a
 *   tmpfs root: the node mounts it (loop + overlay with a tmpfs upper) and reads only the pages
 *   it uses, so nothing is unpacked at boot and the image does not sit in RAM twice; zstd
 *   decompresses several times faster than gzip. It is reproducible: mksquashfs sorts
 *   directories, `-reproducible` orders its parallel output, and the superblock time is
 *   fixed (`-mkfs-time 0`); file times are the tree's own. Same tree -> same sha256.
 *   What squashfs keeps: owners (numeric uid/gid), modes including setuid/setgid/sticky,
 *   hard links (one inode, several names), symlinks, device nodes, fifos and sockets, and
 *   extended attributes in the security., trusted. and user. namespaces (file capabilities
 *   are security.capability, so `ping` keeps cap_net_raw). What it does not keep: POSIX ACLs
 *   (system.* xattrs are not stored), sub-second timestamps (seconds only), atime/ctime.
 *   Paths listed in <image>/etc/pxeherd/excludes (one per line, globs, '#' comments) are left out.
 *
 * An artifact whose inputs are the same as the parent revision's (same kernel file, same
 * modules and stage-one templates, same tree) is a hard link to the parent's: not packed again.
 */

/** Modules the image's stage one carries on top of the NIC/disk defaults: to mount rootfs.squashfs under an overlay. */
export const IMAGE_MODULES = [...DEFAULT_MODULES, 'squashfs', 'overlay', 'loop'];

/** mksquashfs options: part of the rootfs input digest, so a change of options repacks. */
export const SQUASHFS_OPTIONS = ['-comp', 'zstd', '-Xcompression-level', '9', '-b', '1M', '-noappend', '-reproducible', '-xattrs', '-mkfs-time', '0'];

export interface PackOptions {
  name: string;
  tree: string;
  /** The revision's extended attributes (from readXattrs). */
  xattrs: Map<string, string>;
  /** Where the artifacts are written (a staging directory). */
  outDir: string;
  /** --kernel VER */
  kernel?: string;
  parent?: { manifest: ImageManifest; dir: string };
  cacheDir: string;
  templatesDirs: string[];
  progress: (msg: string) => void;
  /** Show mksquashfs's progress bar (a terminal). */
  tty?: boolean;
}

export interface PackResult {
  kernel: string;
  kernelVersions: string[];
  artifacts: Partial<Record<ArtifactName, ArtifactInfo>>;
  inputs: Partial<Record<ArtifactName, string>>;
  modules: string[];
  /** Artifacts linked from the parent revision instead of packed. */
  reused: ArtifactName[];
  ms: Partial<Record<ArtifactName, number>>;
}

export function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function digest(parts: string[]): string {
  return crypto.createHash('sha256').update(parts.join('\0')).digest('hex');
}

function fileId(file: string): string {
  const st = fs.statSync(file);
  return `${st.dev}:${st.ino}:${st.size}:${Math.floor(st.mtimeMs)}`;
}

/** Pure: mksquashfs exclude patterns from an excludes file (leading '/' dropped; blanks and '#' comments ignored). */
export function parseExcludes(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.replace(/^\/+/, '').replace(/\/+$/, ''))
    .filter((l) => l && !l.split('/').includes('..'));
}

let squashfsVersion: string | undefined;
function mksquashfsVersion(): string {
  if (squashfsVersion) return squashfsVersion;
  const r = spawnSync('mksquashfs', ['-version'], { encoding: 'utf8' });
  if (r.error) throw new ImageError('mksquashfs is not installed: install the Debian package "squashfs-tools"');
  return (squashfsVersion = (r.stdout || '').split('\n')[0] ?? '');
}

/** Run mksquashfs (async: a long pack keeps signals and progress working). */
export function mksquashfs(tree: string, out: string, opts: { excludes?: string[]; extra?: string[]; tty?: boolean }): Promise<void> {
  const args = [tree, out, ...(opts.extra ?? SQUASHFS_OPTIONS)];
  let ef: string | undefined;
  if (opts.excludes?.length) {
    ef = `${out}.excludes`;
    fs.writeFileSync(ef, opts.excludes.join('\n') + '\n');
    args.push('-wildcards', '-ef', ef);
  }
  args.push(...(opts.tty ? ['-quiet'] : ['-quiet', '-no-progress']));
  return new Promise((resolve, reject) => {
    const p = spawn('mksquashfs', args, { stdio: ['ignore', opts.tty ? 'inherit' : 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.on('error', (e) => reject(new ImageError(`mksquashfs: ${e.message} (install the Debian package "squashfs-tools")`)));
    p.on('close', (code, signal) => {
      if (ef) fs.rmSync(ef, { force: true });
      if (code === 0) resolve();
      else {
        const msg = err.trim().split('\n').filter(Boolean).slice(-2).join('; ');
        const full = /No space left|ENOSPC/i.test(err) ? ' (the disk is full: free space under the state directory and try again)' : '';
        reject(new Error(`mksquashfs failed (${signal ?? `exit ${code}`}): ${msg}${full}`));
      }
    });
  });
}

/** The stage one for a kernel of the image, with its own modules (pure of the file system except reads). */
function imageInitrd(tree: string, version: string, o: PackOptions): { data: Buffer; modules: string[] } {
  const modRoot = path.join(tree, 'lib', 'modules', version);
  let mods: { order: string[]; bodies: Map<string, Buffer> };
  try {
    mods = modulesFromDir(modRoot, IMAGE_MODULES, `kernel ${version} of image ${o.name}`);
  } catch (e) {
    if (e instanceof Stage1Error) throw new ImageError(`${e.message}: the image's /lib/modules/${version} must hold the modules the stage one loads (${IMAGE_MODULES.join(', ')})`, `/lib/modules/${version}`);
    throw e;
  }
  const busybox = busyboxBinary(o.cacheDir, o.progress);
  const unsquash = stageOneUnsquashfs(tree);
  const data = stage1Initrd({
    templatesDirs: o.templatesDirs,
    busybox,
    modules: mods.order.map((name) => ({ name, data: mods.bodies.get(name)! })),
    buildInfo: `kernel=${version}\nimage=${o.name}\nmodules=${mods.order.join(',')}\nunsquashfs=${unsquash ? 'usr/bin/unsquashfs' : 'none'}\n`,
    extra: unsquash?.entries,
  });
  return { data, modules: mods.order };
}

/**
 * The master's unsquashfs with its libraries, for vnfs_mode=tmpfs (10-vnfs-root unpacks the
 * image into a tmpfs): only when the image is of the master's architecture and the master has
 * it (squashfs-tools, which packing needs anyway). Otherwise the stage one goes without, and
 * tmpfs mode says so on the node's console.
 */
function stageOneUnsquashfs(tree: string): { entries: CpioEntry[]; files: string[] } | undefined {
  const bin = whichBinary('unsquashfs');
  if (!bin || process.arch !== 'x64') return undefined;
  // An arm64 image (its loader is there) gets no x86-64 program.
  if (['lib/ld-linux-aarch64.so.1', 'usr/lib/ld-linux-aarch64.so.1'].some((f) => fs.existsSync(path.join(tree, f)))) return undefined;
  try {
    return hostBinaryEntries(bin);
  } catch {
    return undefined;
  }
}

/** Input digest of the stage one: templates, busybox, kernel version and every module file's identity. */
function initrdInputs(tree: string, version: string, o: PackOptions): string {
  const parts = [version, IMAGE_MODULES.join(',')];
  for (const t of ['stage1/init', 'stage1/udhcpc.script', 'stage1/inventory.sh']) parts.push(sha256File(findTemplate(o.templatesDirs, t)));
  const bb = path.join(o.cacheDir, 'stage1', 'busybox');
  parts.push(fs.existsSync(bb) ? sha256File(bb) : 'no-busybox-yet');
  // unsquashfs and the libraries it was linked with, as the master has them now.
  const us = stageOneUnsquashfs(tree);
  parts.push(us ? us.files.map((f) => `${f}:${sha256File(fs.realpathSync(f))}`).join(',') : 'no-unsquashfs');
  const modRoot = path.join(tree, 'lib', 'modules', version);
  if (fs.existsSync(modRoot)) walkTree(modRoot, ({ rel, st }) => st.isFile() && parts.push(`${rel}:${st.dev}:${st.ino}:${st.size}:${Math.floor(st.mtimeMs)}`));
  return digest(parts);
}

export async function packRevision(o: PackOptions): Promise<PackResult> {
  fs.mkdirSync(o.outDir, { recursive: true });
  const versions = kernelVersions(o.tree);
  const kernel = chooseKernel(versions, o.kernel, o.name) ?? '';
  const artifacts: PackResult['artifacts'] = {};
  const inputs: PackResult['inputs'] = {};
  const reused: ArtifactName[] = [];
  const ms: PackResult['ms'] = {};
  let modules: string[] = o.parent?.manifest.modules ?? [];

  const reuse = (a: ArtifactName, key: string): boolean => {
    const p = o.parent;
    if (!p || p.manifest.inputs?.[a] !== key || !p.manifest.artifacts[a]) return false;
    const src = path.join(p.dir, a);
    if (!fs.existsSync(src)) return false;
    fs.linkSync(src, path.join(o.outDir, a));
    artifacts[a] = { ...p.manifest.artifacts[a]! };
    inputs[a] = key;
    reused.push(a);
    return true;
  };
  const record = (a: ArtifactName, key: string) => {
    const f = path.join(o.outDir, a);
    artifacts[a] = { sha256: sha256File(f), size: fs.statSync(f).size };
    inputs[a] = key;
  };

  if (kernel) {
    const src = path.join(o.tree, 'boot', `vmlinuz-${kernel}`);
    let t = Date.now();
    const kKey = digest(['vmlinuz', fileId(src)]);
    if (!reuse('vmlinuz', kKey)) {
      fs.copyFileSync(src, path.join(o.outDir, 'vmlinuz'));
      record('vmlinuz', kKey);
    }
    ms.vmlinuz = Date.now() - t;
    t = Date.now();
    const iKey = initrdInputs(o.tree, kernel, o);
    if (!reuse('initrd.img', iKey)) {
      o.progress(`packing initrd.img: stage one with the modules of kernel ${kernel}`);
      const r = imageInitrd(o.tree, kernel, o);
      fs.writeFileSync(path.join(o.outDir, 'initrd.img'), r.data);
      modules = r.modules;
      // busybox may have been fetched just now: key on what was used.
      record('initrd.img', initrdInputs(o.tree, kernel, o));
    }
    ms['initrd.img'] = Date.now() - t;
  } else {
    o.progress(`warning: image ${o.name} has no kernel (/boot/vmlinuz-*): nodes cannot boot this revision until one is installed (vnfs exec ${o.name} -- apt-get install -y linux-image-amd64)`);
    modules = [];
  }

  const t = Date.now();
  const exFile = path.join(o.tree, 'etc', 'pxeherd', 'excludes');
  const excludes = fs.lstatSync(exFile, { throwIfNoEntry: false })?.isFile() ? parseExcludes(fs.readFileSync(exFile, 'utf8')) : [];
  const rKey = treeDigest(o.tree, o.xattrs, [mksquashfsVersion(), ...SQUASHFS_OPTIONS, ...excludes].join(' '));
  if (!reuse('rootfs.squashfs', rKey)) {
    o.progress(`packing rootfs.squashfs (mksquashfs, zstd)${excludes.length ? `, ${excludes.length} exclude pattern(s) from /etc/pxeherd/excludes` : ''}`);
    await mksquashfs(o.tree, path.join(o.outDir, 'rootfs.squashfs'), { excludes, tty: o.tty });
    record('rootfs.squashfs', rKey);
  }
  ms['rootfs.squashfs'] = Date.now() - t;
  if (reused.length) o.progress(`unchanged from revision ${o.parent!.manifest.rev}, linked: ${reused.join(', ')}`);
  return { kernel, kernelVersions: versions, artifacts, inputs, modules, reused, ms };
}
