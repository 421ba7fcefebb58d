/**
 * `pxeherd db copy`: a SQLite database into an empty PostgreSQL one, in one PostgreSQL
 * transaction, verified before it commits: per table, the row count and a sha256 over the rows
 * (canonical JSON of each row, lines sorted, so the checksum does not depend on either
 * database's ordering or collation) must be equal on both sides, else everything is rolled back.
 */
import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import type { DB } from './db.js';
import { SCHEMA_VERSION } from './db.js';
import type { Sql, TxSql } from './pg/connect.js';
import { migratePostgres } from './pg/schema.js';

/** Parents before children (foreign keys); tables not listed here are copied after these. */
const ORDER = ['groups', 'group_attrs', 'vnfs', 'vnfs_attrs', 'vnfs_revisions', 'nodes', 'node_attrs', 'node_installs', 'inventory', 'health', 'leases', 'leases6', 'events', 'meta'];

export interface TableCopy {
  table: string;
  rows: number;
  sha256: string;
  /** Rows and checksum read back from PostgreSQL inside the transaction. */
  verified: boolean;
}

export class CopyRefused extends Error {}

function sqliteTables(db: DB): string[] {
  const names = db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all().map((r) => r.name);
  // changes: PostgreSQL's triggers write it (for the replicas), SQLite's is always empty.
  return [...ORDER.filter((t) => names.includes(t)), ...names.filter((t) => !ORDER.includes(t) && t !== 'changes').sort()];
}

function columnsOf(db: DB, table: string): string[] {
  return db.prepare<[], { name: string }>(`PRAGMA table_info("${table}")`).all().map((r) => r.name);
}

/** Values as both databases return them: numbers as numbers, text as text, NULL as null. */
function canon(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  return v ?? null;
}

function checksum(rows: unknown[][]): string {
  const lines = rows.map((r) => JSON.stringify(r.map(canon))).sort();
  const h = crypto.createHash('sha256');
  for (const l of lines) h.update(l + '\n');
  return h.digest('hex');
}

export async function copySqliteToPostgres(
  sqliteFile: string,
  sql: Sql,
  progress: (line: string) => void = () => undefined,
): Promise<{ tables: TableCopy[]; schemaVersion: number }> {
  const src = new Database(sqliteFile, { readonly: true, fileMustExist: true });
  try {
    const version = src.pragma('user_version', { simple: true }) as number;
    if (version !== SCHEMA_VERSION) {
      throw new CopyRefused(`${sqliteFile} has schema version ${version}, this pxeherd ${SCHEMA_VERSION}: run \`pxeherd db migrate\` on it first (with database unset) or use the matching pxeherd`);
    }
    await migratePostgres(sql);
    // One read transaction on SQLite: a server writing meanwhile cannot tear the copy.
    src.prepare('BEGIN').run();
    const tables = sqliteTables(src);
    const result = await sql.begin(async (tx: TxSql) => {
      for (const t of tables) {
        const [r] = await tx.unsafe(`SELECT count(*)::bigint AS n FROM "${t}"`);
        if (Number(r!.n) > 0) throw new CopyRefused(`the destination is not empty (table ${t} has ${r!.n} rows): copy goes into a new, empty database`);
      }
      const out: TableCopy[] = [];
      for (const t of tables) {
        const cols = columnsOf(src, t);
        const rows = src.prepare(`SELECT ${cols.map((c) => `"${c}"`).join(', ')} FROM "${t}"`).raw().all() as unknown[][];
        const chunk = Math.max(1, Math.floor(30000 / cols.length));
        for (let i = 0; i < rows.length; i += chunk) {
          // eslint-disable-next-line @typescript-eslint/no-explicit-any
          const part = rows.slice(i, i + chunk).map((r) => Object.fromEntries(cols.map((c, j) => [c, canon(r[j])]))) as Record<string, any>[];
          try {
            await tx`INSERT INTO ${tx(t)} ${tx(part, cols)}`;
          } catch (e) {
            // SQLite keeps what PostgreSQL refuses (a NUL in text, text in an INTEGER column).
            throw new Error(`table ${t}, rows ${i + 1}-${i + part.length}: PostgreSQL refused them: ${(e as Error).message}; nothing was copied`);
          }
        }
        const want = checksum(rows);
        const back = (await tx.unsafe(`SELECT ${cols.map((c) => `"${c}"`).join(', ')} FROM "${t}"`).values()) as unknown[][];
        const got = checksum(back);
        if (back.length !== rows.length || got !== want) {
          throw new Error(`verification failed for table ${t}: SQLite ${rows.length} rows sha256 ${want.slice(0, 16)}, PostgreSQL ${back.length} rows sha256 ${got.slice(0, 16)}; nothing was copied`);
        }
        out.push({ table: t, rows: rows.length, sha256: want, verified: true });
        progress(`${t}: ${rows.length} rows, sha256 ${want.slice(0, 16)} verified`);
      }
      // Events keep their ids; new ones continue after the highest.
      await tx`SELECT setval(pg_get_serial_sequence('events', 'id'), GREATEST((SELECT max(id) FROM events), 1), (SELECT max(id) FROM events) IS NOT NULL)`;
      return out;
    });
    return { tables: result as unknown as TableCopy[], schemaVersion: version };
  } finally {
    if (src.inTransaction) src.prepare('ROLLBACK').run();
    src.close();
  }
}
