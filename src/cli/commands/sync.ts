import { Command, Option } from 'commander';
import { RuntimeFailure, table, type CliContext } from '../context.js';
import type { Run } from '../main.js';
import { ImageError } from '../../images/errors.js';
import { ARTIFACTS } from '../../images/manifest.js';
import type { RevisionFile } from '../../peers/artifacts.js';

export interface SyncFileResult {
  vnfs: string;
  rev: number;
  file: RevisionFile;
  /** present: already here and verified; checked: here, hashed now; fetched: from an origin; written: manifest from the database; failed. */
  status: 'present' | 'checked' | 'fetched' | 'written' | 'failed';
  origin: string | null;
  bytes: number | null;
  ms: number | null;
  error: string | null;
}

/** Pure: NAME or NAME@REV. */
export function parseSyncTarget(t: string): { name: string; rev?: number } {
  const m = /^([^@]+)(?:@([1-9][0-9]{0,8}))?$/.exec(t);
  if (!m) throw new ImageError(`"${t}" is not NAME or NAME@REV (e.g. compute@3)`);
  return { name: m[1]!, rev: m[2] ? Number(m[2]) : undefined };
}

/** `vnfs sync [NAME[@REV]]`: fetch and verify revision artifacts ahead of a boot storm. */
export function addSyncCommand(vnfs: Command, run: Run): void {
  vnfs
    .command('sync')
    .description('fetch the artifacts of revisions this server lacks from images.origins and verify them (default: every VNFS\'s current revision and the revisions nodes pin)')
    .argument('[TARGET]', 'NAME (its current revision) or NAME@REV')
    .addOption(new Option('--json', 'machine-readable output (stable schema)'))
    .action(
      run(async (ctx: CliContext, target: string | undefined) => {
        const { revisionArtifactsFor } = await import('../../peers/wiring.js');
        const store = ctx.store;
        const revs: { name: string; rev: number }[] = [];
        if (target) {
          const t = parseSyncTarget(target);
          const v = store.vnfs.get(t.name);
          if (!v) throw new ImageError(`no VNFS named "${t.name}": see pxeherd vnfs list`);
          const rev = t.rev ?? v.currentRev ?? undefined;
          if (rev === undefined || rev === null) throw new ImageError(`VNFS "${t.name}" has no revisions (a kernel+initrd VNFS): nothing to sync`);
          if (!store.vnfs.revision(t.name, rev)) throw new ImageError(`VNFS "${t.name}" has no revision ${rev}: see pxeherd vnfs revisions ${t.name}`);
          revs.push({ name: t.name, rev });
        } else {
          const seen = new Set<string>();
          const add = (name: string, rev: number) => {
            if (!seen.has(`${name}@${rev}`) && store.vnfs.revision(name, rev)) revs.push({ name, rev });
            seen.add(`${name}@${rev}`);
          };
          for (const v of store.vnfs.list()) {
            if (v.currentRev !== null && v.currentRev !== undefined) add(v.name, v.currentRev);
            for (const u of store.vnfs.usersOf(v.name)) {
              const m = /@([1-9][0-9]*)$/.exec(u.vnfs);
              if (m) add(v.name, Number(m[1]));
            }
          }
        }
        const log = (m: string) => ctx.io.err(`pxeherd: ${m}\n`);
        const artifacts = revisionArtifactsFor(ctx.config, store, store.events);
        const results: SyncFileResult[] = [];
        for (const { name, rev } of revs) {
          const m = artifacts.manifest(name, rev)!;
          const files: RevisionFile[] = [...ARTIFACTS.filter((a) => m.artifacts[a]), 'manifest.json'];
          for (const file of files) {
            let lastLine = 0;
            const r = await artifacts.ensure(
              { vnfs: name, rev, file },
              {
                onProgress: (bytes, total) => {
                  if (Date.now() - lastLine < 1000) return;
                  lastLine = Date.now();
                  log(`${name} r${rev}/${file}: ${(bytes / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MiB`);
                },
              },
            );
            const res: SyncFileResult = r.ok
              ? { vnfs: name, rev, file, status: r.how === 'verified' ? 'present' : r.how, origin: r.origin ?? null, bytes: r.bytes ?? null, ms: r.ms ?? null, error: null }
              : { vnfs: name, rev, file, status: 'failed', origin: null, bytes: null, ms: null, error: r.reason };
            results.push(res);
            log(`${name} r${rev}/${file}: ${res.status}${res.origin ? ` from ${res.origin} (${res.bytes} bytes in ${res.ms} ms)` : ''}${res.error ? `: ${res.error}` : ''}`);
          }
        }
        const failed = results.filter((r) => r.status === 'failed');
        ctx.print({ server: ctx.config.server_id, origins: ctx.config.images.origins, files: results, failed: failed.length }, () =>
          results.length
            ? table(['VNFS', 'REV', 'FILE', 'STATUS', 'FROM'], results.map((r) => [r.vnfs, r.rev, r.file, r.status, r.origin ?? (r.error ? r.error : '-')]))
            : 'no revisions to sync\n',
        );
        if (failed.length) throw new RuntimeFailure(`${failed.length} file(s) could not be fetched and verified (see above)`);
      }),
    );
}
