/**
 * One minimal Debian image per test run, shared by every suite that needs a real root
 * filesystem (vnfs exec/rollback/prune tests, the stateless boot e2e): built once with
 * `pxeherd vnfs build` (mmdebstrap, ~80-200 s) into a cache keyed by the test runner's pid
 * under os.tmpdir(), guarded by a lock so parallel suites wait for one build, and removed by a
 * watcher once the runner exits. Suites never change the shared state directory: they take a
 * hard-linked clone of it (`cloneSharedImage`), which costs seconds and no space, and is safe
 * because revisions are immutable and every pxeherd write replaces a file instead of writing into it.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLI } from '../helpers/cli.js';

export const SHARED_IMAGE_NAME = 'deb12';
export const SHARED_IMAGE_SUITE = 'bookworm';
/** Beyond vnfs build's defaults: what stage one uses from the image to install it to a disk (disk-install e2e; xfsprogs for its xfs root). */
export const SHARED_IMAGE_PACKAGES = 'fdisk,e2fsprogs,dosfstools,grub2-common,grub-pc-bin,grub-efi-amd64-bin,xfsprogs';

export interface SharedImage {
  /** The shared (read-only!) state directory holding VNFS `name` with revision `rev`. */
  statedir: string;
  config: string;
  name: string;
  rev: number;
  /** <statedir>/images/<name>/<rev>/tree */
  tree: string;
  /** Seconds the build took (0 when it came from the cache). */
  buildSeconds: number;
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Why image tests cannot run here, or undefined. */
export function imageToolsMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (mmdebstrap --mode=root, overlay mounts, device nodes)';
  for (const [cmd, pkg] of [
    ['mmdebstrap', 'mmdebstrap'],
    ['mksquashfs', 'squashfs-tools'],
    ['getfattr', 'attr'],
    ['unshare', 'util-linux'],
    ['setpriv', 'util-linux'],
  ]) {
    if (!has(cmd!)) return `needs ${cmd} (Debian package ${pkg})`;
  }
  if (!fs.existsSync(CLI)) return `needs ${CLI}: run "npm run build"`;
  return undefined;
}

/** PXEHERD_SHARED_IMAGE_DIR keeps the image across runs (developing a suite); it is then never removed. */
const KEEP_DIR = process.env.PXEHERD_SHARED_IMAGE_DIR;

/**
 * The process whose life is one test run: scripts/run-tests.mjs names itself (it starts one
 * `node --test` per file, so a file's parent is not the run); under a bare `node --test` the
 * runner is every suite's parent.
 */
const RUN_PID = Number(process.env.PXEHERD_TEST_RUN_PID) || process.ppid;

function cacheRoot(): string {
  // One cache per `npm test` run.
  return KEEP_DIR ? path.resolve(KEEP_DIR) : path.join(os.tmpdir(), `pxeherd-shared-image-${RUN_PID}`);
}

function watchAndRemove(dir: string, pid: number): void {
  // Removes the cache when the runner is gone, whichever suite built it.
  const w = spawn('sh', ['-c', `while kill -0 ${pid} 2>/dev/null; do sleep 5; done; rm -rf "${dir}" "${dir}.lock"`], { detached: true, stdio: 'ignore' });
  w.unref();
}

/**
 * The first Debian archive in this machine's apt sources (what `vnfs build` installs from:
 * src/images/debian.ts hostSources), else deb.debian.org.
 */
function aptArchiveUri(): string {
  const found: string[] = [];
  const read = (f: string) => {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch {
      return '';
    }
  };
  let listDir: string[] = [];
  try {
    listDir = fs.readdirSync('/etc/apt/sources.list.d').sort();
  } catch {
    /* no sources.list.d */
  }
  for (const f of listDir.filter((n) => n.endsWith('.sources')).map((n) => path.join('/etc/apt/sources.list.d', n))) {
    for (const m of read(f).matchAll(/^URIs:\s*(\S+)/gm)) found.push(m[1]!);
  }
  for (const m of read('/etc/apt/sources.list').matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/gm)) found.push(m[1]!);
  return (found.find((u) => /^https?:/.test(u) && !/security/.test(u)) ?? 'http://deb.debian.org/debian').replace(/\/+$/, '');
}

