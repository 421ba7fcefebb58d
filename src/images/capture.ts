/**
 * `vnfs capture NODE NAME`: a running node's root filesystem, streamed over SSH, becomes a new
 * revision (the other producers are in importer.ts, debian.ts, exec.ts).
 *
 * On the node, GNU tar archives `/` with --one-file-system: one file system, whatever `/` is.
 * On a stateless node `/` is an overlay (tmpfs upper over the squashfs), and overlayfs gives
 * every directory the overlay's own device number, so tar walks the whole merged view (what
 * `/` shows: the image plus what was changed on the node) and stops only at real mounts
 * (/proc, /sys, /dev, /run, a separate /home...). /proc /sys /dev /run /tmp and the excludes
 * are left out, their directories kept (empty) so the image still has its mount points.
 *
 * The stream goes through the same validation as any archive (extractTar: no `..`, no
 * absolute names, no links out of the tree, nothing written through a symlink): a node is
 * not trusted more than a downloaded tarball. Then the COPY is cleaned of what must not be
 * cloned (cleanCapturedTree); the node itself is never changed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { ImageError } from './errors.js';
import { extractTar, type TarStats } from './tar.js';
import { sshExecStream, type SshTarget } from '../remote/ssh.js';

/** Never captured (their directories are kept, empty): kernel and runtime file systems. */
export const ALWAYS_EXCLUDED = ['/proc', '/sys', '/dev', '/run', '/tmp'] as const;

/** The remote command exits with this when the node cannot capture (no GNU tar, no `/`). */
const CANNOT = 97;

/** A capture that failed on the node or in transit: a run-time failure (exit 1), not bad input. */
export class CaptureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CaptureError';
  }
}

/**
 * Pure: an exclude as the admin writes it (absolute path, shell-style glob: `*` `?` `[..]`
 * within one path component) to the tar pattern that matches it in the node's archive.
 * Excluding a directory excludes everything below it.
 */
export function excludePattern(p: string, from = '--exclude'): string {
  const v = p.trim();
  if (!v.startsWith('/')) throw new ImageError(`${from} "${p}" must be an absolute path on the node, e.g. /var/cache/apt/archives`, p);
  if (/[\0\n\r]/.test(v)) throw new ImageError(`${from} "${p.replace(/[\0\n\r]/g, '?')}" holds a control character`, p);
  const parts = v.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.includes('..')) throw new ImageError(`${from} "${p}" has a ".." component: give the path itself`, p);
  if (parts.length === 0) throw new ImageError(`${from} "${p}" would exclude the whole root filesystem`, p);
  return `./${parts.join('/')}`;
}

/** Pure: excludes from an attribute or config value: paths separated by spaces, commas or newlines. */
export function splitExcludes(value: string | undefined): string[] {
  return (value ?? '').split(/[\s,]+/).filter(Boolean);
}

/** Pure: one word for a POSIX shell. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Pure: the command the node runs. GNU tar, POSIX format (xattrs such as file capabilities
 * travel as SCHILY.xattr records), numeric owners (the image's own /etc/passwd applies),
 * no compression (the master's CPU and a LAN are faster than a node's gzip).
 */
export function captureCommand(patterns: string[]): string {
  const args = [
    'tar',
    '--create',
    '--file=-',
    '--one-file-system',
    '--format=posix',
    '--numeric-owner',
    '--xattrs',
    "--xattrs-include='*'",
    '--anchored',
    '--wildcards',
    '--no-wildcards-match-slash',
    ...patterns.map((p) => `--exclude=${shellQuote(p)}`),
    '--warning=no-file-ignored',
    '.',
  ];
  return [
    `v=$(tar --version 2>/dev/null)`,
    `case "$v" in *'GNU tar'*) ;; *) echo 'pxeherd-capture: this node has no GNU tar (Debian package "tar"): it is needed to capture the root filesystem' >&2; exit ${CANNOT} ;; esac`,
    `cd / || exit ${CANNOT}`,
    `exec ${args.join(' ')}`,
  ].join('\n');
}

export interface CleanReport {
  /** Paths (relative to the root, with a leading /) removed from the copy. */
  removed: string[];
  /** Files emptied in place (logs, machine-id): owner and mode kept. */
  emptied: string[];
  /** Paths skipped because a directory on the way is a symlink (never followed). */
  skipped: string[];
}

