/**
 * Restart a test PostgreSQL (test/lab/postgres.ts) in place: a fast shutdown (every client
 * disconnected), then the same cluster started again on the same socket. For tests of what
 * clients do across a database restart. The restarted server is not the lab's `process`: stop
 * it with the returned `stop()` before the lab's own `stop()` (which then only removes the
 * directory).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { postgresBinDir, type PostgresLab } from './postgres.js';

export interface RestartedPostgres {
  process: ChildProcess;
  stop(): Promise<void>;
}

function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  const gone = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGINT');
  const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
  return gone.finally(() => clearTimeout(t));
}

/** Stop the cluster (the lab's process, or the one a previous restart started). */
export async function stopPostgres(pg: PostgresLab, current?: RestartedPostgres): Promise<void> {
  await stopProcess(current?.process ?? pg.process);
}

/** Start the stopped cluster again and wait until it accepts connections. */
export async function startPostgresAgain(pg: PostgresLab): Promise<RestartedPostgres> {
  const bin = postgresBinDir()!;
  const st = fs.statSync(path.join(pg.dir, 'data'));
  const asOwner = process.getuid?.() === 0 ? { uid: st.uid, gid: st.gid } : {};
  const fd = fs.openSync(path.join(pg.dir, 'server.log'), 'a');
  const proc = spawn(
    path.join(bin, 'postgres'),
    ['-D', path.join(pg.dir, 'data'), '-k', pg.dir, '-c', 'listen_addresses=', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=100', '-c', 'shared_buffers=32MB'],
    { ...asOwner, cwd: pg.dir, stdio: ['ignore', fd, fd] },
  );
  fs.closeSync(fd);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`postgres exited at restart:\n${pg.log().slice(-2000)}`);
    try {
      execFileSync(path.join(bin, 'pg_isready'), ['-q', '-h', pg.dir, '-U', pg.user, '-d', 'postgres'], { stdio: 'ignore' });
      break;
    } catch {
      /* still starting */
    }
    if (Date.now() > deadline) throw new Error(`postgres did not get ready again in 30 s:\n${pg.log().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { process: proc, stop: () => stopProcess(proc) };
}
