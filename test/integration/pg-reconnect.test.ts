/**
 * A pxeherd connection pool across a PostgreSQL restart (issue 19): 16 workers run transactions
 * on a pool of 8 connections with a LISTEN, `pg_ctl stop -m fast` cuts them all mid-transaction,
 * `pg_ctl start`. postgres.js 3.4.10 wedges some of those connections for good (a ROLLBACK
 * written from a timer on the closed socket, porsager/postgres#1208: every later connect on it
 * hangs until CONNECT_TIMEOUT); src/store/pg/connect.ts replaces such a pool. Checked on what the
 * client sees: afterwards 8 queries at once are answered by 8 distinct connections, and a NOTIFY
 * reaches the LISTEN again. The pool runs in a child process (test/lab/postgres-pool-client.ts):
 * the library's throw is an uncaught exception there, which node:test would blame on this test.
 * No timing is asserted; the child gives up after 120 s.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import readline from 'node:readline';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { postgresRestarter, type PostgresRestarter } from '../lab/postgres-pgctl.js';
import { isConnectionError } from '../../src/server/pg-serve.js';

const why = postgresUnavailable();
const CLIENT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'lab', 'postgres-pool-client.ts');

let pg: PostgresLab;
let restarter: PostgresRestarter;

before(async () => {
  if (why) return;
  pg = await startPostgres({ database: 'reconnect' });
  restarter = postgresRestarter(pg);
});

after(async () => {
  if (why) return;
  restarter.stopRestarted();
  await pg.stop();
});

test('PostgreSQL restarted under a loaded pool: every connection and the LISTEN come back', { skip: why, timeout: 180_000 }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', CLIENT, pg.url('reconnect')], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const lines = readline.createInterface({ input: child.stdout });
  const messages: Record<string, unknown>[] = [];
  const next = () =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const onLine = (l: string) => {
        lines.off('line', onLine);
        resolve(JSON.parse(l) as Record<string, unknown>);
      };
      lines.on('line', onLine);
      void exited.then((code) => reject(new Error(`the pool client exited (${code}) early:\n${stderr.slice(-2000)}`)));
    });
  try {
    const loaded = await next();
    messages.push(loaded);
    assert.ok(typeof loaded.loaded === 'number', JSON.stringify(loaded));
    restarter.stop();
    restarter.start();
    child.stdin.write('restarted\n');
    const done = await next();
    messages.push(done);
    process.stderr.write(`# pg-reconnect: ${JSON.stringify(done)}\n`);
    assert.ok(done.done, `the pool recovered: ${JSON.stringify(done)}\n${stderr.slice(-2000)}`);
    const d = done.done as { connections: number; listens: number; workersDone: boolean };
    assert.equal(d.connections, 8, 'eight queries at once, eight distinct connections');
    assert.ok(d.listens >= 2, 'LISTEN was established again after the restart');
    assert.equal(d.workersDone, true, 'every transaction in flight at the restart ended (none hangs once the pool answers again)');
    assert.equal(await exited, 0, stderr.slice(-2000));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('a lost connection is told from a refusal: EPIPE is not a SQLSTATE', () => {
  const err = (message: string, o: Record<string, string>) => Object.assign(new Error(message), o);
  assert.equal(isConnectionError(err('write EPIPE', { code: 'EPIPE' })), true, 'held, not dropped');
  assert.equal(isConnectionError(err('write CONNECTION_CLOSED', { code: 'CONNECTION_CLOSED' })), true);
  assert.equal(isConnectionError(err('terminating connection due to administrator command', { name: 'PostgresError', code: '57P01' })), true);
  assert.equal(isConnectionError(err('duplicate key value violates unique constraint', { name: 'PostgresError', code: '23505' })), false);
});
