/**
 * N nodes report a provision state at once to one `pxeherd serve` (loopback, no DHCP), on SQLite
 * or on a private PostgreSQL (test/lab/postgres.ts): answered requests, time until PostgreSQL has
 * every report (write-through, src/store/pg/writer.ts) and the server's CPU per report.
 *   npm run build && node --import tsx bench/pg-reports.ts lite|pg [N]
 */
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import http from 'node:http';
import { spawn, spawnSync } from 'node:child_process';
import { startPostgres } from '../test/lab/postgres.js';
import { connectPostgres } from '../src/store/pg/connect.js';
import { migratePostgres } from '../src/store/pg/schema.js';
const CLI = path.resolve('dist/cli.js');
const N = Number(process.argv[3] ?? 1000);
const usePg = process.argv[2] === 'pg';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pxeherd-pgreports-'));
const pg = usePg ? await startPostgres() : undefined;
const url = pg ? await pg.createDatabase('storm') : '';
const sql = pg ? connectPostgres(url, { max: 2 }) : undefined;
if (sql) await migratePostgres(sql);
const port = await new Promise<number>((r) => { const s = net.createServer().listen(0, () => { const p = (s.address() as net.AddressInfo).port; s.close(() => r(p)); }); });
const macs = Array.from({ length: N }, (_, i) => `52:54:00:99:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`);
fs.writeFileSync(path.join(dir, 'n.csv'), 'mac,name\n' + macs.map((m, i) => `${m},s${String(i).padStart(4, '0')}`).join('\n') + '\n');
const env = { ...process.env }; delete env.PXEHERD_DATABASE;
const cfg = path.join(dir, 'a.yaml');
fs.writeFileSync(cfg, `statedir: ${dir}/a\n${usePg ? `database: "${url}"\nserver_id: a\n` : ''}address: 127.0.0.1\ndhcp: { mode: off }\ntftp: { port: 0 }\nhttp: { port: ${port} }\nprovisiond: { port: 0 }\nadmin: { port: 0 }\nsecurity: { node_tokens: false }\nlog: { level: warn }\n`);
const imp = spawnSync(process.execPath, [CLI, 'node', 'import', path.join(dir, 'n.csv'), '--config', cfg], { env, encoding: 'utf8' });
if (imp.status !== 0) throw new Error(imp.stderr);
const log = fs.openSync(path.join(dir, 'a.log'), 'a');
const p = spawn(process.execPath, [CLI, 'serve', '--config', cfg], { env, stdio: ['ignore', log, log] });
for (;;) { try { await fetch(`http://127.0.0.1:${port}/`); break; } catch { await new Promise((r) => setTimeout(r, 100)); } }
await new Promise((r) => setTimeout(r, 500));
const cpu = () => { const f = fs.readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(' '); return (Number(f[13]) + Number(f[14])) * 10; };
const c0 = cpu();
const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
const t = Date.now();
const codes = await Promise.all(macs.map((m) => new Promise<number>((res) => http.get(`http://127.0.0.1:${port}/provision/ready?nodeid=${m}`, { agent }, (r) => { r.resume(); r.on('end', () => res(r.statusCode!)); }).on('error', () => res(-1)))));
const answered = Date.now() - t;
let inPg = -1;
if (sql) { for (;;) { const [r] = await sql`SELECT count(*)::int AS n FROM nodes WHERE state = 'ready'`; if (r!.n >= N) break; await new Promise((r) => setTimeout(r, 20)); } inPg = Date.now() - t; }
await new Promise((r) => setTimeout(r, 1000)); // the replica following its own writes back counts too
const used = cpu() - c0;
console.log(`${usePg ? 'PostgreSQL' : 'SQLite'}: ${codes.filter((c) => c === 200).length}/${N} answered in ${answered} ms${sql ? `, all ready in PostgreSQL after ${inPg} ms` : ''}; server CPU ${used} ms = ${(used / N).toFixed(2)} ms per report`);
p.kill('SIGTERM'); await new Promise((r) => p.on('exit', r)); agent.destroy();
await sql?.end(); await pg?.stop(); fs.rmSync(dir, { recursive: true, force: true });
