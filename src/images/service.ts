import fs from 'node:fs';
import path from 'node:path';
import type { EventSink } from '../nodes/types.js';
import { validateName } from '../nodes/names.js';
import { NotFound } from '../nodes/select.js';
import type { Store } from '../store/store.js';
import type { VnfsRevision } from '../store/groups.js';
import { ImageError } from './errors.js';
import { ImageLayout } from './layout.js';
import { defaultCacheDir } from '../stage1/debs.js';
import { acquireLock } from './lock.js';
import { manifestJson, parseManifest, type ImageManifest } from './manifest.js';
import { packRevision } from './pack.js';
import { dedupeAgainstParent, fsyncDir, revDirsIn, safeRemove, syncFs } from './revisions.js';
import { readXattrs, treeStats } from './tree.js';
import { debootstrapInto, parsePackages, validateSuite } from './debian.js';
import { applyUpper, linkCopy, runInImage, upperEmpty } from './exec.js';
import { classifySource, importInto } from './importer.js';
import { captureInto, excludePattern, type CaptureStats } from './capture.js';
import type { SshTarget } from '../remote/ssh.js';

/** ENOSPC from Node, or a tool (GNU tar, mksquashfs, cp) that said so on stderr. */
function diskFull(e: unknown): boolean {
  const x = e as NodeJS.ErrnoException;
  return x?.code === 'ENOSPC' || /no space left on device|disk full|ENOSPC/i.test(String(x?.message ?? ''));
}

export type ImageEventKind = 'vnfs.build' | 'vnfs.import' | 'vnfs.exec' | 'vnfs.rollback' | 'vnfs.prune' | 'vnfs.capture';

export interface ImageServiceOptions {
  store: Store;
  statedir: string;
  /** Template directories (stage1/init ...), override first. */
  templatesDirs: string[];
  events: EventSink;
  /** Progress lines (a terminal shows them; --json runs pass a no-op). */
  progress?: (msg: string) => void;
  tty?: boolean;
  /** Downloaded packages (busybox-static for the stage one); default ~/.cache/pxeherd, shared with `stage1 build`. */
  cacheDir?: string;
}

export interface CommitOptions {
  name: string;
  /** debian:<suite> | dir:<path> | tar:<file> | oci:<ref> | exec:<cmd> */
  source: string;
  comment?: string;
  kernel?: string;
  event: ImageEventKind;
  /**
   * Fill `tree` (an empty directory) with the new root filesystem. `parentTree` is the
   * current revision's tree (read-only!), when there is one.
   */
  fill: (tree: string, parentTree: string | undefined) => Promise<void>;
  /** Extra fields for the event. */
  detail?: Record<string, unknown>;
  /** Return false to drop the staged tree without a revision (e.g. an exec that changed nothing). */
  keep?: (tree: string) => boolean;
  /** The node the revision comes from (capture): the event goes on its timeline too. */
  node?: { name: string; mac: string };
}

export interface CommitResult {
  vnfs: string;
  rev: number | null;
  parent: number | null;
  manifest?: ImageManifest;
  /** Files now hard links to the parent's. */
  linked: number;
  reused: string[];
  ms: number;
  /** No revision: the producer changed nothing. */
  unchanged?: boolean;
}

export interface RevisionInfo {
  rev: number;
  parent: number | null;
  source: string;
  comment: string;
  createdAt: number;
  current: boolean;
  /** Nodes pinned to it (field NAME@REV or attribute vnfs_rev), and those following current when it is current. */
  nodes: string[];
  manifest: ImageManifest;
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Making and changing VNFS images: every change commits a new immutable revision (staged,
 * deduplicated against the parent, packed, synced, renamed into place, then recorded), so a
 * failed or killed operation leaves the current revision exactly as it was.
 */
export class ImageService {
  readonly layout: ImageLayout;
  private readonly progress: (msg: string) => void;

