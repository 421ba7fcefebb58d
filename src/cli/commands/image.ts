import { Command, Option } from 'commander';
import { json } from '../options.js';
import { RuntimeFailure, table, type CliContext } from '../context.js';
import type { Run } from '../main.js';
import { ExecFailed, ImageService, type CommitResult, type RevisionInfo } from '../../images/service.js';
import { ImageError } from '../../images/errors.js';
import { DEFAULT_PACKAGES } from '../../images/debian.js';
import { revisionJson } from '../../images/json.js';
import { excludePattern, splitExcludes } from '../../images/capture.js';
import { InvalidInput } from '../../nodes/mac.js';

export { revisionJson };


/** The image service for a CLI run: progress lines on stderr when it is a terminal (or PXEHERD_PROGRESS=1). */
export async function imageServiceFor(ctx: CliContext): Promise<ImageService> {
  const { defaultTemplateDirs } = await import('../../boot/service.js');
  const tty = !!process.stderr.isTTY;
  const show = tty || process.env.PXEHERD_PROGRESS === '1';
  const t0 = Date.now();
  return new ImageService({
    store: ctx.store,
    statedir: ctx.config.statedir,
    templatesDirs: defaultTemplateDirs(ctx.config.statedir),
    events: ctx.store.events,
    tty: tty && !ctx.opts.json,
    progress: show ? (m) => ctx.io.err(`pxeherd: [${((Date.now() - t0) / 1000).toFixed(0).padStart(3)}s] ${m}\n`) : undefined,
  });
}

export const mib = (b: number | undefined | null): string => (b === undefined || b === null ? '-' : `${(b / 1048576).toFixed(1)} MiB`);

export function commitJson(r: CommitResult) {
  return {
    vnfs: r.vnfs,
    rev: r.rev,
    parent: r.parent,
    unchanged: !!r.unchanged,
    linkedFiles: r.linked,
    reused: r.reused,
    ms: r.ms,
    manifest: r.manifest ?? null,
  };
}

function commitText(what: string, r: CommitResult): string {
  if (r.rev === null) return `${r.vnfs}: no change, still revision ${r.parent}`;
  const m = r.manifest!;
  const a = m.artifacts;
  return (
    `${what} ${r.vnfs} revision ${r.rev}${r.parent !== null ? ` (parent ${r.parent})` : ''} in ${(r.ms / 1000).toFixed(1)} s, now current\n` +
    `  tree:   ${m.tree.files} files, ${mib(m.tree.bytes)}${r.linked ? ` (${r.linked} unchanged files shared with revision ${r.parent})` : ''}\n` +
    `  kernel: ${m.kernel || 'none: nodes cannot boot it until one is installed'}\n` +
    `  files:  vmlinuz ${mib(a.vmlinuz?.size)}, initrd.img ${mib(a['initrd.img']?.size)}, rootfs.squashfs ${mib(a['rootfs.squashfs']?.size)}${r.reused.length ? ` (reused: ${r.reused.join(', ')})` : ''}`
  );
}

function revisionsTable(revs: RevisionInfo[], usage?: Map<number, { addedBytes: number; ownBytes: number }>): string {
  if (!revs.length) return 'no revisions\n';
  return table(
    ['REV', '', 'PARENT', 'CREATED', 'SOURCE', 'KERNEL', 'SQUASHFS', ...(usage ? ['ADDS', 'OWN'] : []), 'NODES', 'COMMENT'],
    revs.map((r) => [
      r.rev,
      r.current ? '*' : '',
      r.parent ?? '-',
      new Date(r.createdAt).toISOString().replace('T', ' ').slice(0, 19),
      r.source.length > 40 ? r.source.slice(0, 37) + '...' : r.source,
      r.manifest.kernel || '-',
      mib(r.manifest.artifacts['rootfs.squashfs']?.size),
      ...(usage ? [mib(usage.get(r.rev)?.addedBytes), mib(usage.get(r.rev)?.ownBytes)] : []),
      r.nodes.length ? r.nodes.join(',') : '-',
      r.comment || '-',
    ]),
  );
}