// What a clone must not carry. Globs are one path component each ('*' never crosses '/').
const REMOVE = [
  // SSH host keys: each node gets its own (stateless and disk boots install the kept ones).
  'etc/ssh/ssh_host_*',
  // Persistent NIC names bound to the captured node's MAC addresses.
  'etc/udev/rules.d/70-persistent-net.rules',
  'etc/udev/rules.d/70-persistent-cd.rules',
  // Secrets and seeds that identify one machine.
  'var/lib/systemd/random-seed',
  'var/lib/systemd/credential.secret',
  'var/lib/dbus/machine-id',
  // DHCP leases and client identities.
  'var/lib/dhcp/*.leases',
  'var/lib/dhcp/*.lease',
  'var/lib/dhclient/*',
  'var/lib/dhcpcd/*',
  'var/lib/dhcpcd5/*',
  'var/lib/NetworkManager/*.lease',
  'var/lib/NetworkManager/*.leases',
  'var/lib/NetworkManager/secret_key',
  'etc/dhcpcd.duid',
  'var/lib/systemd/network/*',
  // What pxeherd's stateless chain wrote into this node (nodescripts/init/all/52-70): per-node
  // network units (by MAC), time server, the check-in with its token, the overlay state. The
  // next boot writes its own; the image stays as if never booted.
  'etc/systemd/network/10-pxeherd-boot.network',
  'etc/systemd/network/10-pxeherd-boot.link',
  'etc/systemd/timesyncd.conf.d/pxeherd.conf',
  'etc/pxeherd/checkin.conf',
  'var/lib/pxeherd',
  'usr/lib/pxeherd',
  'etc/systemd/system/pxeherd-checkin.service',
  'etc/systemd/system/pxeherd-checkin.timer',
  'etc/systemd/system/multi-user.target.wants/pxeherd-checkin.service',
  'etc/systemd/system/timers.target.wants/pxeherd-checkin.timer',
  // Crash dumps and per-boot private directories.
  'var/lib/systemd/coredump/*',
  'var/tmp/systemd-private-*',
];

/** Shell and tool histories, in root's home and every /home/<user>. */
const HISTORIES = ['.bash_history', '.zsh_history', '.sh_history', '.ash_history', '.history', '.python_history', '.lesshst', '.viminfo', '.mysql_history', '.psql_history', '.node_repl_history', '.sqlite_history', '.wget-hsts'];

/** Rotated or compressed logs: removed; live logs are emptied instead (daemons expect them with their owner and mode). */
const ROTATED = /(\.(gz|xz|bz2|zst|lz4|old)|\.[0-9]+(\.gz)?|-[0-9]{8}(\.gz)?)$/;

