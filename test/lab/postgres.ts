/**
 * A real PostgreSQL for a test: `initdb` in a fresh temporary directory, the server listening on
 * a unix socket in that directory only (no TCP), stopped and removed by `stop()`. PostgreSQL
 * refuses to run as root, so under root the cluster belongs to `nobody` (the server process runs
 * with that uid); otherwise it runs as the current user. Binaries come from Debian's
 * `postgresql` package (/usr/lib/postgresql/<major>/bin) or $PXEHERD_PG_BIN.
 *
 *   const skip = postgresUnavailable();
 *   test('...', { skip }, async () => { const pg = await startPostgres(); try { ... } finally { await pg.stop(); } });
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The folder holding initdb and postgres, newest major first; undefined when not installed. */
export function postgresBinDir(): string | undefined {
  const candidates: string[] = [];
  if (process.env.PXEHERD_PG_BIN) candidates.push(process.env.PXEHERD_PG_BIN);
  const base = '/usr/lib/postgresql';
  if (fs.existsSync(base)) {
    const majors = fs.readdirSync(base).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
    for (const m of majors) candidates.push(path.join(base, m, 'bin'));
  }
  return candidates.find((d) => fs.existsSync(path.join(d, 'initdb')) && fs.existsSync(path.join(d, 'postgres')));
}

/** Why a PostgreSQL cannot be started here (a reason for `skip`), or undefined when it can. */
export function postgresUnavailable(): string | undefined {
  if (!postgresBinDir()) return 'PostgreSQL binaries not found (install Debian package postgresql, or set PXEHERD_PG_BIN to the folder holding initdb and postgres)';
  if (process.getuid?.() === 0 && !runAsUser()) return 'running as root and no user "nobody" to own the PostgreSQL cluster';
  return undefined;
}

/** Under root: the unprivileged uid/gid that owns the cluster. */
function runAsUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

export interface PostgresLab {
  /** The temporary directory: data/ and the socket live here. */
  dir: string;
  /** Where the unix socket is (a libpq `host=` directory). */
  socketDir: string;
  /** Superuser name of the cluster. */
  user: string;
  /** libpq-style URL of database `db` (default: the database made for this lab). */
  url(db?: string): string;
  /** With `tcpPort`: where it listens on loopback (127.0.0.1:PORT), for URLs over TCP (multi-host). */
  tcp?: { host: string; port: number };
  /** Run SQL through psql-free means: a fresh database for one test. */
  createDatabase(name: string): Promise<string>;
  /** The server's log so far (for failure messages). */
  log(): string;
  /** Stop the server (fast shutdown) and remove the directory. Safe to call twice. */
  stop(): Promise<void>;
  process: ChildProcess;
}

const USER = 'pxeherd';

/**
 * `durable`: fsync and synchronous commit on, as a production server runs (benchmarks compare
 * servers on it); by default they are off, since a test cluster is thrown away.
 */
export async function startPostgres(opts: { database?: string; durable?: boolean; tcpPort?: number } = {}): Promise<PostgresLab> {
  const reason = postgresUnavailable();
  if (reason) throw new Error(reason);
  const bin = postgresBinDir()!;
  const owner = runAsUser();
  // The cluster's owner must reach its directory: a TMPDIR only root can enter does not do.
  const tmp = owner && (fs.statSync(os.tmpdir()).mode & 0o001) === 0 ? '/tmp' : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(tmp, `pxeherd-pg-${process.pid}-`));
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  if (owner) fs.chownSync(dir, owner.uid, owner.gid);
  const asOwner = owner ? { uid: owner.uid, gid: owner.gid } : {};
  let child: ChildProcess | undefined;
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    // --no-sync and fsync=off: a test cluster is thrown away, durability costs only time here.
    execFileSync(path.join(bin, 'initdb'), ['-D', data, '-U', USER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'], {
      ...asOwner,
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const fd = fs.openSync(logFile, 'a');
    if (owner) fs.fchownSync(fd, owner.uid, owner.gid);
    child = spawn(
      path.join(bin, 'postgres'),
      // tcpPort: loopback only (and the socket is named after that port, .s.PGSQL.PORT).
      ['-D', data, '-k', dir, '-c', `listen_addresses=${opts.tcpPort ? '127.0.0.1' : ''}`, ...(opts.tcpPort ? ['-p', String(opts.tcpPort)] : []), ...(opts.durable ? [] : ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off']), '-c', 'max_connections=100', '-c', 'shared_buffers=32MB'],
      { ...asOwner, cwd: dir, stdio: ['ignore', fd, fd] },
    );
    fs.closeSync(fd);
    const proc = child;
    let exited = false;
    proc.on('exit', () => (exited = true));
    const pgPort = opts.tcpPort ?? 5432;
    const sock = path.join(dir, `.s.PGSQL.${pgPort}`);
    const deadline = Date.now() + 30_000;
    // Ready when the socket exists and the postmaster accepts connections (pg_isready).
    for (;;) {
      if (exited) throw new Error(`postgres exited at start:\n${fs.readFileSync(logFile, 'utf8')}`);
      if (fs.existsSync(sock)) {
        try {
          execFileSync(path.join(bin, 'pg_isready'), ['-q', '-h', dir, '-p', String(pgPort), '-U', USER, '-d', 'postgres'], { stdio: 'ignore' });
          break;
        } catch {
          /* still starting */
        }
      }
      if (Date.now() > deadline) throw new Error(`postgres did not get ready in 30 s:\n${fs.readFileSync(logFile, 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const hostPort = opts.tcpPort ? `localhost:${opts.tcpPort}` : 'localhost';
    const url = (db = 'postgres') => `postgres://${USER}@${hostPort}/${encodeURIComponent(db)}?host=${encodeURIComponent(dir)}`;
    let stopped = false;
    const lab: PostgresLab = {
      dir,
      socketDir: dir,
      user: USER,
      process: proc,
      tcp: opts.tcpPort ? { host: '127.0.0.1', port: opts.tcpPort } : undefined,
      url: (db) => url(db ?? opts.database ?? 'postgres'),
      async createDatabase(name) {
        if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`database name ${name}: use [a-z0-9_]`);
        execFileSync(path.join(bin, 'createdb'), ['-h', dir, '-p', String(pgPort), '-U', USER, name], { stdio: ['ignore', 'pipe', 'pipe'] });
        return url(name);
      },
      log: () => fs.readFileSync(logFile, 'utf8'),
      async stop() {
        if (stopped) return;
        stopped = true;
        if (!exited) {
          const gone = new Promise<void>((r) => proc.once('exit', () => r()));
          proc.kill('SIGINT'); // fast shutdown: disconnects clients, no waiting for them
          const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
          await gone;
          clearTimeout(t);
        }
        cleanup();
      },
    };
    if (opts.database) await lab.createDatabase(opts.database);
    return lab;
  } catch (e) {
    child?.kill('SIGKILL');
    cleanup();
    throw e;
  }
}
