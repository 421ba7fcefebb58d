/**
 * Stop and start a test/lab/postgres.ts cluster in place (`pg_ctl stop -m fast` / `pg_ctl start`),
 * as an operator restarting the database under running servers does: same data directory, same
 * socket, same settings. `startPostgres` owns the first postmaster; after a restart the
 * postmaster is pg_ctl's, so `stopRestarted()` must run before the lab's own `stop()` (which
 * then only removes the directory). Used by every test that restarts PostgreSQL under clients
 * (pg-feed, pg-reconnect, the pg-storm restart case).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { postgresBinDir, type PostgresLab } from './postgres.js';

function owner(): { uid: number; gid: number } | Record<string, never> {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'nobody'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

export interface PostgresRestarter {
  /** `pg_ctl stop -m fast`: every connection is cut, the server shuts down cleanly. */
  stop(): void;
  /** `pg_ctl start -w` on the same directory and socket with the settings startPostgres used. */
  start(): void;
  /** Stop a postmaster this started (immediate); nothing if none runs. */
  stopRestarted(): void;
}

export function postgresRestarter(pg: PostgresLab, o: { durable?: boolean } = {}): PostgresRestarter {
  const bin = postgresBinDir()!;
  const data = path.join(pg.dir, 'data');
  const as = owner();
  let started = false;
  const ctl = (args: string[]) => execFileSync(path.join(bin, 'pg_ctl'), args, { ...as, cwd: pg.dir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  const settings = ['-k', pg.dir, '-c', 'listen_addresses=', ...(o.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']), '-c', 'max_connections=100', '-c', 'shared_buffers=32MB'];
  return {
    stop: () => void ctl(['stop', '-D', data, '-m', 'fast', '-w']),
    start() {
      ctl(['start', '-D', data, '-w', '-l', path.join(pg.dir, 'server.log'), '-o', settings.map((s) => (s.includes('=') && s.endsWith('=') ? `${s}''` : s)).join(' ')]);
      started = true;
    },
    stopRestarted() {
      if (!started) return;
      started = false;
      try {
        ctl(['stop', '-D', data, '-m', 'immediate', '-w']);
      } catch {
        /* not running */
      }
    },
  };
}