  constructor(private readonly o: ImageServiceOptions) {
    this.layout = new ImageLayout(o.statedir);
    this.progress = o.progress ?? (() => {});
  }

  private get store(): Store {
    return this.o.store;
  }

  /** Remove what a killed operation left: staging directories and revisions the database never recorded. */
  private cleanOrphans(name: string): string[] {
    const removed: string[] = [];
    const known = new Set(this.store.vnfs.revisions(name).map((r) => r.rev));
    const sweep = (dir: string, prefix: string) => {
      let names: string[];
      try {
        names = fs.readdirSync(dir);
      } catch {
        return;
      }
      for (const n of names) {
        const orphanRev = revDirsIn([n], prefix)[0];
        if (n.startsWith('.staging-') || (orphanRev !== undefined && !known.has(orphanRev))) {
          safeRemove(path.join(dir, n));
          removed.push(path.join(dir, n));
        }
      }
    };
    sweep(this.layout.imageDir(name), '');
    // Only r<N> directories: a kernel+initrd VNFS's own files live beside them.
    sweep(this.layout.vnfsDir(name), 'r');
    if (removed.length) this.progress(`removed what an interrupted operation left: ${removed.join(', ')}`);
    return removed;
  }

  manifestOf(name: string, rev: number): ImageManifest {
    const r = this.store.vnfs.revision(name, rev);
    if (!r) throw new NotFound(`VNFS "${name}" has no revision ${rev}: see "pxeherd vnfs revisions ${name}"`);
    return parseManifest(r.manifest);
  }

  private readXattrFile(name: string, rev: number): Map<string, string> {
    try {
      return new Map(Object.entries(JSON.parse(fs.readFileSync(this.layout.xattrsFile(name, rev), 'utf8')) as Record<string, string>));
    } catch {
      return new Map();
    }
  }

  /** Run `fn` holding the VNFS's lock, with orphans of killed operations cleaned first. */
  async locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    validateName('vnfs', name);
    const release = acquireLock(this.layout.lockDir(name), `VNFS "${name}"`);
    try {
      this.cleanOrphans(name);
      return await fn();
    } finally {
      release();
    }
  }