/** apt's first error line ("E: Failed to fetch URL  Temporary failure resolving 'host'"), without the "E: ". */
function firstError(text: string): string | undefined {
  return /^E: (.+)$/m.exec(text)?.[1]?.replace(/\s+/g, ' ');
}

/**
 * Whether the Debian mirror `vnfs build` needs answers: its InRelease for the shared image's
 * suite, fetched with apt's own downloader (apt's proxies and settings), within a minute.
 * Asked once per test run and remembered for every suite of the run (they must agree: one
 * suite building the image while another takes the offline path would hide a broken mirror),
 * and said once on stderr with the reason.
 */
export function mirrorReachable(): boolean {
  const memoFile = path.join(os.tmpdir(), `pxeherd-mirror-${RUN_PID}`);
  try {
    return fs.readFileSync(memoFile, 'utf8').startsWith('yes');
  } catch {
    /* not asked yet in this run */
  }
  const url = `${aptArchiveUri()}/dists/${SHARED_IMAGE_SUITE}/InRelease`;
  const dest = `${memoFile}.InRelease`;
  const r = spawnSync('timeout', ['60', '/usr/lib/apt/apt-helper', '-o', 'Acquire::Retries=0', 'download-file', url, dest], { encoding: 'utf8' });
  fs.rmSync(dest, { force: true });
  const ok = r.status === 0;
  const why = ok ? '' : r.status === 124 ? 'no answer within 60 s' : firstError(`${r.stderr ?? ''}\n${r.stdout ?? ''}`) ?? r.error?.message ?? `exit ${r.status}`;
  fs.writeFileSync(memoFile, ok ? 'yes\n' : `no: ${why}\n`);
  watchAndRemove(memoFile, RUN_PID);
  process.stderr.write(`# Debian mirror ${url}: ${ok ? 'reachable (image suites build the shared image with vnfs build)' : `NOT reachable (${why}): suites that need it skip or take the offline image`}\n`);
  return ok;
}

/** How long the shared image's build may take (it took 80-210 s on a 2-core machine). */
const BUILD_LIMIT_MS = 20 * 60_000;

let memo: Promise<SharedImage> | undefined;

/** The shared image, building it when no suite of this run has yet. */
export function sharedDebianImage(): Promise<SharedImage> {
  return (memo ??= obtain());
}

