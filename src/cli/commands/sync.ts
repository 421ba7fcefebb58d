import { Command, Option } from 'commander';
import { RuntimeFailure, table, type CliContext } from '../context.js';
import type { Run } from '../main.js';
import { ImageError } from '../../images/errors.js';
import { ARTIFACTS } from '../../images/manifest.js';
import type { VnfsRef } from '../../peers/artifacts.js';

export interface SyncFileResult {
  vnfs: string;
  /** null: the kernel or initrd of a kernel+initrd VNFS (vnfs/NAME/FILE). */
  rev: number | null;
  file: string;
  /**
   * present: already here and verified; checked: here, hashed now; fetched: from an origin;
   * written: manifest from the database; recorded: a file the database had no hash for (added
   * before pxeherd recorded them), hashed here and recorded; failed.
   */
  status: 'present' | 'checked' | 'fetched' | 'written' | 'recorded' | 'failed';
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

/** `vnfs sync [NAME[@REV]]`: fetch and verify VNFS files ahead of a boot storm. */
export function addSyncCommand(vnfs: Command, run: Run): void {
  vnfs
    .command('sync')
    .description(
      'fetch the files this server lacks from images.origins and verify them (default: every VNFS\'s current revision, the revisions nodes pin, and the kernel and initrd of every kernel+initrd VNFS)',
    )
    .argument('[TARGET]', 'NAME (its current revision, or its kernel and initrd) or NAME@REV')
    .addOption(new Option('--json', 'machine-readable output (stable schema)'))
    .action(
      run(async (ctx: CliContext, target: string | undefined) => {
        const { revisionArtifactsFor } = await import('../../peers/wiring.js');
        const store = ctx.store;
        const refs: VnfsRef[] = [];
        const artifacts = revisionArtifactsFor(ctx.config, store, store.events);
        const addRev = (name: string, rev: number) => {
          const m = artifacts.manifest(name, rev)!;
          for (const file of [...ARTIFACTS.filter((a) => m.artifacts[a]), 'manifest.json' as const]) refs.push({ vnfs: name, rev, file });
        };
        const addPlain = (v: { name: string; kernel: string; initrd: string }) => {
          for (const file of [v.kernel, v.initrd]) if (file) refs.push({ vnfs: v.name, file });
        };
        if (target) {
          const t = parseSyncTarget(target);
          const v = store.vnfs.get(t.name);
          if (!v) throw new ImageError(`no VNFS named "${t.name}": see pxeherd vnfs list`);
          const rev = t.rev ?? v.currentRev ?? undefined;
          if (rev === undefined || rev === null) addPlain(v);
          else if (!store.vnfs.revision(t.name, rev)) throw new ImageError(`VNFS "${t.name}" has no revision ${rev}: see pxeherd vnfs revisions ${t.name}`);
          else addRev(t.name, rev);
        } else {
          const seen = new Set<string>();
          const add = (name: string, rev: number) => {
            if (!seen.has(`${name}@${rev}`) && store.vnfs.revision(name, rev)) addRev(name, rev);
            seen.add(`${name}@${rev}`);
          };
          // The nodes' pins (NAME@REV), in the order of their first user by name: on PostgreSQL a
          // query over the pin column, not every node row (issue 19).
          const pins = ctx.vnfsPins();
          for (const v of store.vnfs.list()) {
            if (v.currentRev !== null && v.currentRev !== undefined) add(v.name, v.currentRev);
            else addPlain(v);
            for (const p of pins) {
              if (!p.startsWith(`${v.name}@`)) continue;
              const m = /@([1-9][0-9]*)$/.exec(p);
              if (m) add(v.name, Number(m[1]));
            }
          }
        }
        const log = (m: string) => ctx.io.err(`pxeherd: ${m}\n`);
        const results: SyncFileResult[] = [];
        for (const ref of refs) {
          const label = ref.rev === undefined ? `${ref.vnfs}/${ref.file}` : `${ref.vnfs} r${ref.rev}/${ref.file}`;
          let lastLine = 0;
          const r = await artifacts.ensure(ref, {
            onProgress: (bytes, total) => {
              if (Date.now() - lastLine < 1000) return;
              lastLine = Date.now();
              log(`${label}: ${(bytes / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MiB`);
            },
          });
          // unmanaged: a kernel+initrd VNFS's file the database no longer names (changed meanwhile): nothing to say.
          if (r.ok && r.how === 'unmanaged') continue;
          const rev = ref.rev ?? null;
          const res: SyncFileResult = r.ok
            ? { vnfs: ref.vnfs, rev, file: ref.file, status: r.how === 'verified' ? 'present' : (r.how as SyncFileResult['status']), origin: r.origin ?? null, bytes: r.bytes ?? null, ms: r.ms ?? null, error: null }
            : { vnfs: ref.vnfs, rev, file: ref.file, status: 'failed', origin: null, bytes: null, ms: null, error: r.reason };
          results.push(res);
          log(`${label}: ${res.status}${res.origin ? ` from ${res.origin} (${res.bytes} bytes in ${res.ms} ms)` : ''}${res.error ? `: ${res.error}` : ''}`);
        }
        const failed = results.filter((r) => r.status === 'failed');
        ctx.print({ server: ctx.config.server_id, origins: ctx.config.images.origins, files: results, failed: failed.length }, () =>
          results.length
            ? table(['VNFS', 'REV', 'FILE', 'STATUS', 'FROM'], results.map((r) => [r.vnfs, r.rev ?? '-', r.file, r.status, r.origin ?? (r.error ? r.error : '-')]))
            : 'no VNFS files to sync\n',
        );
        if (failed.length) throw new RuntimeFailure(`${failed.length} file(s) could not be fetched and verified (see above)`);
      }),
    );
}
