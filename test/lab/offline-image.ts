/**
 * The stateless e2e's image when Debian's mirror cannot be reached (an offline lab): a root
 * filesystem from this machine's installed Debian packages (dpkg's file lists) with udev and
 * systemd from apt's package cache and the kernel pxeherd's stage-one builder cached, imported
 * with `pxeherd vnfs import` (so packing is pxeherd's own). With the mirror, the e2e uses the
 * images branch's shared image (test/lab/image.ts: `vnfs build`, built once per run) instead.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { which } from './lab.js';
import { pxeherd } from '../helpers/cli.js';

/** Where the e2e decides between the shared image and this one. */
export { mirrorReachable } from './image.js';

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

function hostPackagesAvailable(): boolean {
  if (!which('dpkg-query') || !fs.existsSync('/usr/sbin/sshd') || !fs.existsSync('/lib/systemd/systemd') || !CACHED_DEBS.every(cachedDeb)) return false;
  try {
    kernelDeb();
    return true;
  } catch {
    return false;
  }
}

/** Why the image cannot be built here, or undefined. */
export function offlineImageUnavailable(): string | undefined {
  for (const b of ['mksquashfs', 'tar']) if (!which(b)) return `needs ${b} (Debian package squashfs-tools, tar)`;
  if (!hostPackagesAvailable()) return 'offline image: needs systemd and openssh-server installed here, udev and systemd in apt\'s cache, a cached linux-image';
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
  for (const f of ['passwd', 'group']) fs.copyFileSync(`/etc/${f}`, path.join(tree, 'etc', f));
  // The accounts, never this machine's password hashes: every password field locked.
  for (const f of ['shadow', 'gshadow']) {
    const locked = fs.readFileSync(`/etc/${f}`, 'utf8').replace(/^([^:\n]*):[^:\n]*:/gm, '$1:*:');
    fs.writeFileSync(path.join(tree, 'etc', f), locked, { mode: 0o640 });
  }
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

/** ARGS may end with `-- CMD...`: the config goes through the environment, --json before `--`. */
export function cli(args: string[], config: string): string {
  const dd = args.indexOf('--');
  const full = dd < 0 ? [...args, '--json'] : [...args.slice(0, dd), '--json', ...args.slice(dd)];
  const r = pxeherd(full, { env: { PXEHERD_CONFIG: config } });
  if (r.code !== 0) throw new Error(`pxeherd ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.slice(-3000)}`);
  return r.stdout;
}

/** Revision 1 of VNFS `name` (with /etc/pxeherd-test-rev = 1) by `vnfs import`, offline. */
export function buildOfflineImage(o: { dir: string; config: string; name: string }): void {
  const say = (m: string) => process.stderr.write(`# image: ${m}\n`);
  const tree = path.join(o.dir, 'tree');
  fs.mkdirSync(tree);
  hostPackagesTree(tree, say);
  const deb = kernelDeb();
  say(`kernel from ${path.basename(deb)}`);
  execFileSync('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -C "$2" -xpf - --keep-directory-symlink --numeric-owner', 'sh', deb, tree], { stdio: ['ignore', 'ignore', 'inherit'] });
  fs.writeFileSync(path.join(tree, 'etc/pxeherd-test-rev'), '1\n');
  say('pxeherd vnfs import');
  cli(['vnfs', 'import', o.name, tree, '--comment', 'pxeherd e2e (offline)'], o.config);
  fs.rmSync(tree, { recursive: true, force: true });
}

/** The kernel package pxeherd's stage-one builder cached (offline image). */
function kernelDeb(): string {
  for (const dir of [path.join(process.env.HOME ?? '/root', '.cache/pxeherd/debs'), ARCHIVES]) {
    try {
      const f = fs.readdirSync(dir).filter((x) => /^linux-image-[0-9].*-amd64_.*\.deb$/.test(x) && !x.includes('-dbg')).sort().pop();
      if (f) return path.join(dir, f);
    } catch {
      /* no such cache */
    }
  }
  throw new Error('no linux-image .deb cached: run "pxeherd stage1 build" once while the mirror is reachable');
}