/** build, import, exec, shell, revisions, rollback, prune: added to the `vnfs` command. */
export function addImageCommands(vnfs: Command, run: Run): void {
  vnfs
    .command('build')
    .description('build a Debian root filesystem with mmdebstrap (the machine\'s own apt sources) as a new revision')
    .argument('<NAME>')
    .requiredOption('--debian <SUITE>', 'Debian suite, e.g. bookworm')
    .option('--packages <LIST>', `extra packages, comma separated (always: ${DEFAULT_PACKAGES.join(',')})`)
    .option('--hook <FILE>', 'executable run as FILE <image-root> after the packages are installed')
    .option('--kernel <VERSION>', 'kernel to boot when the image has several (/boot/vmlinuz-VERSION)')
    .option('--comment <TEXT>', 'a note kept with the revision')
    .addOption(json())
    .action(
      run(async (ctx, name: string, o: { debian: string; packages?: string; hook?: string; kernel?: string; comment?: string }) => {
        const svc = await imageServiceFor(ctx);
        const r = await svc.build({ name, suite: o.debian, packages: o.packages, hook: o.hook, kernel: o.kernel, comment: o.comment });
        ctx.print(commitJson(r), () => commitText('built', r));
      }),
    );
  vnfs
    .command('import')
    .description('import a root filesystem as a new revision: DIR, FILE.tar[.gz|.xz|.zst], oci-archive:FILE, docker-archive:FILE, docker://HOST[:PORT]/REPO:TAG')
    .argument('<NAME>')
    .argument('<SOURCE>')
    .option('--kernel <VERSION>', 'kernel to boot when the image has several')
    .option('--comment <TEXT>', 'a note kept with the revision')
    .addOption(json())
    .action(
      run(async (ctx, name: string, from: string, o: { kernel?: string; comment?: string }) => {
        const svc = await imageServiceFor(ctx);
        const r = await svc.import({ name, from, kernel: o.kernel, comment: o.comment });
        ctx.print(commitJson(r), () => commitText('imported', r));
      }),
    );
  const execAction = (interactive: boolean) =>
    run(async (ctx, name: string, ...rest: unknown[]) => {
      const command = interactive ? [] : (rest[0] as string[]);
      const o = rest[interactive ? 0 : 1] as { comment?: string; shell?: string };
      const svc = await imageServiceFor(ctx);
      try {
        const r = await svc.exec({ name, command: interactive ? [o.shell ?? '/bin/bash', '-l'] : command, interactive, comment: o.comment, stdout: ctx.opts.json ? 'stderr' : 'inherit' });
        ctx.print({ ...commitJson(r), exitCode: r.exitCode }, () => commitText('committed', r));
      } catch (e) {
        if (e instanceof ExecFailed) throw new RuntimeFailure(e.message);
        throw e;
      }
    });
  vnfs
    .command('exec')
    .description('run a command inside the image (own mount namespace, /proc /sys /dev, the master\'s resolv.conf): exit 0 with changes makes a new revision, a failure changes nothing')
    .argument('<NAME>')
    .argument('<CMD...>', 'the command and its arguments (after --)')
    .option('--comment <TEXT>', 'a note kept with the revision')
    .addOption(json())
    .action(execAction(false));
  vnfs
    .command('shell')
    .description('an interactive shell inside the image: leaving it with exit 0 commits the changes as a new revision, "exit 1" discards them')
    .argument('<NAME>')
    .option('--shell <PATH>', 'shell inside the image', '/bin/bash')
    .option('--comment <TEXT>', 'a note kept with the revision')
    .addOption(json())
    .action(execAction(true));
  vnfs
    .command('capture')
    .description('make a new revision of NAME (created when absent) from a running node\'s root filesystem, streamed over SSH (one file system; /proc /sys /dev /run /tmp and the excludes left out); host keys, machine-id, logs, leases, histories and pxeherd\'s per-node state are cleaned in the copy, never on the node')
    .argument('<NODE>', 'node name or MAC (pxeherd logs in with its key and checks the host key it keeps)')
    .argument('<NAME>', 'the VNFS to add the revision to')
    .option('--exclude <PATH>', 'an absolute path on the node to leave out, repeatable (shell globs; also config vnfs.capture_exclude and attribute capture_exclude)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--kernel <VERSION>', 'kernel to boot when the image has several')
    .option('--comment <TEXT>', 'a note kept with the revision')
    .addOption(new Option('--connect-timeout <S>', 'seconds to connect and log in').default('15'))
    .addOption(new Option('--idle-timeout <S>', 'seconds without a byte from the node before giving up').default('300'))
    .addOption(json())
    .action(
      run(async (ctx, nodeArg: string, name: string, o: { exclude?: string[]; kernel?: string; comment?: string; connectTimeout: string; idleTimeout: string }) => {
        const secs = (v: string, opt: string) => {
          const n = Number(v);
          if (!Number.isFinite(n) || n <= 0) throw new InvalidInput(`${opt} must be a number of seconds > 0, not "${v}"`, opt);
          return n * 1000;
        };
        const connectTimeoutMs = secs(o.connectTimeout, '--connect-timeout');
        const idleTimeoutMs = secs(o.idleTimeout, '--idle-timeout');
        const node = ctx.nodes.get(nodeArg);
        const attrs = ctx.store.attrsFor(node);
        const excludes = [...ctx.config.vnfs.capture_exclude, ...splitExcludes(attrs.capture_exclude), ...(o.exclude ?? [])];
        for (const e of ctx.config.vnfs.capture_exclude) excludePattern(e, 'config vnfs.capture_exclude');
        for (const e of splitExcludes(attrs.capture_exclude)) excludePattern(e, `attribute capture_exclude of ${node.name}`);
        const { ensureKey } = await import('../../remote/keys.js');
        const { nodeTarget } = await import('../../remote/target.js');
        const target = nodeTarget(node, attrs, ensureKey(ctx.config.statedir), ctx.config.statedir);
        const svc = await imageServiceFor(ctx);
        const from = node.vnfs.includes('@') ? node.vnfs.slice(0, node.vnfs.lastIndexOf('@')) : node.vnfs;
        const r = await svc.capture({ name, node: { name: node.name, mac: node.mac }, target, excludes, comment: o.comment, kernel: o.kernel, connectTimeoutMs, idleTimeoutMs, from: from || undefined });
        const c = r.capture!;
        ctx.print(
          {
            ...commitJson(r),
            node: node.name,
            streamedBytes: c.bytes,
            streamMs: c.ms,
            entries: c.tar.entries,
            excludes: c.patterns.map((p) => p.slice(1)),
            cleaned: c.clean,
            warnings: c.warnings,
          },
          () => `${commitText('captured', r)}\n  from:   ${node.name}, ${mib(c.bytes)} streamed in ${(c.ms / 1000).toFixed(1)} s; cleaned in the copy: ${c.clean.removed.length} removed, ${c.clean.emptied.length} emptied`,
        );
      }),
    );
  vnfs
    .command('revisions')
    .description('the revisions of a VNFS: source, kernel, size, nodes using each (* = current)')
    .argument('<NAME>')
    .addOption(json())
    .action(
      run(async (ctx, name: string) => {
        const svc = await imageServiceFor(ctx);
        const revs = svc.revisions(name);
        ctx.print({ vnfs: name, revisions: revs.map((r) => revisionJson(r)) }, () => revisionsTable(revs));
      }),
    );
  vnfs
    .command('rollback')
    .description('make an earlier revision current (default: the current one\'s parent); nothing is repacked')
    .argument('<NAME>')
    .argument('[REV]', 'revision number')
    .addOption(json())
    .action(
      run(async (ctx, name: string, rev: string | undefined) => {
        if (rev !== undefined && !/^[1-9][0-9]*$/.test(rev)) throw new ImageError(`revision "${rev}" is not a revision number: see pxeherd vnfs revisions ${name}`);
        const svc = await imageServiceFor(ctx);
        const r = await svc.rollback(name, rev === undefined ? undefined : Number(rev));
        ctx.print(r, () => `${name}: current revision ${r.from} -> ${r.to}`);
      }),
    );
  vnfs
    .command('prune')
    .description('remove old revisions, keeping the newest N; never the current one or one a node pins')
    .argument('<NAME>')
    .requiredOption('--keep <N>', 'how many of the newest revisions to keep')
    .addOption(json())
    .action(
      run(async (ctx, name: string, o: { keep: string }) => {
        if (!/^[0-9]+$/.test(o.keep)) throw new ImageError(`--keep "${o.keep}" is not a number of revisions`);
        const svc = await imageServiceFor(ctx);
        const r = await svc.prune(name, Number(o.keep));
        ctx.print(r, () =>
          [
            r.removed.length ? `removed revision(s) ${r.removed.map((x) => x.rev).join(', ')} (${mib(r.freedBytes)} freed)` : 'removed nothing',
            ...r.kept.map((k) => `kept revision ${k.rev}: ${k.why.join('; ')}`),
          ].join('\n'),
        );
      }),
    );
}
