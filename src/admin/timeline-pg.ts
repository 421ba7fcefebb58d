/**
 * A node's timeline on PostgreSQL, where several servers record its events (issue 19): read
 * from the database by the CLI (`pxeherd node timeline`), which has no replica of its own.
 */
import type { Node } from '../nodes/types.js';
import type { StoredEvent } from '../store/backend.js';
import type { PostgresBackend } from '../store/pg/backend.js';
import { nodeEvents } from './timeline.js';
import { parseMac } from '../nodes/mac.js';

/**
 * A node's events from every server, read from PostgreSQL, newest first (what `pxeherd node
 * timeline` shows on PostgreSQL): those with its MAC, plus TFTP transfers from its address
 * (src/admin/timeline.ts' nodeEvents).
 */
export async function nodeEventsFromPg(pg: PostgresBackend, node: Pick<Node, 'mac' | 'ip' | 'name'>, limit = 5000): Promise<StoredEvent[]> {
  type Row = { id: number; time: number; mac: string | null; node: string | null; kind: string; detail: string; server_id: string };
  const ev = (r: Row): StoredEvent => ({ id: Number(r.id), time: Number(r.time), mac: r.mac ?? undefined, node: r.node ?? undefined, kind: r.kind, detail: JSON.parse(r.detail) as Record<string, unknown>, serverId: r.server_id });
  const own = (await pg.sql<Row[]>`SELECT id, time, mac, node, kind, detail, server_id FROM events WHERE mac = ${node.mac} ORDER BY id DESC LIMIT ${limit}`).map(ev);
  const tftp = node.ip
    ? (await pg.sql<Row[]>`SELECT id, time, mac, node, kind, detail, server_id FROM events WHERE mac IS NULL AND kind LIKE 'tftp.%' ORDER BY id DESC LIMIT 5000`).map(ev)
    : [];
  return nodeEvents((f) => (f.mac ? own : tftp), node as Node, limit) as StoredEvent[];
}

/** The node named NAME or with MAC `nameOrMac`, from PostgreSQL. */
export async function findNodeInPg(pg: PostgresBackend, nameOrMac: string): Promise<Node | undefined> {
  const m = parseMac(nameOrMac);
  const [r] = await pg.sql<{ mac: string }[]>`SELECT mac FROM nodes WHERE name = ${nameOrMac} OR mac = ${m.ok ? m.mac : ''} LIMIT 1`;
  return r ? pg.nodeByMac(r.mac) : undefined;
}
