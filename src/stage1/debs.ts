import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Debian packages for the stage-one image: found with apt-cache, fetched with
 * `apt-get download` into a cache directory (so rebuilds need no network), unpacked
 * with dpkg-deb. The only place that runs apt.
 */

export type Log = (msg: string) => void;

export class Stage1Error extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Stage1Error';
  }
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): { ok: boolean; out: string; err: string } {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) return { ok: false, out: '', err: `${cmd}: ${r.error.message}` };
  return { ok: r.status === 0, out: r.stdout, err: r.stderr };
}

/** $XDG_CACHE_HOME/pxeherd, else ~/.cache/pxeherd. */
export function defaultCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'pxeherd');
}

/** Pure: the linux-image-* package a meta package depends on, from `apt-cache depends` output. */
export function parseKernelDepends(out: string): string | undefined {
  const m = /Depends:\s*(linux-image-[0-9][^\s<>:]*)/.exec(out);
  return m?.[1];
}

/** Pure: deb file names in a directory listing for one package, newest version last (by name order of versions). */
export function debsFor(files: string[], pkg: string, arch?: string): string[] {
  return files.filter((f) => f.startsWith(`${pkg}_`) && (arch ? f.endsWith(`_${arch}.deb`) || f.endsWith('_all.deb') : f.endsWith('.deb'))).sort();
}

let updated = false;
function aptUpdate(log: Log): void {
  if (updated) return;
  updated = true;
  log('running apt-get update');
  const r = run('apt-get', ['update', '-q']);
  if (!r.ok) log(`apt-get update failed: ${r.err.trim().split('\n').pop()}`);
}

/**
 * The generic-flavour kernel package to use (linux-image-amd64's current dependency),
 * or the newest cached one when apt knows nothing.
 */
export function resolveKernelPackage(debDir: string, log: Log, meta = 'linux-image-amd64', arch?: string): string {
  const flavour = arch ?? 'amd64';
  for (let attempt = 0; attempt < 2; attempt++) {
    // pkg:arch reads the lists of a foreign architecture (dpkg --add-architecture arm64).
    const r = run('apt-cache', ['depends', arch ? `${meta}:${arch}` : meta]);
    const pkg = r.ok ? parseKernelDepends(r.out) : undefined;
    if (pkg) return pkg;
    if (attempt === 0) aptUpdate(log);
  }
  const cached = listDir(debDir).filter((f) => new RegExp(`^linux-image-[0-9].*-${flavour}_.*\\.deb$`).test(f) && !f.includes('-cloud-')).sort();
  if (cached.length) return cached[cached.length - 1]!.split('_')[0]!;
  const foreign = arch && arch !== 'amd64' ? ` (for ${arch}: dpkg --add-architecture ${arch} && apt-get update)` : '';
  throw new Stage1Error(`cannot find the kernel package: "apt-cache depends ${meta}${arch ? `:${arch}` : ''}" names none (run apt-get update${foreign}, or give --kernel-package linux-image-6.1.0-N-${flavour})`);
}

function listDir(d: string): string[] {
  try {
    return fs.readdirSync(d);
  } catch {
    return [];
  }
}

/** The cached .deb for a package, downloading it first if needed. */
export function fetchDeb(pkg: string, debDir: string, log: Log, arch?: string): string {
  if (!/^[a-z0-9][a-z0-9.+-]+$/.test(pkg)) throw new Stage1Error(`"${pkg}" is not a Debian package name`);
  fs.mkdirSync(debDir, { recursive: true });
  const have = debsFor(listDir(debDir), pkg, arch);
  if (have.length) return path.join(debDir, have[have.length - 1]!);
  let last = '';
  const spec = arch ? `${pkg}:${arch}` : pkg;
  for (let attempt = 0; attempt < 2; attempt++) {
    log(`downloading ${spec} (apt-get download) into ${debDir}`);
    const r = run('apt-get', ['download', '-q', spec], { cwd: debDir });
    const now = debsFor(listDir(debDir), pkg, arch);
    if (r.ok && now.length) return path.join(debDir, now[now.length - 1]!);
    last = (r.err || r.out).trim().split('\n').filter((l) => !l.startsWith('W:')).pop() ?? '';
    if (attempt === 0) aptUpdate(log);
  }
  const foreign = arch && arch !== 'amd64' ? ` (a foreign architecture needs: dpkg --add-architecture ${arch} && apt-get update)` : '';
  throw new Stage1Error(`cannot download ${spec}: ${last || 'apt-get download failed'}${foreign}`);
}

/** Unpack a .deb's files into dir (dpkg-deb -x). */
export function extractDeb(deb: string, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const r = run('dpkg-deb', ['-x', deb, dir]);
  if (!r.ok) throw new Stage1Error(`dpkg-deb -x ${deb} failed: ${r.err.trim()}`);
}

/** Decompress a module file (.ko.xz / .ko.zst / .ko.gz) at build time; the initramfs holds plain .ko. */
export function readModuleFile(file: string, gunzip: (b: Buffer) => Buffer): Buffer {
  if (file.endsWith('.ko')) return fs.readFileSync(file);
  if (file.endsWith('.ko.gz')) return gunzip(fs.readFileSync(file));
  const tool = file.endsWith('.ko.xz') ? 'xz' : file.endsWith('.ko.zst') ? 'zstd' : undefined;
  if (!tool) throw new Stage1Error(`unknown module file type: ${file}`);
  const r = spawnSync(tool, ['-dc', file], { maxBuffer: 256 << 20 });
  if (r.error || r.status !== 0) throw new Stage1Error(`${tool} -dc ${file} failed: ${r.error?.message ?? r.stderr.toString().trim()} (install ${tool === 'xz' ? 'xz-utils' : 'zstd'})`);
  return r.stdout;
}