async function obtain(): Promise<SharedImage> {
  const root = cacheRoot();
  const done = path.join(root, 'done.json');
  const lock = `${root}.lock`;
  // A build that failed in this run fails the later suites at once, with its reason, instead
  // of each trying again for as long (a mirror that is down stays down for the run).
  const failed = `${root}.failed`;
  for (;;) {
    if (fs.existsSync(done)) return { ...(JSON.parse(fs.readFileSync(done, 'utf8')) as SharedImage), buildSeconds: 0 };
    if (fs.existsSync(failed)) throw new Error(`the shared image failed to build earlier in this run: ${fs.readFileSync(failed, 'utf8')}`);
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      // Another suite is building: wait for it (or take over when it died).
      const pid = Number(fs.readFileSync(path.join(lock, 'pid'), { encoding: 'utf8', flag: 'a+' }) || 0);
      if (pid && !alive(pid)) fs.rmSync(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  fs.writeFileSync(path.join(lock, 'pid'), String(process.pid));
  try {
    fs.rmSync(root, { recursive: true, force: true });
    fs.mkdirSync(root, { recursive: true });
    if (!KEEP_DIR) {
      watchAndRemove(root, RUN_PID);
      watchAndRemove(failed, RUN_PID);
    }
    const statedir = path.join(root, 'var');
    const config = path.join(root, 'pxeherd.yaml');
    fs.writeFileSync(config, `statedir: ${statedir}\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nhttp: { port: 0 }\nadmin: { port: 0 }\n`);
    const t0 = Date.now();
    let r = await runSharedBuild(config);
    // One more try when apt could not reach the mirror (a network hiccup; the build says so,
    // src/images/debian.ts), not when the build itself failed or stalled.
    if (r.code !== 0 && !r.timedOut && /could not reach the mirrors/.test(r.err)) {
      process.stderr.write(`# shared image: vnfs build could not reach the mirror; trying once more in 30 s\n`);
      await new Promise((res) => setTimeout(res, 30_000));
      fs.rmSync(statedir, { recursive: true, force: true });
      r = await runSharedBuild(config);
    }
    if (r.code !== 0) {
      const why = r.timedOut
        ? `pxeherd vnfs build ${SHARED_IMAGE_NAME} --debian ${SHARED_IMAGE_SUITE} did not finish in ${BUILD_LIMIT_MS / 60_000} min (a slow mirror?) and was stopped; its last words: ${r.err.trim().split('\n').slice(-5).join(' | ')}`
        : `pxeherd vnfs build ${SHARED_IMAGE_NAME} --debian ${SHARED_IMAGE_SUITE} failed (exit ${r.code}): ${r.err.trim()}`;
      if (!KEEP_DIR) fs.writeFileSync(failed, why);
      throw new Error(why);
    }
    const rev = (JSON.parse(r.out) as { rev: number }).rev;
    const img: SharedImage = { statedir, config, name: SHARED_IMAGE_NAME, rev, tree: path.join(statedir, 'images', SHARED_IMAGE_NAME, String(rev), 'tree'), buildSeconds: Math.round((Date.now() - t0) / 1000) };
    fs.writeFileSync(done, JSON.stringify(img));
    return img;
  } finally {
    fs.rmSync(lock, { recursive: true, force: true });
  }
}

interface BuildRun {
  code: number | null;
  out: string;
  err: string;
  timedOut: boolean;
}

/** `pxeherd vnfs build` of the shared image, stopped after BUILD_LIMIT_MS. */
function runSharedBuild(config: string): Promise<BuildRun> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, 'vnfs', 'build', SHARED_IMAGE_NAME, '--debian', SHARED_IMAGE_SUITE, '--packages', SHARED_IMAGE_PACKAGES, '--comment', 'shared test image', '--json', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timedOut = false;
    // A mirror that answers at a crawl must not hold the run until CI's limit: the build
    // gets what a slow machine needs several times over, then is stopped the way an admin's
    // Ctrl-C would (vnfs build stops mmdebstrap and cleans up), then killed.
    const limit = setTimeout(() => {
      timedOut = true;
      p.kill('SIGTERM');
      setTimeout(() => p.kill('SIGKILL'), 60_000).unref();
    }, BUILD_LIMIT_MS);
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    p.on('close', (code) => {
      clearTimeout(limit);
      resolve({ code, out, err, timedOut });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A private copy of the shared state directory in `dir` (hard links for trees and packed
 * files, a real copy of the database), with a config; the suite may change it freely.
 */
export function cloneSharedImage(img: SharedImage, dir: string): { statedir: string; config: string } {
  const statedir = path.join(dir, 'var');
  fs.mkdirSync(statedir, { recursive: true });
  for (const sub of ['images', 'vnfs']) {
    const r = spawnSync('cp', ['-a', '-l', path.join(img.statedir, sub), statedir]);
    if (r.status !== 0) throw new Error(`cp -al ${sub}: ${r.stderr}`);
  }
  for (const f of fs.readdirSync(img.statedir)) if (f.startsWith('pxeherd.db')) fs.copyFileSync(path.join(img.statedir, f), path.join(statedir, f));
  const config = path.join(dir, 'pxeherd.yaml');
  fs.writeFileSync(config, `statedir: ${statedir}\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nhttp: { port: 0 }\nadmin: { port: 0 }\n`);
  return { statedir, config };
}
