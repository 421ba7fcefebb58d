/**
 * The live event feed across servers on one PostgreSQL (issue 19): two `pxeherd serve`
 * processes (DHCP off, HTTP and admin on loopback) on a private PostgreSQL, a real SSE client
 * (fetch streaming, as a browser's EventSource reads it) on server A's API.
 * - an event recorded on B (its boot script asked for) reaches A's stream, marked server b, with
 *   its database id; A's timeline for the node (API and UI page) shows it;
 * - a client that disconnects and reconnects with Last-Event-ID gets every event it missed from
 *   both servers, once, in id order, then the live ones;
 * - PostgreSQL stopped and started again: B holds its events meanwhile, and A's stream (still
 *   open) delivers them once the database is back, each once.
 * Needs no root: no namespace, DHCP off. PGFEED_KEEP=1 keeps the logs in the temporary directory.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { tmpDir, waitFor } from '../lab/lab.js';
import { postgresUnavailable, startPostgres, type PostgresLab } from '../lab/postgres.js';
import { postgresRestarter, type PostgresRestarter } from '../lab/postgres-pgctl.js';
import { CLI } from '../../bench/storm-lab.js';
import { connectPostgres } from '../../src/store/pg/connect.js';
import { migratePostgres } from '../../src/store/pg/schema.js';
import { freePort } from '../lab/procs.js';

const why = postgresUnavailable() ?? (fs.existsSync(CLI) ? undefined : `needs ${CLI} (npm run build)`);

let pg: PostgresLab;
let restarter: PostgresRestarter | undefined;
let dir = '';
const procs: ChildProcess[] = [];

before(async () => {
  if (why) return;
  dir = tmpDir('phpgfeed-');
  pg = await startPostgres();
});

after(async () => {
  if (why) return;
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  restarter?.stopRestarted();
  await pg?.stop();
  if (dir && !process.env.PGFEED_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

interface Server {
  id: string;
  http: string;
  admin: string;
  token: string;
  log: string;
}

async function serve(id: string, url: string): Promise<Server & { proc: ChildProcess }> {
  const statedir = path.join(dir, id);
  const config = path.join(dir, `${id}.yaml`);
  const [httpPort, adminPort] = [await freePort(), await freePort()];
  fs.writeFileSync(
    config,
    `statedir: ${statedir}
database: "${url}"
server_id: ${id}
address: 127.0.0.1
dhcp: { mode: off, ipv6_ra: false }
tftp: { port: 0 }
http: { port: ${httpPort}, listen: 127.0.0.1 }
provisiond: { port: 0 }
admin: { port: ${adminPort}, listen: 127.0.0.1 }
log: { level: info }
`,
  );
  const log = path.join(dir, `${id}.log`);
  const from = fs.existsSync(log) ? fs.statSync(log).size : 0; // a restart appends to the same log
  const fd = fs.openSync(log, 'a');
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  procs.push(proc);
  await waitFor(`${id} to serve its admin API`, 30_000, () => {
    const text = fs.readFileSync(log, 'utf8').slice(from);
    if (proc.exitCode !== null) throw new Error(`pxeherd serve ${id} exited (${proc.exitCode}): ${text.slice(-2000)}`);
    return /web UI and API:/.test(text);
  });
  return { id, proc, http: `http://127.0.0.1:${httpPort}`, admin: `http://127.0.0.1:${adminPort}`, token: fs.readFileSync(path.join(statedir, 'admin.token'), 'utf8').trim(), log };
}

interface Frame {
  id?: number;
  event?: string;
  data: { id: number; kind: string; mac: string | null; node: string | null; server?: string; detail: Record<string, unknown> };
}

/** A real SSE client: fetch streaming, frames parsed as EventSource parses them. */
class SseClient {
  frames: Frame[] = [];
  private abort = new AbortController();
  private done: Promise<void>;
  status = 0;
  error?: Error;

  constructor(url: string, token: string, lastEventId?: number) {
    const headers: Record<string, string> = { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' };
    if (lastEventId !== undefined) headers['Last-Event-ID'] = String(lastEventId);
    this.done = (async () => {
      const res = await fetch(url, { headers, signal: this.abort.signal });
      this.status = res.status;
      const dec = new TextDecoder();
      let buf = '';
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true });
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const f: Partial<Frame> & { raw?: string } = {};
            for (const line of block.split('\n')) {
              const m = /^([a-z]+): ?(.*)$/i.exec(line);
              if (!m) continue;
              if (m[1] === 'id') f.id = Number(m[2]);
              else if (m[1] === 'event') f.event = m[2];
              else if (m[1] === 'data') f.data = JSON.parse(m[2]!);
            }
            if (f.data) this.frames.push(f as Frame);
          }
        }
      } catch (e) {
        if ((e as Error).name !== 'AbortError') throw e;
      }
    })().catch((e: Error) => {
      if (e.name !== 'AbortError') this.error = e; // the server went away: the test's waits say what was missing
    });
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }

  ids(): number[] {
    return this.frames.map((f) => f.id!);
  }
}

