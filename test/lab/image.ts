/**
 * A Debian image with a root filesystem for the stateless e2e and bench, built once per run
 * into the caller's directory, in the contract's layout (<statedir>/vnfs/<name>/r<rev>/):
 *   rootfs.squashfs  mmdebstrap bookworm (systemd, udev, dbus, openssh-server, iproute2),
 *                    packed with mksquashfs -comp zstd; revision N carries /etc/pxeherd-test-rev = N
 *   vmlinuz, initrd.img   pxeherd's stage one (`pxeherd stage1 build`) with loop, squashfs and
 *                    overlay beside the NIC drivers
 *   manifest.json    sha256 and size of each artifact
 * TODO(integrator): once the images branch has `pxeherd vnfs build --debian`, build with it
 * instead (this helper predates it and writes the same layout).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { which } from './lab.js';
import { pxeherd } from '../helpers/cli.js';

export const IMAGE_PACKAGES = ['systemd-sysv', 'udev', 'dbus', 'openssh-server', 'iproute2', 'libpam-systemd'];
export const IMAGE_MODULES = ['e1000', 'e1000e', 'virtio_net', 'virtio_pci', 'loop', 'squashfs', 'overlay'];

function mirrorReachable(): boolean {
  try {
    execFileSync('getent', ['hosts', 'deb.debian.org'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Packages of the fallback image taken from apt's cache (/var/cache/apt/archives) over the host's. */
const CACHED_DEBS = ['systemd', 'libsystemd-shared', 'libsystemd0', 'libudev1', 'udev', 'systemd-sysv', 'libpam-systemd', 'kmod'];
const ARCHIVES = '/var/cache/apt/archives';

function cachedDeb(pkg: string): string | undefined {
  try {
    return fs.readdirSync(ARCHIVES).filter((f) => f.startsWith(`${pkg}_`) && f.endsWith('_amd64.deb')).sort().pop();
  } catch {
    return undefined;
  }
}

/**
 * How the root filesystem is made: mmdebstrap from Debian's mirror; when the mirror cannot be
 * reached (an offline lab), the same Debian packages as this machine has them installed
 * (dpkg's file lists) with udev and systemd from apt's package cache.
 */
function producer(): 'mmdebstrap' | 'host-packages' | undefined {
  if (which('mmdebstrap') && mirrorReachable()) return 'mmdebstrap';
  if (which('dpkg-query') && fs.existsSync('/usr/sbin/sshd') && fs.existsSync('/lib/systemd/systemd') && CACHED_DEBS.every(cachedDeb)) return 'host-packages';
  return undefined;
}

/** Why the image cannot be built here, or undefined. */
export function imageUnavailable(): string | undefined {
  for (const b of ['mksquashfs', 'tar']) if (!which(b)) return `needs ${b} (Debian package squashfs-tools, tar)`;
  if (!producer()) return "needs mmdebstrap and Debian's mirror (or, offline, systemd and openssh-server installed here with udev in apt's cache)";
  return undefined;
}

