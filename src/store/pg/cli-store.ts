/**
 * `pxeherd node ...` and `pxeherd group ...` on PostgreSQL (`--database postgres://...`,
 * PXEHERD_DATABASE or the configuration's `database`): the same command code as on SQLite, over
 * an in-memory replica loaded from one PostgreSQL snapshot; the rows the command writes go to
 * PostgreSQL (src/store/pg/writer.ts, strict: refused or unreachable means the command fails
 * with exit 1 and nothing changed), its events too. Every server's replica then follows the
 * change log and hands nodes the new state.
 */
import os from 'node:os';
import type { Config } from '../../config/schema.js';
import type { BootEvent } from '../../nodes/types.js';
import { openDatabase } from '../db.js';
import { Store } from '../store.js';
import { PostgresBackend } from './backend.js';
import { PgReplica } from './replica.js';
import { PG_SCHEMA_VERSION, pgSchemaVersion } from './schema.js';
import { redactUrl } from './url.js';
import { WriteTag, WriteThrough } from './writer.js';
import type { WriteScope } from './cli-writes.js';

export class PgCliError extends Error {}

export interface PgCliStore {
  store: Store;
  /** Run the command: what it writes is one admin operation. */
  run<T>(fn: () => T): T;
  /** Its rows and events are in PostgreSQL (throws WriteRefused when they are not). */
  commit(): Promise<void>;
  /** The same, in the middle of the command (before a power cycle: servers must see boot once). */
  flush(): Promise<void>;
  /** Re-read these nodes from PostgreSQL (an address a server gave during the command). */
  refreshNodes(macs: string[]): Promise<void>;
  /** The connection, for reading events. */
  backend: PostgresBackend;
  /** Scoped load (src/store/pg/cli-writes.ts): rows read per table, and where the pattern's free names start. */
  scoped?: { counts: Record<string, number>; firstNumber?: number; groupCounts?: Map<string, number>; vnfsPins?: string[] };
  close(): Promise<void>;
}

/**
 * `scope`: load only the rows a writing command touches (src/store/pg/cli-writes.ts); without it
 * the whole database (commands not scoped yet).
 */
export async function openPgCliStore(config: Config, scope?: WriteScope): Promise<PgCliStore> {
  const url = config.database;
  const pg = PostgresBackend.connect(url, config.server_id || os.hostname(), { max: 2 });
  let v: number;
  try {
    v = await pgSchemaVersion(pg.sql);
  } catch (e) {
    await pg.close().catch(() => undefined);
    throw new PgCliError(`cannot reach the database ${redactUrl(url)}: ${(e as Error).message}`);
  }
  if (v !== PG_SCHEMA_VERSION) {
    await pg.close();
    throw new PgCliError(
      v < PG_SCHEMA_VERSION
        ? `database ${redactUrl(url)} has schema version ${v}, this pxeherd ${PG_SCHEMA_VERSION}: run \`pxeherd db migrate\` first`
        : `database ${redactUrl(url)} has schema version ${v}, newer than this pxeherd understands (${PG_SCHEMA_VERSION}): upgrade pxeherd`,
    );
  }
  const store = new Store(openDatabase(':memory:'), { serverId: pg.serverId });
  const { isConnectionError } = await import('../../server/pg-serve.js');
  // eslint-disable-next-line prefer-const
  let replica: PgReplica;
  const writer = new WriteThrough(store.db, pg, {
    refresh: (keys) => replica.refresh(keys),
    invalidate: () => undefined, // this replica ends with the command
    warn: (m) => process.stderr.write(`pxeherd: ${m}\n`),
    isConnectionError,
  });
  replica = new PgReplica(store.db, pg.sql, { applying: (fn) => writer.suspended(fn) });
  let scoped: PgCliStore['scoped'];
  try {
    if (scope) {
      const { readWriteScope } = await import('./cli-writes.js');
      const { fillRows } = await import('./cli-reads.js');
      const read = (await pg.sql.begin('isolation level repeatable read read only', (tx) => readWriteScope(tx, scope, config))) as Awaited<ReturnType<typeof readWriteScope>>;
      scoped = { counts: writer.suspended(() => fillRows(store.db, read.tables)), firstNumber: read.firstNumber, groupCounts: read.groupCounts, vnfsPins: read.vnfsPins };
    } else await replica.load();
  } catch (e) {
    await writer.close().catch(() => undefined);
    store.close();
    await pg.close().catch(() => undefined);
    throw e;
  }
  const events: BootEvent[] = [];
  store.events.subscribe((ev) => events.push(ev));
  const tag = new WriteTag();
  const commit = async () => {
    await writer.settle(tag);
    if (events.length) await pg.appendEvents(events.splice(0));
  };
  return {
    store,
    backend: pg,
    scoped,
    run: (fn) => writer.tagged(tag, fn),
    commit,
    flush: commit,
    refreshNodes: (macs) => replica.refresh(new Map([['nodes', new Set(macs)], ['node_attrs', new Set(macs)]])),
    async close() {
      await writer.close();
      store.close();
      await pg.close();
    },
  };
}