/** Ask server `s` for node MAC's boot script: `s` records an http.* event for it (http.error: the node has no VNFS). */
async function bootScript(s: Server, mac: string): Promise<void> {
  const r = await fetch(`${s.http}/boot/${mac}.ipxe`);
  await r.arrayBuffer();
}

const MAC = '52:54:00:fe:ed:01';

test('events from every server on one PostgreSQL: live across servers, Last-Event-ID resumes exactly once, the feed survives a PostgreSQL restart', { skip: why, timeout: 120_000 }, async () => {
  const url = await pg.createDatabase('feed2');
  const sql = connectPostgres(url, { max: 2 });
  try {
    await migratePostgres(sql);
    const now = Date.now();
    await sql`INSERT INTO nodes (mac, name, created_at, updated_at) VALUES (${MAC}, 'feed01', ${now}, ${now})`;
    let a = await serve('a', url);
    const b = await serve('b', url);
    const stream = `${a.admin}/api/v1/events/stream?mac=${MAC}`;

    // 1. An event on B reaches A's live stream, with B's server id and the database's id.
    const live = new SseClient(stream, a.token);
    await waitFor("A's stream to open", 10_000, () => live.status === 200);
    await bootScript(b, MAC);
    const fromB = await waitFor('B\'s event on A\'s stream', 20_000, () => live.frames.find((f) => f.data.server === 'b'));
    assert.match(fromB.data.kind, /^http\./);
    assert.equal(fromB.data.node, 'feed01');
    const [row] = await sql<{ id: number; server_id: string }[]>`SELECT id, server_id FROM events WHERE mac = ${MAC} AND kind LIKE 'http.%' ORDER BY id DESC LIMIT 1`;
    assert.equal(fromB.id, Number(row!.id), 'the frame carries the database id');
    assert.equal(fromB.data.id, Number(row!.id));

    // 2. A's timeline of the node (API and UI page) holds B's event, marked with its server.
    await bootScript(a, MAC);
    await waitFor("A's own event on its stream", 20_000, () => live.frames.some((f) => f.data.server === 'a'));
    const tl = (await (await fetch(`${a.admin}/api/v1/events?mac=${MAC}`, { headers: { Authorization: `Bearer ${a.token}` } })).json()) as { events: { id: number; server?: string; kind: string }[] };
    assert.deepEqual(tl.events.map((e) => e.server).sort(), ['a', 'b'], `A's timeline for ${MAC} has both servers' events: ${JSON.stringify(tl.events)}`);
    const page = await (await fetch(`${a.admin}/ui/nodes/feed01`, { headers: { Authorization: `Bearer ${a.token}` } })).text();
    assert.match(page, /<small class="server">b<\/small>/, "the UI's node page marks B's event");
    assert.match(page, /<small class="server">a<\/small>/);
    // ...and so does the CLI's `node timeline` (read from PostgreSQL), and its --follow.
    const cli = execFileSync(process.execPath, [CLI, 'node', 'timeline', 'feed01', '--json', '--config', path.join(dir, 'a.yaml')], { encoding: 'utf8' });
    const rows = (JSON.parse(cli) as { boots: { rows: { server?: string }[] }[] }).boots.flatMap((x) => x.rows);
    assert.deepEqual([...new Set(rows.map((r) => r.server))].sort(), ['a', 'b'], `node timeline shows both servers' events: ${cli}`);
    const follow = spawn(process.execPath, [CLI, 'node', 'timeline', 'feed01', '--follow', '--config', path.join(dir, 'a.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(follow);
    let followed = '';
    follow.stdout!.on('data', (d: Buffer) => (followed += d.toString()));
    follow.stderr!.on('data', (d: Buffer) => (followed += d.toString()));
    await waitFor('node timeline --follow to start', 20_000, () => /following feed01/.test(followed));
    await bootScript(b, MAC);
    await waitFor("B's new event on node timeline --follow", 20_000, () => /feed01 \[b\]\s+[! ] http\./.test(followed.split('following feed01')[1] ?? ''));
    follow.kill('SIGTERM');
    await new Promise((r) => follow.once('exit', r));
    assert.equal(follow.exitCode, 0, followed);
    const seen = live.ids();
    assert.deepEqual(seen, [...seen].sort((x, y) => x - y), 'the stream is in database id order');
    await live.close();

    // 3. Disconnected: events on both servers meanwhile; a reconnect with Last-Event-ID gets
    // exactly the missed ones, in id order, then live ones.
    const lastSeen = seen[seen.length - 1]!;
    for (let i = 0; i < 3; i++) await bootScript(b, MAC);
    for (let i = 0; i < 2; i++) await bootScript(a, MAC);
    await waitFor('the 5 missed events in PostgreSQL', 20_000, async () => Number((await sql`SELECT count(*)::int AS n FROM events WHERE mac = ${MAC} AND id > ${lastSeen}`)[0]!.n) >= 5);
    const missed = (await sql<{ id: number }[]>`SELECT id FROM events WHERE mac = ${MAC} AND id > ${lastSeen} ORDER BY id`).map((r) => Number(r.id));
    // A's mirror must hold them before the reconnect is a fair test of the resume (not of the live feed).
    await waitFor("A's feed to have read them", 20_000, async () => {
      const r = (await (await fetch(`${a.admin}/api/v1/events?mac=${MAC}&limit=1`, { headers: { Authorization: `Bearer ${a.token}` } })).json()) as { events: { id: number }[] };
      return r.events[0]?.id === missed[missed.length - 1];
    });
    const resumed = new SseClient(stream, a.token, lastSeen);
    await waitFor('the missed events on the resumed stream', 20_000, () => resumed.frames.length >= missed.length);
    await bootScript(b, MAC);
    await waitFor('a live event after the resume', 20_000, () => resumed.frames.length >= missed.length + 1);
    const got = resumed.ids();
    assert.deepEqual(got.slice(0, missed.length), missed, 'exactly the missed events, in id order');
    assert.equal(new Set(got).size, got.length, 'none twice');
    assert.ok(got[missed.length]! > missed[missed.length - 1]!, 'then the live one');
    assert.deepEqual(resumed.frames.slice(0, missed.length).map((f) => f.data.server).sort(), ['a', 'a', 'b', 'b', 'b']);
    // The web UI's live feed page resumes the same way, from its newest row (?lastEventId=).
    const feedPage = await (await fetch(`${a.admin}/ui/events`, { headers: { Authorization: `Bearer ${a.token}` } })).text();
    assert.match(feedPage, /data-id="\d+"/);
    assert.match(feedPage, /<small class="server">b<\/small>/, 'the feed page marks the server');
    const ui = new SseClient(`${a.admin}/ui/events/stream?lastEventId=${lastSeen}`, a.token);
    await waitFor('the missed events on the UI stream', 20_000, () => ui.frames.length >= missed.length);
    assert.deepEqual(ui.ids().slice(0, missed.length), missed);
    await ui.close();

    // 4. PostgreSQL restarts while A's stream stays open: B's events recorded meanwhile are held
    // and shipped when it is back, and A's stream delivers each once.
    const before = resumed.frames.length;
    restarter = postgresRestarter(pg);
    restarter.stop();
    for (let i = 0; i < 3; i++) await bootScript(b, MAC);
    await waitFor("B to notice it cannot ship", 20_000, () => /cannot ship \d+ events/.test(fs.readFileSync(b.log, 'utf8')));
    restarter.start();
    await waitFor("B's held events on A's stream after the restart", 60_000, () => resumed.frames.length >= before + 3);
    const after3 = resumed.frames.slice(before);
    assert.deepEqual(after3.map((f) => f.data.server), ['b', 'b', 'b']);
    assert.ok(after3.every((f) => f.data.kind.startsWith('http.')), JSON.stringify(after3));
    const all = resumed.ids();
    assert.equal(new Set(all).size, all.length, 'no event twice across the restart');
    assert.deepEqual(all, [...all].sort((x, y) => x - y));
    // And the feed keeps going after the restart.
    await bootScript(a, MAC);
    await waitFor('a live event after the restart', 30_000, () => resumed.frames.some((f) => f.id! > all[all.length - 1]! && f.data.server === 'a'));
    await resumed.close();

    // 5. A restarts (its mirror persists in its replica) while B records more: A resumes from its
    // highest id, with nothing lost or twice.
    a.proc.kill('SIGTERM');
    await new Promise((r) => (a.proc.exitCode !== null ? r(null) : a.proc.once('exit', r)));
    for (let i = 0; i < 2; i++) await bootScript(b, MAC);
    a = await serve('a', url);
    const sql2 = connectPostgres(url, { max: 1 });
    const total = Number((await sql2`SELECT count(*)::int AS n FROM events WHERE mac = ${MAC}`)[0]!.n);
    await sql2.end();
    await waitFor("A's mirror to catch up after its restart", 20_000, async () => {
      const r = (await (await fetch(`${a.admin}/api/v1/events?mac=${MAC}&limit=1000`, { headers: { Authorization: `Bearer ${a.token}` } })).json()) as { events: unknown[] };
      return r.events.length >= total;
    });
    const mirrored = (await (await fetch(`${a.admin}/api/v1/events?mac=${MAC}&limit=1000`, { headers: { Authorization: `Bearer ${a.token}` } })).json()) as { events: { id: number }[] };
    assert.equal(mirrored.events.length, total, "A's timeline holds every event of the node PostgreSQL has, once");
    for (const s of [a, b]) assert.doesNotMatch(fs.readFileSync(s.log, 'utf8'), /"level":(50|60)/, `${s.id} logged no error`);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => undefined);
  }
});
