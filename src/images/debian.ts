import fs from 'node:fs';
import path from 'node:path';
import { ImageError } from './errors.js';
import { runTool, tail } from './run.js';

/**
 * A Debian root filesystem from Debian packages with mmdebstrap (--mode=root: no daemon, no
 * user namespaces needed), from the machine's own apt sources (same mirrors, the suite
 * swapped in), never any other network.
 */

/** What makes a usable node: a kernel, systemd as init, SSH, networking, TLS roots, curl. */
export const DEFAULT_PACKAGES = [
  'linux-image-amd64',
  'systemd-sysv',
  'udev',
  'kmod',
  'dbus',
  'openssh-server',
  'iproute2',
  'iputils-ping',
  'isc-dhcp-client',
  'ca-certificates',
  'curl',
  'netbase',
  'procps',
  'less',
];

const SUITE_RE = /^[a-z][a-z0-9-]{1,31}$/;
const PKG_RE = /^[a-z0-9][a-z0-9.+-]+(:[a-z0-9-]+)?$/;

export function validateSuite(s: string): string {
  if (!SUITE_RE.test(s)) throw new ImageError(`Debian suite "${s}" is not allowed: give a codename like bookworm or trixie`);
  return s;
}

/** Pure: a --packages list (comma or space separated), each a Debian package name. */
export function parsePackages(list: string | undefined): string[] {
  if (!list) return [];
  const out = list.split(/[\s,]+/).filter(Boolean);
  for (const p of out) if (!PKG_RE.test(p)) throw new ImageError(`"${p}" is not a Debian package name (lower-case letters, digits, '.', '+', '-')`, p);
  return out;
}

/** Pure: the host's sources with its own codename replaced by `suite` (bookworm-updates -> trixie-updates too). */
export function retargetSources(text: string, hostCodename: string, suite: string): string {
  if (!hostCodename || hostCodename === suite) return text;
  const re = new RegExp(`(^|[\\s])${hostCodename}(?=(-[a-z]+)?(\\s|$))`, 'gm');
  return text.replace(re, `$1${suite}`);
}

/** The machine's apt sources, as one file in deb822 or one-line format (mmdebstrap pastes it). */
export function hostSources(suite: string, root = '/'): { text: string; deb822: boolean } | undefined {
  const codename = /^VERSION_CODENAME=(.*)$/m.exec(readOr(path.join(root, 'etc/os-release')))?.[1]?.replace(/"/g, '') ?? '';
  const oneLine: string[] = [];
  const deb822: string[] = [];
  const main = readOr(path.join(root, 'etc/apt/sources.list'));
  if (main.trim()) oneLine.push(main);
  const dir = path.join(root, 'etc/apt/sources.list.d');
  for (const f of listOr(dir).sort()) {
    if (f.endsWith('.list')) oneLine.push(readOr(path.join(dir, f)));
    else if (f.endsWith('.sources')) deb822.push(readOr(path.join(dir, f)));
  }
  const stripped = (s: string) => s.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#')).join('\n');
  if (deb822.length && !oneLine.map(stripped).join('').trim()) return { text: retargetSources(deb822.join('\n\n'), codename, suite), deb822: true };
  const lines = oneLine.map(stripped).join('\n').trim();
  if (lines) return { text: retargetSources(lines + '\n', codename, suite), deb822: false };
  if (deb822.length) return { text: retargetSources(deb822.join('\n\n'), codename, suite), deb822: true };
  return undefined;
}

function readOr(f: string): string {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}
function listOr(d: string): string[] {
  try {
    return fs.readdirSync(d);
  } catch {
    return [];
  }
}

export interface DebianBuildOptions {
  suite: string;
  packages: string[];
  /** A customize hook: an executable file run as `HOOK <tree>` after packages are installed. */
  hook?: string;
  progress: (msg: string) => void;
}

/** Fill `tree` (empty) with a Debian system. Throws ImageError naming mmdebstrap's last lines. */
export async function debootstrapInto(tree: string, o: DebianBuildOptions): Promise<{ packages: string[] }> {
  validateSuite(o.suite);
  if (o.hook) {
    const st = fs.statSync(o.hook, { throwIfNoEntry: false });
    if (!st?.isFile()) throw new ImageError(`hook "${o.hook}" is not a file: give an executable script, run as HOOK <image-root> after the packages are installed`, o.hook);
    try {
      fs.accessSync(o.hook, fs.constants.X_OK);
    } catch {
      throw new ImageError(`hook "${o.hook}" is not executable: chmod +x it`, o.hook);
    }
  }
  const packages = [...new Set([...DEFAULT_PACKAGES, ...o.packages])];
  const src = hostSources(o.suite);
  // Next to the tree (inside the build's staging directory), not under /tmp: a build killed
  // with SIGKILL skips the finally below, and the next image operation sweeps staging directories.
  const tmp = fs.mkdtempSync(path.join(path.dirname(path.resolve(tree)), '.apt-sources-'));
  try {
    const mirrors: string[] = [];
    if (src) {
      const f = path.join(tmp, src.deb822 ? 'host.sources' : 'host.list');
      fs.writeFileSync(f, src.text);
      mirrors.push(f);
    }
    const args = [
      '--mode=root',
      '--variant=apt',
      '--format=directory',
      `--include=${packages.join(',')}`,
      // Unused in a netbooted image; dpkg leaves them out.
      '--dpkgopt=path-exclude=/usr/share/doc/*',
      '--dpkgopt=path-include=/usr/share/doc/*/copyright',
      '--dpkgopt=path-exclude=/usr/share/man/*',
      '--dpkgopt=path-exclude=/usr/share/locale/*',
      '--dpkgopt=path-include=/usr/share/locale/locale.alias',
      ...(o.hook ? [`--customize-hook=${path.resolve(o.hook)} "$1"`] : []),
      o.suite,
      tree,
      ...mirrors,
    ];
    o.progress(`mmdebstrap ${o.suite}: ${packages.length} packages and their dependencies (from ${src ? 'this machine\'s apt sources' : 'deb.debian.org'})`);
    const r = await runTool('mmdebstrap', args, {
      pkg: 'mmdebstrap',
      killTree: true,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C.UTF-8' },
      onLine: (l) => {
        if (/^I: /.test(l)) o.progress(l.slice(3));
      },
    });
    if (r.code !== 0) {
      const unknown = /Unable to locate package (\S+)|E: Package '([^']+)' has no installation candidate/.exec(r.stderr);
      if (unknown) throw new ImageError(`Debian ${o.suite} has no package "${unknown[1] ?? unknown[2]}": check --packages`, unknown[1] ?? unknown[2]);
      // Not the admin's input: the network, the mirror or the disk (exit 1).
      const net = /Temporary failure resolving|Could not resolve|apt-get update .* failed|Failed to fetch/.test(r.stderr) ? ' (apt could not reach the mirrors in this machine\'s apt sources: check the network and "apt-get update" on the master)' : '';
      throw new Error(`mmdebstrap ${o.suite} failed (${r.signal ?? `exit ${r.code}`}): ${tail(r.stderr)}${net}`);
    }
    return { packages };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
