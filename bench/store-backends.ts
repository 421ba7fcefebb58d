/**
 * The StoreBackend operations on SQLite and on a real PostgreSQL (test/lab/postgres.ts: local
 * unix socket, fsync off), in the same run: registrations, lease allocations and event
 * appends per second, one caller at a time and 32 at once (PostgreSQL: split over two
 * servers' pools). Figures, not pass/fail.
 *
 *   node --import tsx bench/store-backends.ts [--nodes 1000] [--json]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Store } from '../src/store/store.js';
import { SqliteBackend } from '../src/store/sqlite-backend.js';
import { PostgresBackend } from '../src/store/pg/backend.js';
import { connectPostgres } from '../src/store/pg/connect.js';
import { migratePostgres } from '../src/store/pg/schema.js';
import type { StoreBackend } from '../src/store/backend.js';
import { startPostgres } from '../test/lab/postgres.js';

const args = process.argv.slice(2);
const N = Number(args[args.indexOf('--nodes') + 1] ?? 1000) || 1000;
const asJson = args.includes('--json');
const policy = { pattern: 'n#####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };
const mac = (i: number) => `52:54:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const ip = (i: number) => `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;

async function run(label: string, servers: StoreBackend[], parallel: number) {
  const out: Record<string, number> = {};
  const timed = async (name: string, n: number, op: (i: number) => Promise<unknown>) => {
    let next = 0;
    const t = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: parallel }, async (_, w) => {
        for (let i = next++; i < n; i = next++) await op(i).then(() => undefined, (e) => { throw new Error(`${name} ${i} via worker ${w}: ${e}`); });
      }),
    );
    out[name] = Math.round(n / (Number(process.hrtime.bigint() - t) / 1e9));
  };
  const s = (i: number) => servers[i % servers.length]!;
  const base = parallel * 1_000_000;
  await timed('register/s', N, (i) => s(i).registerNode(mac(base + i), policy));
  await timed('allocate/s', N, (i) => s(i).allocateLease({ mac: mac(base + i), ip: ip(i + parallel * 4096), expiresAt: Date.now() + 3_600_000 }));
  await timed('events(50)/s', Math.ceil(N / 50), (i) => s(i).appendEvents(Array.from({ length: 50 }, (_, k) => ({ kind: 'bench', detail: { i, k } }))));
  out['events(50)/s'] = out['events(50)/s']! * 50;
  return { label, parallel, ...out };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-bench-store-'));
const pg = await startPostgres({ database: 'bench' });
const results = [];
try {
  const url = pg.url('bench');
  const sql = connectPostgres(url, { max: 1 });
  await migratePostgres(sql);
  await sql.end();
  const lite = new SqliteBackend(Store.open(dir, { serverId: 'bench' }));
  const pa = PostgresBackend.connect(url, 'bench-a', { max: 16 });
  const pb = PostgresBackend.connect(url, 'bench-b', { max: 16 });
  for (const parallel of [1, 32]) {
    results.push(await run('sqlite', [lite], parallel));
    results.push(await run('postgres', parallel === 1 ? [pa] : [pa, pb], parallel));
  }
  await lite.close();
  await pa.close();
  await pb.close();
} finally {
  await pg.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
if (asJson) console.log(JSON.stringify({ nodes: N, cpus: os.cpus().length, load: os.loadavg()[0], results }, null, 2));
else {
  console.log(`store backends, ${N} nodes, ${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}`);
  for (const r of results) console.log(`${r.label.padEnd(9)} callers ${String(r.parallel).padStart(2)}  ` + Object.entries(r).filter(([k]) => k.includes('/s')).map(([k, v]) => `${k} ${v}`).join('  '));
}