/** Pure: a glob of one path component as a RegExp. */
function globRe(glob: string): RegExp {
  let re = '';
  for (const ch of glob) re += ch === '*' ? '[^/]*' : ch === '?' ? '[^/]' : ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${re}$`);
}

/**
 * The directory `rel` (relative, '/'-separated) inside `tree`, reached without following any
 * symlink; undefined when a component is missing, not a directory, or a symlink. A node's
 * tree may hold absolute symlinks (`/var/log -> /etc`): followed on the master, a cleanup
 * would touch the master's own files.
 */
function realDir(tree: string, rel: string): string | undefined {
  let p = tree;
  for (const part of rel.split('/').filter(Boolean)) {
    p = path.join(p, part);
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st || !st.isDirectory()) return undefined;
  }
  return p;
}

/** Directory entries of `dir` matching a one-component glob. */
function matching(dir: string, glob: string): string[] {
  if (!/[*?[]/.test(glob)) return fs.lstatSync(path.join(dir, glob), { throwIfNoEntry: false }) ? [glob] : [];
  const re = globRe(glob);
  try {
    return fs.readdirSync(dir).filter((n) => re.test(n));
  } catch {
    return [];
  }
}

/** Empty a regular file in place, never through a symlink. */
function emptyFile(file: string): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW);
  fs.closeSync(fd);
}

/**
 * Clean a captured tree (the copy on the master) of what must not be cloned onto other
 * machines: SSH host keys, the machine-id (left as an empty file: systemd then makes a new
 * one on first boot, and pxeherd's boot chain installs the node's own), persistent net rules,
 * logs, DHCP leases, shell histories, random seeds, and the state pxeherd's boot chain wrote
 * into the node (check-in token and config, per-node network units, overlay state). The
 * hostname goes back to "localhost". Never follows a symlink out of the tree.
 */
export function cleanCapturedTree(tree: string): CleanReport {
  const rep: CleanReport = { removed: [], emptied: [], skipped: [] };
  const rm = (dir: string, rel: string) => {
    fs.rmSync(path.join(dir, path.basename(rel)), { recursive: true, force: true });
    rep.removed.push('/' + rel);
  };
  for (const pattern of REMOVE) {
    const parent = pattern.slice(0, pattern.lastIndexOf('/'));
    const dir = realDir(tree, parent);
    if (!dir) {
      if (!realDirOrAbsent(tree, parent)) rep.skipped.push('/' + pattern);
      continue;
    }
    for (const n of matching(dir, pattern.slice(pattern.lastIndexOf('/') + 1))) rm(dir, `${parent}/${n}`);
  }

  // Histories: root's home, and each directory under /home (symlinked homes are skipped).
  const homes = ['root'];
  const home = realDir(tree, 'home');
  if (home) for (const n of fs.readdirSync(home)) if (fs.lstatSync(path.join(home, n)).isDirectory()) homes.push(`home/${n}`);
  for (const h of homes) {
    const dir = realDir(tree, h);
    if (!dir) continue;
    for (const f of HISTORIES) if (fs.lstatSync(path.join(dir, f), { throwIfNoEntry: false })) rm(dir, `${h}/${f}`);
  }

  // Logs: the journal of the captured machine (directories named by its machine-id) and rotated
  // logs go; the rest is emptied, keeping each file with its owner and mode.
  const logs = realDir(tree, 'var/log');
  if (logs) {
    const walk = (dir: string, rel: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        const r = `${rel}/${e.name}`;
        if (e.isDirectory()) {
          if (rel === 'var/log/journal' && /^[0-9a-f]{32}$/.test(e.name)) rm(dir, r);
          else walk(p, r);
        } else if (e.isFile()) {
          const st = fs.lstatSync(p);
          // A name hard-linked elsewhere goes rather than emptying the other names' content too.
          if (ROTATED.test(e.name) || st.nlink > 1) rm(dir, r);
          else if (st.size > 0) {
            emptyFile(p);
            rep.emptied.push('/' + r);
          }
        }
      }
    };
    walk(logs, 'var/log');
  }

  const etc = realDir(tree, 'etc');
  if (etc) {
    // An empty /etc/machine-id: systemd's "not yet set up" marker, a regular file (a symlink goes).
    const mid = path.join(etc, 'machine-id');
    fs.rmSync(mid, { force: true });
    fs.writeFileSync(mid, '', { mode: 0o444, flag: 'wx' });
    fs.chmodSync(mid, 0o444);
    rep.emptied.push('/etc/machine-id');
    // An fstab written by pxeherd's disk install (nodescript 85-disk-boot) names the captured
    // node's own disks by UUID: on another machine systemd would wait for them and fail the boot.
    // The next disk install writes the new machine's; a stateless boot needs none.
    const fstab = path.join(etc, 'fstab');
    const fst = fs.lstatSync(fstab, { throwIfNoEntry: false });
    if (fst?.isFile() && /^# written by pxeherd \(nodescript [0-9]+-disk/.test(fs.readFileSync(fstab, 'utf8'))) {
      fs.rmSync(fstab);
      fs.writeFileSync(fstab, '# /etc/fstab: static file system information.\n# Emptied by pxeherd vnfs capture: the captured node\'s entries named its own disks.\n', { mode: 0o644, flag: 'wx' });
      rep.emptied.push('/etc/fstab');
    }
    // The captured node's name, written by the boot chain (49/50-hostname).
    const hn = path.join(etc, 'hostname');
    if (fs.lstatSync(hn, { throwIfNoEntry: false })) {
      fs.rmSync(hn, { force: true });
      fs.writeFileSync(hn, 'localhost\n', { mode: 0o644, flag: 'wx' });
      rep.emptied.push('/etc/hostname');
    }
  } else if (fs.lstatSync(path.join(tree, 'etc'), { throwIfNoEntry: false })) rep.skipped.push('/etc/machine-id');

  // The mount points stay, empty, with the modes a root filesystem has.
  for (const [d, mode] of [['proc', 0o555], ['sys', 0o555], ['dev', 0o755], ['run', 0o755], ['tmp', 0o1777]] as const) {
    const p = path.join(tree, d);
    if (!fs.lstatSync(p, { throwIfNoEntry: false })) {
      fs.mkdirSync(p);
      fs.chmodSync(p, mode);
    }
  }
  return rep;
}

/** True when `rel` does not exist as such (a missing component), false when a symlink or file is in the way. */
function realDirOrAbsent(tree: string, rel: string): boolean {
  let p = tree;
  for (const part of rel.split('/').filter(Boolean)) {
    p = path.join(p, part);
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st) return true;
    if (!st.isDirectory()) return false;
  }
  return true;
}

export interface CaptureOptions {
  node: string;
  target: SshTarget;
  /** Absolute paths (globs) from the config, the node's attribute and --exclude. */
  excludes: string[];
  progress: (msg: string) => void;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
}

export interface CaptureStats {
  /** Bytes of the tar stream received from the node. */
  bytes: number;
  ms: number;
  tar: TarStats;
  clean: CleanReport;
  /** Warnings tar printed on the node (files that changed while read...). */
  warnings: string[];
  /** The tar patterns the node was given. */
  patterns: string[];
}

const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

/** Stream the node's root into `tree` (empty), validate it, clean it. Throws and leaves `tree` for the caller to remove. */
export async function captureInto(tree: string, o: CaptureOptions): Promise<CaptureStats> {
  const patterns = [...new Set([...ALWAYS_EXCLUDED.map((p) => `.${p}/*`), ...o.excludes.map((e) => excludePattern(e))])];
  const t0 = Date.now();
  const warnings: string[] = [];
  let partial = '';
  const onStderr = (d: Buffer) => {
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop()!;
    for (const l of lines) if (l.trim()) warnings.push(l);
  };
  o.progress(`connecting to ${o.node} (${o.target.host}) to capture its root filesystem`);
  const s = await sshExecStream(o.target, captureCommand(patterns), { connectTimeoutMs: o.connectTimeoutMs, idleTimeoutMs: o.idleTimeoutMs, onStderr });
  o.progress(`streaming ${o.node}:/ (one file system; left out: ${[...ALWAYS_EXCLUDED, ...o.excludes].join(' ')})`);
  let bytes = 0;
  let lastLine = Date.now();
  let finished = false;
  const failure = (r: { exit: number | null; signal: string | null; stderr: string }): CaptureError | undefined => {
    if (r.exit === 0) return undefined;
    if (r.exit === 1) return undefined; // "file changed as we read it": the archive is whole
    const said = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l && !/Exiting with failure status/.test(l)).slice(-3).join('; ');
    if (r.exit === CANNOT) return new CaptureError(`cannot capture ${o.node}: ${said || 'the node cannot run the capture'}; no revision was made`);
    const how = r.exit === null ? `ended without an exit status${r.signal ? ` (signal ${r.signal})` : ''}` : `exited with ${r.exit}`;
    return new CaptureError(`tar on ${o.node} ${how}${said ? `: ${said}` : ''}; no revision was made`);
  };
  // Counts bytes for the progress lines, and only ends the stream once the node's tar said it
  // succeeded: a tar that failed half-way never reaches validation as if it were complete.
  const meter = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      const now = Date.now();
      if (now - lastLine >= 5000) {
        lastLine = now;
        const secs = (now - t0) / 1000;
        o.progress(`received ${mib(bytes)} from ${o.node} (${mib(bytes / secs)}/s)`);
      }
      cb(null, chunk);
    },
    flush(cb) {
      s.done.then(
        (r) => cb(failure(r) ?? null),
        (e: Error) => cb(new CaptureError(`${e.message}; no revision was made`)),
      );
    },
  });
  // The node may fail before extractTar starts reading (it first makes its spool file): the
  // error then waits on the stream, where extractTar's pipeline finds it, instead of being an
  // 'error' event nobody listens to yet.
  meter.on('error', () => {});
  s.stdout.on('error', (e) => meter.destroy(e instanceof CaptureError ? e : new CaptureError(`${e.message}; no revision was made`)));
  s.stdout.pipe(meter);
  try {
    let tar: TarStats;
    try {
      tar = await extractTar(meter, tree);
    } catch (e) {
      // The stream ended with tar's success, and validation refused what it held: a hostile or broken node.
      if (e instanceof ImageError) throw new CaptureError(`${o.node} sent an archive pxeherd refuses: ${e.message}; no revision was made`);
      throw e;
    }
    finished = true;
    if (partial.trim()) warnings.push(partial);
    for (const w of warnings.slice(0, 20)) o.progress(`${o.node}: ${w}`);
    if (warnings.length > 20) o.progress(`${o.node}: ... ${warnings.length - 20} more warning(s) from tar`);
    const ms = Date.now() - t0;
    o.progress(`received ${mib(bytes)} from ${o.node} in ${(ms / 1000).toFixed(1)} s: ${tar.files} files, ${tar.dirs} directories, ${tar.symlinks} symlinks, ${tar.hardlinks} hard links`);
    const clean = cleanCapturedTree(tree);
    o.progress(`cleaned the copy (the node is unchanged): ${clean.removed.length} path(s) removed, ${clean.emptied.length} emptied${clean.skipped.length ? `, ${clean.skipped.length} skipped (a symlink on the way: ${clean.skipped.join(' ')})` : ''}`);
    return { bytes, ms, tar, clean, warnings, patterns };
  } finally {
    if (!finished) s.abort('capture stopped');
  }
}
