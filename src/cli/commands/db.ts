/**
 * `pxeherd db migrate|status|copy`: the database behind the configuration (SQLite under the
 * state directory, or `database: postgres://...` / $PXEHERD_DATABASE).
 */
import { json } from '../options.js';
import fs from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import Database from 'better-sqlite3';
import { RuntimeFailure, table, type CliContext } from '../context.js';
import type { Run } from '../main.js';
import { InvalidInput } from '../../nodes/mac.js';
import { dbPath } from '../../store/store.js';
import { migrate, SCHEMA_VERSION } from '../../store/db.js';
import { isPostgresUrl, redactUrl } from '../../store/pg/url.js';


/** The tables `db status` counts. */
const COUNTED = ['nodes', 'leases', 'events'] as const;

type Target = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };

function configured(ctx: CliContext): Target {
  const d = ctx.config.database;
  if (isPostgresUrl(d)) return { kind: 'postgres', url: d };
  if (d.startsWith('sqlite:')) return { kind: 'sqlite', file: path.resolve(d.slice('sqlite:'.length)) };
  return { kind: 'sqlite', file: dbPath(ctx.config.statedir) };
}

function describe(t: Target): string {
  return t.kind === 'sqlite' ? `sqlite:${t.file}` : redactUrl(t.url);
}

