/**
 * The fixture of the pg-cli-* tests: the same data on SQLite (a state directory the CLI runs on)
 * and on a real private PostgreSQL (a `db copy` of it, in-process), so one command line can run
 * on each backend and the outputs be compared byte for byte.
 */
import fs from 'node:fs';
import path from 'node:path';
import { makeStateDir, type StateDir } from './cli.js';
import { startPostgres, type PostgresLab } from '../lab/postgres.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { copySqliteToPostgres } from '../../src/store/copy.js';
import { Store } from '../../src/store/store.js';

export interface PgCliFixture {
  pg: PostgresLab;
  lite: StateDir;
  /** The PostgreSQL copy of lite's database. */
  url: string;
  /** Remove the state directory and stop PostgreSQL (safe after a failed start). */
  stop(): Promise<void>;
}

/** A new database on `pg` holding a verified copy of the SQLite database in `statedir`. */
export async function copyToPostgres(pg: PostgresLab, name: string, statedir: string): Promise<string> {
  const url = await pg.createDatabase(name);
  const sql = connectPostgres(url, { max: 1 });
  try {
    await migratePostgres(sql);
    await copySqliteToPostgres(path.join(statedir, 'pxeherd.db'), sql);
  } finally {
    await sql.end();
  }
  return url;
}

/**
 * Start PostgreSQL, make a state directory with `yaml`, write its data in-process (`fill`, on the
 * open store: a CLI process per node costs seconds on a busy machine), run `then` on the closed
 * one (CLI commands, raw SQL), and copy it into database `name`.
 */
export async function pgCliFixture(o: {
  name: string;
  yaml: string;
  serverId: string;
  fill: (store: Store, lite: StateDir) => void;
  then?: (lite: StateDir) => void;
}): Promise<PgCliFixture> {
  const pg = await startPostgres();
  const lite = makeStateDir(o.yaml);
  const stop = async () => {
    lite.cleanup();
    await pg.stop();
  };
  try {
    const store = Store.open(lite.statedir, { serverId: o.serverId });
    try {
      o.fill(store, lite);
    } finally {
      store.close();
    }
    o.then?.(lite);
    return { pg, lite, url: await copyToPostgres(pg, o.name, lite.statedir), stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * A configuration for the PostgreSQL side: lite's, with a state directory of its own (a copy of
 * lite's, image files included), so a command writing files next to its database does so on each
 * side. Returns its path.
 */
export function pgSideConfig(lite: StateDir): string {
  const pgState = path.join(lite.dir, 'pgvar');
  fs.cpSync(lite.statedir, pgState, { recursive: true });
  const config = path.join(lite.dir, 'pg.yaml');
  fs.writeFileSync(config, fs.readFileSync(lite.config, 'utf8').replace(`statedir: ${lite.statedir}\n`, `statedir: ${pgState}\n`));
  return config;
}