  async commit(c: CommitOptions): Promise<CommitResult> {
    validateName('vnfs', c.name);
    const t0 = Date.now();
    return this.locked(c.name, async () => {
      const v = this.store.vnfs.get(c.name);
      if (v && (v.currentRev === null || v.currentRev === undefined) && this.store.vnfs.revisions(c.name).length === 0 && (v.kernel || v.initrd)) {
        throw new ImageError(`VNFS "${c.name}" is a kernel+initrd VNFS (made with vnfs add): give the image another name, or delete it first (pxeherd vnfs delete ${c.name})`);
      }
      const parent = v?.currentRev ?? null;
      const parentTree = parent !== null ? this.layout.treeDir(c.name, parent) : undefined;
      const rev = this.store.vnfs.maxRev(c.name) + 1;
      const tag = `${rev}-${process.pid}`;
      const staging = this.layout.stagingDir(c.name, tag);
      const packStaging = path.join(this.layout.vnfsDir(c.name), `.staging-r${tag}`);
      const revDir = this.layout.revDir(c.name, rev);
      const artDir = this.layout.artifactsDir(c.name, rev);
      const undo = [staging, packStaging];
      // Ctrl-C or a kill during a long build: remove the staging directories, then die of the signal.
      const onSignal = (sig: NodeJS.Signals) => {
        for (const d of undo) safeRemove(d);
        try {
          fs.rmSync(this.layout.lockDir(c.name), { recursive: true, force: true });
        } catch {
          /* gone */
        }
        process.stderr.write(`pxeherd: ${sig}: ${c.event} of ${c.name} interrupted; no revision was made\n`);
        process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15));
      };
      for (const s of SIGNALS) process.on(s, onSignal);
      let recorded = false;
      try {
        const tree = path.join(staging, 'tree');
        fs.mkdirSync(staging, { recursive: true });
        fs.mkdirSync(tree, { mode: 0o755 });
        await c.fill(tree, parentTree);
        if (c.keep && !c.keep(tree)) {
          this.progress(`no change: ${c.name} stays at revision ${parent}`);
          return { vnfs: c.name, rev: null, parent, linked: 0, reused: [], ms: Date.now() - t0, unchanged: true };
        }
        this.progress('reading the tree (extended attributes, unchanged files)');
        const xattrs = (await readXattrs(tree)).map;
        let linked = 0;
        if (parentTree) {
          const d = dedupeAgainstParent(tree, parentTree, xattrs, this.readXattrFile(c.name, parent!));
          linked = d.linked;
          this.progress(`${d.linked} file(s) unchanged from revision ${parent}: hard links (${(d.savedBytes / 1048576).toFixed(1)} MiB shared)`);
        }
        fs.writeFileSync(path.join(staging, 'xattrs'), JSON.stringify(Object.fromEntries(xattrs)));
        const stats = treeStats(tree);
        const parentManifest = parent !== null ? this.manifestOf(c.name, parent) : undefined;
        const kernelWanted = c.kernel ?? v?.attrs.image_kernel ?? undefined;
        const packed = await packRevision({
          name: c.name,
          tree,
          xattrs,
          outDir: packStaging,
          kernel: kernelWanted,
          parent: parentManifest && parent !== null ? { manifest: parentManifest, dir: this.layout.artifactsDir(c.name, parent) } : undefined,
          cacheDir: this.o.cacheDir ?? defaultCacheDir(),
          templatesDirs: this.o.templatesDirs,
          progress: this.progress,
          tty: this.o.tty,
        });
        const manifest: ImageManifest = {
          vnfs: c.name,
          rev,
          parent,
          arch: v?.arch ?? 'x86_64',
          source: c.source,
          comment: c.comment ?? '',
          createdAt: Date.now(),
          kernel: packed.kernel,
          kernelVersions: packed.kernelVersions,
          artifacts: packed.artifacts,
          tree: stats,
          modules: packed.modules,
          inputs: packed.inputs,
        };
        fs.writeFileSync(path.join(packStaging, 'manifest.json'), manifestJson(manifest));
        this.progress('syncing to disk');
        syncFs(staging);
        syncFs(packStaging);
        fs.renameSync(staging, revDir);
        undo.push(revDir);
        fs.renameSync(packStaging, artDir);
        undo.push(artDir);
        fsyncDir(path.dirname(revDir));
        fsyncDir(path.dirname(artDir));
        this.store.vnfs.addRevision({ vnfs: c.name, rev, parent, source: c.source, comment: c.comment ?? '', createdAt: manifest.createdAt, manifest: manifestJson(manifest), arch: manifest.arch });
        recorded = true;
        if (c.kernel) this.store.vnfs.set(c.name, 'image_kernel', c.kernel);
        const ms = Date.now() - t0;
        this.o.events.record({
          kind: c.event,
          ...(c.node ? { node: c.node.name, mac: c.node.mac } : {}),
          detail: {
            vnfs: c.name,
            rev,
            parent,
            source: c.source,
            ms,
            treeBytes: stats.bytes,
            treeFiles: stats.files,
            linked,
            kernel: packed.kernel,
            squashfsBytes: packed.artifacts['rootfs.squashfs']?.size ?? null,
            initrdBytes: packed.artifacts['initrd.img']?.size ?? null,
            packMs: packed.ms,
            reused: packed.reused,
            ...c.detail,
          },
        });
        return { vnfs: c.name, rev, parent, manifest, linked, reused: packed.reused, ms };
      } catch (e) {
        if (!recorded) for (const d of undo) safeRemove(d);
        const err = diskFull(e) ? new Error(`the disk holding ${this.o.statedir} filled up during the ${c.event.slice(5)} of ${c.name} (${(e as Error).message.split('\n')[0]}): no revision was made and revision ${parent ?? 'none'} stays current; free space, or remove old revisions with "pxeherd vnfs prune ${c.name} --keep N"`) : (e as Error);
        this.o.events.record({ kind: c.event, ...(c.node ? { node: c.node.name, mac: c.node.mac } : {}), detail: { vnfs: c.name, ok: false, source: c.source, error: err.message, ms: Date.now() - t0, ...c.detail } });
        throw err;
      } finally {
        for (const s of SIGNALS) process.off(s, onSignal);
        if (!recorded) {
          for (const d of [staging, packStaging]) safeRemove(d);
          // A first build that failed leaves no empty directories behind either.
          if (this.store.vnfs.revisions(c.name).length === 0) {
            for (const d of [this.layout.imageDir(c.name), this.layout.vnfsDir(c.name)]) {
              try {
                fs.rmdirSync(d);
              } catch {
                /* not empty (a kernel+initrd VNFS's files) or absent */
              }
            }
          }
        }
      }
    });
  }

  // ---- producers ------------------------------------------------------------------

  /** `vnfs build NAME --debian SUITE`: a Debian system from the machine's apt sources. */
  build(o: { name: string; suite: string; packages?: string; hook?: string; kernel?: string; comment?: string }): Promise<CommitResult> {
    validateName('vnfs', o.name);
    const suite = validateSuite(o.suite);
    const packages = parsePackages(o.packages);
    return this.commit({
      name: o.name,
      source: `debian:${suite}`,
      comment: o.comment,
      kernel: o.kernel,
      event: 'vnfs.build',
      detail: { packages },
      fill: async (tree) => {
        await debootstrapInto(tree, { suite, packages, hook: o.hook, progress: this.progress });
      },
    });
  }

  /** `vnfs import NAME DIR|FILE.tar[.gz|.xz|.zst]|oci-archive:...|docker://...` */
  import(o: { name: string; from: string; kernel?: string; comment?: string }): Promise<CommitResult> {
    validateName('vnfs', o.name);
    const src = classifySource(o.from);
    let source = '';
    return this.commit({
      name: o.name,
      get source() {
        return source;
      },
      comment: o.comment,
      kernel: o.kernel,
      event: 'vnfs.import',
      detail: { kind: src.kind },
      fill: async (tree) => {
        source = await importInto(src, tree, { statedir: this.o.statedir, cacheDir: this.layout.cacheDir(), progress: this.progress });
      },
    });
  }

  /**
   * `vnfs exec NAME -- CMD...` / `vnfs shell NAME`: the command runs inside the current
   * revision; exit 0 with changes commits a new revision, anything else leaves the image as it was.
   */
  exec(o: { name: string; command: string[]; interactive?: boolean; comment?: string; stdout?: 'inherit' | 'stderr' }): Promise<CommitResult & { exitCode: number | null }> {
    validateName('vnfs', o.name);
    if (!o.command.length) throw new ImageError('give the command to run: pxeherd vnfs exec NAME -- CMD [ARGS...]');
    const v = this.requireImage(o.name);
    if (v.currentRev === null || v.currentRev === undefined) throw new ImageError(`VNFS "${o.name}" has no root filesystem (a kernel+initrd VNFS): build or import one first`);
    let exitCode: number | null = null;
    const cmdText = o.command.join(' ');
    return this.commit({
      name: o.name,
      source: `exec:${o.interactive ? 'shell' : cmdText}`,
      comment: o.comment,
      event: 'vnfs.exec',
      detail: { command: o.interactive ? 'shell' : cmdText },
      fill: async (tree, parentTree) => {
        if (!parentTree) throw new ImageError(`VNFS "${o.name}" has no current revision to run in`);
        const workDir = path.join(path.dirname(tree), 'exec');
        const r = await runInImage({ lower: parentTree, workDir, command: o.command, interactive: !!o.interactive, stdout: o.stdout ?? 'inherit' });
        exitCode = r.code;
        if (r.code !== 0) {
          throw new ExecFailed(`${o.interactive ? 'the shell' : `"${cmdText}"`} ${r.signal ? `was killed by ${r.signal}` : `exited with ${r.code}`} inside ${o.name}: no revision made, the image is as it was`, r.code ?? 1);
        }
        if (r.createdResolv) fs.rmSync(path.join(r.upper, r.createdResolv), { force: true });
        if (upperEmpty(r.upper)) return;
        this.progress('applying the changes to a copy of the tree');
        await linkCopy(parentTree, tree);
        await applyUpper(r.upper, tree);
        safeRemove(workDir);
      },
      keep: (tree) => fs.readdirSync(tree).length > 0,
    }).then((res) => ({ ...res, exitCode }));
  }

  /**
   * `vnfs capture NODE NAME`: the node's root filesystem over SSH (capture.ts), cleaned of what
   * must not be cloned, as a new revision of NAME (made when absent; else the parent is the
   * current revision). Nothing is changed on the node; a failure leaves no revision and nothing staged.
   */
  capture(o: {
    name: string;
    node: { name: string; mac: string };
    target: SshTarget;
    excludes?: string[];
    comment?: string;
    kernel?: string;
    connectTimeoutMs?: number;
    idleTimeoutMs?: number;
    /** The VNFS the node runs: a VNFS made by this capture boots with its kernel command line. */
    from?: string;
  }): Promise<CommitResult & { capture?: CaptureStats }> {
    validateName('vnfs', o.name);
    const isNew = !this.store.vnfs.get(o.name);
    // Bad excludes are refused before anything connects.
    for (const e of o.excludes ?? []) excludePattern(e);
    let stats: CaptureStats | undefined;
    const detail: Record<string, unknown> = { node: o.node.name, excludes: o.excludes ?? [] };
    return this.commit({
      name: o.name,
      source: `capture:${o.node.name}`,
      comment: o.comment,
      kernel: o.kernel,
      event: 'vnfs.capture',
      node: o.node,
      detail,
      fill: async (tree) => {
        stats = await captureInto(tree, { node: o.node.name, target: o.target, excludes: o.excludes ?? [], progress: this.progress, connectTimeoutMs: o.connectTimeoutMs, idleTimeoutMs: o.idleTimeoutMs });
        detail.streamedBytes = stats.bytes;
        detail.streamMs = stats.ms;
        detail.entries = stats.tar.entries;
        detail.cleaned = { removed: stats.clean.removed, emptied: stats.clean.emptied.length, skipped: stats.clean.skipped };
        detail.warnings = stats.warnings.length;
      },
    }).then((r) => {
      const src = o.from && o.from !== o.name ? this.store.vnfs.get(o.from) : undefined;
      if (isNew && r.rev !== null && src?.cmdline) this.store.vnfs.set(o.name, 'cmdline', src.cmdline);
      return { ...r, capture: stats };
    });
  }

  // ---- revisions ------------------------------------------------------------------

  private requireImage(name: string) {
    const v = this.store.vnfs.get(name);
    if (!v) throw new NotFound(`no VNFS named "${name}"`);
    return v;
  }

  /** Which revisions nodes pin (field NAME@REV, or attribute vnfs_rev on the node or its group). */
  pins(name: string): Map<number, string[]> {
    const out = new Map<number, string[]>();
    for (const u of this.store.vnfs.usersOf(name)) {
      const node = this.store.nodes.byMac(u.mac);
      if (!node) continue;
      const attrs = this.store.attrsFor(node);
      const at = u.vnfs.lastIndexOf('@');
      const rev = at > 0 ? Number(u.vnfs.slice(at + 1)) : /^[1-9][0-9]*$/.test((attrs.vnfs_rev ?? '').trim()) ? Number(attrs.vnfs_rev!.trim()) : undefined;
      if (rev === undefined) continue;
      out.set(rev, [...(out.get(rev) ?? []), node.name]);
    }
    return out;
  }

  revisions(name: string): RevisionInfo[] {
    const v = this.requireImage(name);
    const pins = this.pins(name);
    const pinned = new Set([...pins.values()].flat());
    const followers = this.store.vnfs.usersOf(name).map((u) => u.name).filter((n) => !pinned.has(n));
    return this.store.vnfs.revisions(name).map((r: VnfsRevision) => ({
      rev: r.rev,
      parent: r.parent,
      source: r.source,
      comment: r.comment,
      createdAt: r.createdAt,
      current: r.rev === v.currentRev,
      nodes: [...(pins.get(r.rev) ?? []), ...(r.rev === v.currentRev ? followers : [])].sort(),
      manifest: parseManifest(r.manifest),
    }));
  }

  /** The first packed file of a recorded revision that is not on disk (a node booting it would fail), or undefined. */
  missingArtifact(name: string, rev: number): string | undefined {
    const r = this.store.vnfs.revision(name, rev);
    if (!r) return 'manifest.json';
    const m = parseManifest(r.manifest);
    for (const f of ['vmlinuz', 'initrd.img', 'rootfs.squashfs', 'manifest.json']) {
      if (f !== 'manifest.json' && !m.artifacts[f as 'vmlinuz']) continue;
      if (!fs.existsSync(path.join(this.layout.artifactsDir(name, rev), f))) return f;
    }
    return undefined;
  }

  /** Make REV (default: the current one's parent, else the previous revision) current. Nothing is repacked. */
  async rollback(name: string, rev?: number): Promise<{ vnfs: string; from: number; to: number }> {
    const t0 = Date.now();
    return this.locked(name, async () => {
      const v = this.requireImage(name);
      if (v.currentRev === null || v.currentRev === undefined) throw new ImageError(`VNFS "${name}" has no revisions (it is a kernel+initrd VNFS): nothing to roll back`);
      const revs = this.store.vnfs.revisions(name);
      let to = rev;
      if (to === undefined) {
        const cur = revs.find((r) => r.rev === v.currentRev);
        const parent = cur?.parent ?? null;
        to = parent !== null && revs.some((r) => r.rev === parent) ? parent : revs.filter((r) => r.rev < v.currentRev!).pop()?.rev;
        if (to === undefined) throw new ImageError(`VNFS "${name}" has no revision before ${v.currentRev} to roll back to`);
      }
      if (!revs.some((r) => r.rev === to)) throw new NotFound(`VNFS "${name}" has no revision ${to}: see "pxeherd vnfs revisions ${name}"`);
      const missing = this.missingArtifact(name, to);
      if (missing) throw new ImageError(`revision ${to} of VNFS "${name}" is missing ${missing} on disk: it cannot be made current`, missing);
      const from = v.currentRev;
      this.store.vnfs.setCurrent(name, to);
      this.o.events.record({ kind: 'vnfs.rollback', detail: { vnfs: name, from, to, ms: Date.now() - t0 } });
      return { vnfs: name, from, to };
    });
  }

  /**
   * Remove all but the newest `keep` revisions, never the current one nor one a node pins.
   * Says what it kept and why.
   */
  async prune(name: string, keep: number): Promise<{ vnfs: string; removed: { rev: number; bytes: number }[]; kept: { rev: number; why: string[] }[]; freedBytes: number }> {
    if (!Number.isInteger(keep) || keep < 0) throw new ImageError(`--keep must be a whole number of revisions (0 or more), not "${keep}"`);
    const t0 = Date.now();
    return this.locked(name, async () => {
      const v = this.requireImage(name);
      const revs = this.store.vnfs.revisions(name).map((r) => r.rev).sort((a, b) => b - a);
      const pins = this.pins(name);
      const newest = new Set(revs.slice(0, keep));
      const kept: { rev: number; why: string[] }[] = [];
      const drop: number[] = [];
      for (const r of revs) {
        const why: string[] = [];
        if (r === v.currentRev) why.push('current');
        if (pins.has(r)) why.push(`pinned by ${pins.get(r)!.join(', ')}`);
        if (newest.has(r)) why.push(`among the newest ${keep}`);
        if (why.length) kept.push({ rev: r, why });
        else drop.push(r);
      }
      // Bytes only these revisions hold (their links dropping to zero).
      const before = this.usage(name);
      const removed: { rev: number; bytes: number }[] = [];
      for (const r of drop) {
        this.store.vnfs.deleteRevision(name, r);
        // Records first, then files: a crash in between leaves orphans the next operation removes.
        fs.rmSync(this.layout.artifactsDir(name, r), { recursive: true, force: true });
        fs.rmSync(this.layout.revDir(name, r), { recursive: true, force: true });
        removed.push({ rev: r, bytes: before.revisions.find((x) => x.rev === r)?.ownBytes ?? 0 });
      }
      const after = drop.length ? this.usage(name) : before;
      const freedBytes = before.totalBytes - after.totalBytes;
      this.o.events.record({ kind: 'vnfs.prune', detail: { vnfs: name, keep, removed: removed.map((r) => r.rev), kept: kept.map((k) => k.rev), freedBytes, ms: Date.now() - t0 } });
      return { vnfs: name, removed, kept, freedBytes };
    });
  }

  /**
   * What each revision costs on disk, hard links counted once: `addedBytes` is what it adds
   * over the revisions before it (a one-file change costs about that file plus its packed
   * artifacts), `ownBytes` what only it holds (freed by pruning it alone); `totalBytes` all of them.
   */
  usage(name: string): { totalBytes: number; revisions: { rev: number; treeBytes: number; artifactBytes: number; addedBytes: number; ownBytes: number }[] } {
    const revs = this.store.vnfs.revisions(name).map((r) => r.rev).sort((a, b) => a - b);
    const inodes = new Map<string, { size: number; revs: Set<number> }>();
    const per = new Map<number, { tree: number; art: number; keys: Set<string> }>();
    for (const r of revs) {
      const keys = new Set<string>();
      let tree = 0;
      let art = 0;
      const visit = (dir: string, isTree: boolean) => {
        const rec = (d: string) => {
          let ents: fs.Dirent[];
          try {
            ents = fs.readdirSync(d, { withFileTypes: true });
          } catch {
            return;
          }
          for (const e of ents) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) rec(p);
            else if (e.isFile()) {
              const st = fs.lstatSync(p);
              const k = `${st.dev}:${st.ino}`;
              if (keys.has(k)) continue;
              keys.add(k);
              const bytes = st.blocks * 512;
              if (isTree) tree += bytes;
              else art += bytes;
              const i = inodes.get(k) ?? { size: bytes, revs: new Set<number>() };
              i.revs.add(r);
              inodes.set(k, i);
            }
          }
        };
        rec(dir);
      };
      visit(this.layout.treeDir(name, r), true);
      visit(this.layout.artifactsDir(name, r), false);
      per.set(r, { tree, art, keys });
    }
    const seen = new Set<string>();
    let total = 0;
    const out = revs.map((r) => {
      const p = per.get(r)!;
      let added = 0;
      let own = 0;
      for (const k of p.keys) {
        const i = inodes.get(k)!;
        if (!seen.has(k)) {
          seen.add(k);
          added += i.size;
        }
        if (i.revs.size === 1) own += i.size;
      }
      total += added;
      return { rev: r, treeBytes: p.tree, artifactBytes: p.art, addedBytes: added, ownBytes: own };
    });
    return { totalBytes: total, revisions: out };
  }

  /** Remove an image's trees and packed revisions (vnfs delete). */
  removeFiles(name: string): void {
    fs.rmSync(this.layout.imageDir(name), { recursive: true, force: true });
  }
}

/** The command run inside an image failed: no revision; the CLI exits with 1. */
export class ExecFailed extends Error {
  constructor(
    message: string,
    readonly commandExit: number,
  ) {
    super(message);
    this.name = 'ExecFailed';
  }
}
