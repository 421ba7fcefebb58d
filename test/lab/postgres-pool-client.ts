/**
 * A pxeherd connection pool (src/store/pg/connect.ts) under load, in a process of its own, for
 * test/integration/pg-reconnect.test.ts: postgres.js throws from a timer when PostgreSQL goes away
 * (porsager/postgres#1208), which node:test would charge to whatever test is running; here it is
 * what connect.ts handles, as in `pxeherd serve`.
 *
 *   node --import tsx test/lab/postgres-pool-client.ts URL
 *
 * Creates table pool_load, then transactions (insert + pg_notify) from 16 workers on a pool of 8,
 * LISTENing on pool_load, while a round of one query every 250 ms watches the pool as the
 * replica's round does in `serve` (src/store/pg/replica.ts): a failed round applies the watchdog's
 * rule (renewIfWedged), the first round through after failures retires every connection from
 * before (renewAfterOutage). Prints JSON lines on stdout: {"loaded":n} once 200 committed; after
 * a line "restarted" on stdin, checks of 8 concurrent queries until one is answered by 8 distinct
 * connections, then until a NOTIFY sent from another connection arrives, then {"done":{...}} and
 * exits 0. Gives up (exit 1, {"error":...}) after 120 s.
 */
import readline from 'node:readline';
import { connectPostgres, deadSocketWritesCaught, onPoolRenewed, poolRenewals, renewAfterOutage, renewIfWedged, withPoolTimeout } from '../../src/store/pg/connect.js';

const url = process.argv[2];
if (!url) {
  process.stderr.write('usage: postgres-pool-client.ts URL\n');
  process.exit(2);
}
const out = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Where the client is (said in the give-up line: which step never finished). */
let phase = 'loading';
/** The last error of a check (the give-up line says it). */
let lastError = '';
/** Checks answered by fewer than 8 connections, and how many the last one was answered by. */
let shortChecks = 0;
let pids = 0;
setTimeout(() => {
  out({ error: `gave up after 120 s while ${phase}`, lastError, shortChecks, pids, outages, renewedFor, caught: deadSocketWritesCaught(), renewals: poolRenewals(sql) });
  process.exit(1);
}, 120_000).unref();

const sql = connectPostgres(url, { max: 8, applicationName: 'pool-client' });
/** Why the pool was replaced, each time (the first words of connect.ts' reasons). */
const renewedFor: string[] = [];
onPoolRenewed(sql, (why) => renewedFor.push(why.split(/[(:]/)[0]!.trim()));
await sql`CREATE TABLE IF NOT EXISTS pool_load (id bigserial PRIMARY KEY, at bigint NOT NULL)`;
const notified: string[] = [];
let listens = 0;
await sql.listen('pool_load', (m) => notified.push(m), () => listens++);

// The replica's round (`serve`): what notices the outage and retires the connections it left.
let outages = 0;
let downSince = 0;
void (async () => {
  for (;;) {
    try {
      await withPoolTimeout(sql`SELECT 1`);
      if (downSince) {
        outages++;
        renewAfterOutage(sql, 5, downSince);
        downSince = 0;
      }
    } catch (e) {
      renewIfWedged(sql, e as Error, 'the pool client');
      downSince ||= Date.now();
    }
    await sleep(250);
  }
})();

let stop = false;
let committed = 0;
let failed = 0;
async function worker(): Promise<void> {
  while (!stop) {
    try {
      await sql.begin(async (tx) => {
        await tx`INSERT INTO pool_load (at) VALUES (${Date.now()})`;
        await tx`SELECT pg_notify('pool_load', 'load')`;
      });
      committed++;
    } catch {
      failed++;
      await sleep(20);
    }
  }
}
const workers = Array.from({ length: 16 }, worker);
while (committed < 200) await sleep(20);
out({ loaded: committed });

await new Promise<void>((resolve) => {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (l) => {
    if (l.trim() === 'restarted') {
      rl.close();
      resolve();
    }
  });
});
const sinceRestart = committed;
phase = 'stopping the workers';
stop = true;
// A worker's transaction can hang on a connection the restart wedged (no error, no answer):
// repairing that is the rounds' job below (the watchdog), so they must not wait for every
// worker first. Seen in CI: all 120 s spent here, caught 0, renewals 0.
let workersDone = false;
const allWorkers = Promise.all(workers).then(() => (workersDone = true));
await Promise.race([allWorkers, sleep(2000)]);

// Every connection of the pool answers: 8 queries at once each hold one connection (pg_sleep).
let rounds = 0;
for (;;) {
  rounds++;
  phase = `check ${rounds} of 8 queries at once`;
  try {
    const r = await withPoolTimeout(Promise.all(Array.from({ length: 8 }, () => sql`SELECT pg_backend_pid() AS pid, pg_sleep(0.2)`)));
    pids = new Set(r.map((x) => x[0]!.pid)).size;
    if (pids === 8) break;
    shortChecks++;
  } catch (e) {
    // A connection still down or wedged: the next check (the watchdog round repairs the pool).
    lastError = `${(e as { code?: string }).code ?? ''} ${(e as Error).message}`.trim();
  }
  await sleep(250);
}
// LISTEN is back: a NOTIFY from another connection arrives.
phase = 'waiting for a NOTIFY on the LISTEN';
const other = connectPostgres(url, { max: 1, applicationName: 'pool-client notify' });
const marker = `after-restart-${process.pid}`;
while (!notified.includes(marker)) {
  await other`SELECT pg_notify('pool_load', ${marker})`.catch(() => undefined);
  await sleep(250);
}
await other.end({ timeout: 1 });
// Every worker ends once the pool answers again (a hung transaction fails when its pool is replaced).
await Promise.race([allWorkers, sleep(10_000)]);
out({ done: { committedBeforeCheck: sinceRestart, failedDuringRestart: failed, rounds, shortChecks, outages, connections: pids, listens, workersDone, renewedFor, caught: deadSocketWritesCaught(), renewals: poolRenewals(sql) } });
await sql.end({ timeout: 1 });
process.exit(0);