/** The installed packages `roots` depend on (Depends, Pre-Depends; first installed alternative). */
function installedClosure(roots: string[]): string[] {
  const info = new Map<string, string>();
  const out = execFileSync('dpkg-query', ['-W', '-f', '${Package}\t${db:Status-Abbrev}\t${Essential}\t${Pre-Depends}, ${Depends}\n'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const essential: string[] = [];
  for (const line of out.split('\n')) {
    const [pkg, status, ess, deps] = line.split('\t');
    if (!pkg || !status?.startsWith('ii')) continue;
    info.set(pkg, deps ?? '');
    if (ess === 'yes') essential.push(pkg);
  }
  const seen = new Set<string>();
  const queue = [...essential, ...roots];
  while (queue.length) {
    const p = queue.shift()!.replace(/:.*$/, '');
    if (seen.has(p) || !info.has(p)) continue;
    seen.add(p);
    for (const dep of info.get(p)!.split(',')) {
      const alts = dep.split('|').map((a) => a.trim().split(/[\s(]/)[0]!.replace(/:.*$/, '')).filter(Boolean);
      const pick = alts.find((a) => info.has(a));
      if (pick) queue.push(pick);
    }
  }
  return [...seen].sort();
}

function hostPackagesTree(tree: string, say: (m: string) => void): void {
  const pkgs = installedClosure(['systemd-sysv', 'systemd', 'dbus', 'openssh-server', 'openssh-client', 'iproute2', 'libpam-systemd', 'kmod', 'login', 'passwd', 'adduser', 'libkmod2', 'libacl1']);
  say(`root filesystem from ${pkgs.length} installed Debian packages (mirror unreachable) + ${CACHED_DEBS.join(' ')} from apt's cache`);
  // merged /usr, as Debian bookworm has it
  for (const d of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64', 'etc', 'var', 'root', 'tmp', 'proc', 'sys', 'dev', 'run', 'home']) fs.mkdirSync(path.join(tree, d), { recursive: true });
  for (const l of ['bin', 'sbin', 'lib', 'lib64']) fs.symlinkSync(`usr/${l}`, path.join(tree, l));
  fs.chmodSync(path.join(tree, 'tmp'), 0o1777);
  const files = new Set<string>();
  for (const p of pkgs) {
    let list = '';
    try {
      list = execFileSync('dpkg-query', ['-L', p], { encoding: 'utf8', maxBuffer: 64 << 20 });
    } catch {
      continue;
    }
    for (const f of list.split('\n')) {
      if (!f.startsWith('/') || f.startsWith('/usr/share/doc/') || f.startsWith('/usr/share/man/') || f.startsWith('/usr/share/locale/') || f.startsWith('/usr/share/info/')) continue;
      try {
        const st = fs.lstatSync(f);
        if (!st.isDirectory()) files.add(f.slice(1));
      } catch {
        /* listed but not there (diverted, removed) */
      }
    }
  }
  const listFile = path.join(tree, '..', 'files.list');
  fs.writeFileSync(listFile, [...files].join('\n') + '\n');
  execFileSync('sh', ['-c', `tar -C / -cf - --no-recursion -T "$1" | tar -C "$2" -xpf - --keep-directory-symlink --numeric-owner`, 'sh', listFile, tree], { stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 64 << 20 });
  fs.rmSync(listFile);
  for (const pkg of CACHED_DEBS) {
    const deb = path.join(ARCHIVES, cachedDeb(pkg)!);
    execFileSync('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -C "$2" -xpf - --keep-directory-symlink --numeric-owner`, 'sh', deb, tree], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  // What maintainer scripts would have made: the system users (sysusers makes the rest at boot).
  for (const f of ['passwd', 'group', 'shadow', 'gshadow']) fs.copyFileSync(`/etc/${f}`, path.join(tree, 'etc', f));
  fs.writeFileSync(path.join(tree, 'etc/fstab'), '# stateless: the root is a squashfs with a tmpfs overlay\n');
  fs.writeFileSync(path.join(tree, 'etc/hostname'), 'image\n');
  fs.writeFileSync(path.join(tree, 'etc/machine-id'), '');
  fs.rmSync(path.join(tree, 'etc/ssh'), { recursive: true, force: true });
  execFileSync('sh', ['-c', 'tar -C / -cf - etc/ssh/sshd_config etc/ssh/ssh_config etc/pam.d etc/security etc/login.defs etc/nsswitch.conf 2>/dev/null | tar -C "$1" -xpf -', 'sh', tree]);
  fs.mkdirSync(path.join(tree, 'etc/systemd/system/multi-user.target.wants'), { recursive: true });
  fs.symlinkSync('/lib/systemd/system/ssh.service', path.join(tree, 'etc/systemd/system/multi-user.target.wants/ssh.service'));
  fs.symlinkSync('/lib/systemd/system/ssh.service', path.join(tree, 'etc/systemd/system/sshd.service'));
  fs.writeFileSync(path.join(tree, 'etc/systemd/system/multi-user.target.wants/.keep'), '');
  fs.rmSync(path.join(tree, 'etc/systemd/system/multi-user.target.wants/.keep'));
}

function sha(file: string): { sha256: string; size: number } {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(1 << 20);
  let n: number;
  let size = 0;
  while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) {
    h.update(buf.subarray(0, n));
    size += n;
  }
  fs.closeSync(fd);
  return { sha256: h.digest('hex'), size };
}

export interface TestImage {
  name: string;
  revs: number[];
  kernel: string;
  initrd: string;
}

/** Build revisions 1..revs of VNFS `name` under statedir; progress on stderr. */
export function buildTestImage(o: { dir: string; statedir: string; config: string; name: string; revs: number }): TestImage {
  const say = (m: string) => process.stderr.write(`# image: ${m}\n`);
  const t0 = Date.now();
  const tarball = path.join(o.dir, 'rootfs.tar');
  const tree = path.join(o.dir, 'tree');
  fs.mkdirSync(tree);
  if (producer() === 'host-packages') hostPackagesTree(tree, say);
  else {
  say(`mmdebstrap bookworm (${IMAGE_PACKAGES.join(' ')})`);
  execFileSync(
    'mmdebstrap',
    [
      '--quiet',
      '--variant=minbase',
      `--include=${IMAGE_PACKAGES.join(',')}`,
      '--dpkgopt=path-exclude=/usr/share/doc/*',
      '--dpkgopt=path-exclude=/usr/share/man/*',
      '--dpkgopt=path-exclude=/usr/share/locale/*',
      // The image's own host keys are replaced by the master's at boot; an image keeps none.
      '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*; : > "$1"/etc/machine-id',
      'bookworm',
      tarball,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], timeout: 1_200_000 },
  );
  execFileSync('tar', ['-xpf', tarball, '-C', tree, '--numeric-owner']);
  fs.rmSync(tarball);
  }
  say(`stage one with ${IMAGE_MODULES.join(' ')}`);
  const s1 = path.join(o.dir, 'stage1');
  const b = pxeherd(['stage1', 'build', '--no-register', '--out', s1, '--modules', IMAGE_MODULES.join(','), '--json'], { config: o.config });
  if (b.code !== 0) throw new Error(`stage1 build failed: ${b.stderr}`);
  const built = JSON.parse(b.stdout) as { kernelVersion?: string; kernel: string; initrd: string };
  const kernelVersion = built.kernelVersion ?? 'unknown';
  const revs: number[] = [];
  for (let rev = 1; rev <= o.revs; rev++) {
    fs.writeFileSync(path.join(tree, 'etc/pxeherd-test-rev'), `${rev}\n`);
    const out = path.join(o.statedir, 'vnfs', o.name, `r${rev}`);
    fs.mkdirSync(out, { recursive: true });
    say(`r${rev}: mksquashfs`);
    execFileSync('mksquashfs', [tree, path.join(out, 'rootfs.squashfs'), '-comp', 'zstd', '-noappend', '-quiet', '-no-progress'], { stdio: 'ignore' });
    fs.copyFileSync(built.kernel, path.join(out, 'vmlinuz'));
    fs.copyFileSync(built.initrd, path.join(out, 'initrd.img'));
    const artifacts = Object.fromEntries(['vmlinuz', 'initrd.img', 'rootfs.squashfs'].map((f) => [f, sha(path.join(out, f))]));
    const manifest = { vnfs: o.name, rev, parent: rev > 1 ? rev - 1 : null, arch: 'x86_64', source: 'debian:bookworm', comment: 'pxeherd test image', createdAt: Date.now(), kernel: kernelVersion, kernelVersions: [kernelVersion], artifacts, tree: { files: 0, bytes: 0 } };
    fs.writeFileSync(path.join(out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    revs.push(rev);
  }
  fs.rmSync(tree, { recursive: true, force: true });
  fs.rmSync(s1, { recursive: true, force: true });
  say(`${o.revs} revision(s) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  const last = revs[revs.length - 1];
  return { name: o.name, revs, kernel: `r${last}/vmlinuz`, initrd: `r${last}/initrd.img` };
}