/** Open a pool, run `fn`, close; connection trouble becomes exit 1 naming the database. */
async function withPostgres<T>(url: string, fn: (sql: import('../../store/pg/connect.js').Sql) => Promise<T>): Promise<T> {
  const { connectPostgres } = await import('../../store/pg/connect.js');
  const { SchemaTooNew } = await import('../../store/pg/schema.js');
  const sql = connectPostgres(url, { max: 2, applicationName: 'pxeherd db' });
  try {
    return await fn(sql);
  } catch (e) {
    if (e instanceof InvalidInput || e instanceof RuntimeFailure) throw e;
    if (e instanceof SchemaTooNew) throw new RuntimeFailure(e.message);
    const code = (e as { code?: string }).code;
    throw new RuntimeFailure(`database ${redactUrl(url)}: ${(e as Error).message}${code && /^(ECONNREFUSED|ENOENT|ENOTFOUND|CONNECT_TIMEOUT)$/.test(code) ? ' (is PostgreSQL running there, and the URL right?)' : ''}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

function stateOf(version: number, code: number): 'current' | 'behind' | 'newer' | 'empty' {
  if (version === 0) return 'empty';
  return version === code ? 'current' : version < code ? 'behind' : 'newer';
}

export function dbCommand(run: Run): Command {
  const db = new Command('db').description('the node database: SQLite under the state directory, or PostgreSQL shared by several servers (`database:`)');

  db.command('migrate')
    .description('bring the database schema to this version of pxeherd (PostgreSQL: under an advisory lock, so several servers may run it at once)')
    .addOption(json())
    .action(
      run(async (ctx) => {
        const t = configured(ctx);
        let from: number, to: number;
        if (t.kind === 'postgres') {
          ({ from, to } = await withPostgres(t.url, async (sql) => {
            const { migratePostgres } = await import('../../store/pg/schema.js');
            return migratePostgres(sql, (v) => ctx.io.err(`migrated to version ${v}\n`));
          }));
        } else {
          fs.mkdirSync(path.dirname(t.file), { recursive: true });
          const d = new Database(t.file);
          try {
            d.pragma('busy_timeout = 10000');
            from = d.pragma('user_version', { simple: true }) as number;
            try {
              migrate(d);
            } catch (e) {
              throw new RuntimeFailure(`${t.file}: ${(e as Error).message}`);
            }
            to = d.pragma('user_version', { simple: true }) as number;
          } finally {
            d.close();
          }
        }
        ctx.print({ backend: t.kind, database: describe(t), from, to, changed: from !== to }, () =>
          from === to ? `${describe(t)}: schema version ${to}, nothing to do` : `${describe(t)}: schema version ${from} -> ${to}`,
        );
      }),
    );

  db.command('status')
    .description('which database, its schema version against this pxeherd, and row counts')
    .addOption(json())
    .action(
      run(async (ctx) => {
        const t = configured(ctx);
        let version = 0;
        const counts: Record<string, number> = {};
        if (t.kind === 'postgres') {
          await withPostgres(t.url, async (sql) => {
            const { pgSchemaVersion } = await import('../../store/pg/schema.js');
            version = await pgSchemaVersion(sql);
            if (version > 0) for (const c of COUNTED) counts[c] = Number((await sql.unsafe(`SELECT count(*)::bigint AS n FROM ${c}`))[0]!.n);
          });
        } else if (fs.existsSync(t.file)) {
          const d = new Database(t.file, { readonly: true });
          try {
            version = d.pragma('user_version', { simple: true }) as number;
            if (version > 0) for (const c of COUNTED) counts[c] = (d.prepare(`SELECT count(*) AS n FROM ${c}`).get() as { n: number }).n;
          } finally {
            d.close();
          }
        }
        const codeVersion = SCHEMA_VERSION;
        const state = stateOf(version, codeVersion);
        const hint = { empty: 'run `pxeherd db migrate`', behind: 'run `pxeherd db migrate`', newer: 'upgrade pxeherd: the database was migrated by a newer version', current: '' }[state];
        ctx.print({ backend: t.kind, database: describe(t), server_id: ctx.config.server_id, schema_version: version, code_version: codeVersion, state, counts }, () =>
          `database: ${describe(t)}\nbackend:  ${t.kind}\nserver:   ${ctx.config.server_id}\nschema:   version ${version} (this pxeherd: ${codeVersion}) ${state}${hint ? ': ' + hint : ''}\n` +
          (Object.keys(counts).length ? table(['TABLE', 'ROWS'], Object.entries(counts)) : ''),
        );
      }),
    );

  db.command('copy')
    .description('copy a SQLite database into a new, empty PostgreSQL database in one transaction, verified (row counts and a sha256 per table)')
    .addOption(new Option('--from <sqlite:PATH>', 'source (default: the SQLite database under the state directory)'))
    .addOption(new Option('--to <postgres://URL>', 'destination (default: the configured database)'))
    .addOption(json())
    .action(
      run(async (ctx, o: { from?: string; to?: string }) => {
        const from = o.from ?? `sqlite:${dbPath(ctx.config.statedir)}`;
        if (!from.startsWith('sqlite:')) throw new InvalidInput(`--from ${from}: must be sqlite:PATH (the SQLite file to copy)`, 'from');
        const file = path.resolve(from.slice('sqlite:'.length));
        if (!fs.existsSync(file)) throw new InvalidInput(`--from ${from}: no such file ${file}`, 'from');
        const to = o.to ?? ctx.config.database;
        if (!to) throw new InvalidInput('--to postgres://USER@HOST/DB is required (or set database: in the configuration)', 'to');
        if (!isPostgresUrl(to)) throw new InvalidInput(`--to ${redactUrl(to)}: must be a postgres:// URL`, 'to');
        const { copySqliteToPostgres, CopyRefused } = await import('../../store/copy.js');
        const res = await withPostgres(to, async (sql) => {
          try {
            return await copySqliteToPostgres(file, sql, (l) => ctx.io.err(l + '\n'));
          } catch (e) {
            if (e instanceof CopyRefused) throw new InvalidInput(e.message, 'to');
            throw e;
          }
        });
        const total = res.tables.reduce((n, t) => n + t.rows, 0);
        ctx.print({ from: `sqlite:${file}`, to: redactUrl(to), schema_version: res.schemaVersion, rows: total, tables: res.tables }, () =>
          table(['TABLE', 'ROWS', 'SHA256', 'VERIFIED'], res.tables.map((t) => [t.table, t.rows, t.sha256, t.verified ? 'yes' : 'NO'])) +
          `copied ${total} rows from sqlite:${file} to ${redactUrl(to)} in one transaction; every table verified`,
        );
      }),
    );
  return db;
}
