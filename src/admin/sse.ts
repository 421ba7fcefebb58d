import type { Request, Response } from 'express';
import { eventJson } from '../nodes/json.js';
import type { BootEvent } from '../nodes/types.js';
import type { EventFilter } from '../store/events.js';
import { isFailure, summarize } from './timeline.js';

/** A live filter: mac, node and kind prefix (times make no sense for events still to come). */
export function eventMatches(f: EventFilter, ev: BootEvent): boolean {
  if (f.mac && ev.mac !== f.mac) return false;
  if (f.node && ev.node !== f.node) return false;
  if (f.kind && ev.kind !== f.kind && !ev.kind.startsWith(f.kind + '.')) return false;
  return true;
}

/**
 * One SSE frame: the event's stable JSON plus a readable `summary` and a `failed` flag for the
 * UI. JSON never holds a raw newline, so `data:` stays one line. `withId`: the frame carries the
 * event's id (`id:`), which the client sends back as Last-Event-ID when it reconnects.
 */
export function sseFrame(ev: BootEvent, withId = false): string {
  const id = withId && ev.id !== undefined ? `id: ${ev.id}\n` : '';
  return `${id}event: boot\ndata: ${JSON.stringify({ ...eventJson(ev), summary: summarize(ev), failed: isFailure(ev) })}\n\n`;
}

/**
 * Where the API, the web UI and their streams read events. On SQLite the store's event log (this
 * server's events; frames carry no id). On PostgreSQL every server's events, mirrored from the
 * database (src/store/pg/event-feed.ts' PgEventMirror): delivered in database id order, each
 * with its server id, and `after` lets a stream that reconnects with Last-Event-ID resume.
 */
export interface LiveEvents {
  subscribe(fn: (ev: BootEvent) => void): () => void;
  query(f: EventFilter): BootEvent[];
  /** Events after database id `id` matching `f`, oldest first (at most `limit`). */
  after?(id: number, f: EventFilter, limit?: number): BootEvent[];
}

/** The Last-Event-ID a reconnecting client sent (header, or ?lastEventId= for clients that cannot set headers). */
export function lastEventId(req: Request): number | undefined {
  const v = req.get('last-event-id') ?? (typeof req.query.lastEventId === 'string' ? req.query.lastEventId : undefined);
  return v !== undefined && /^\d{1,15}$/.test(v.trim()) ? Number(v.trim()) : undefined;
}

/** Over this many unsent bytes a client is too slow to follow a boot storm: drop it (it reconnects). */
const MAX_BACKLOG = 1 << 20;

/**
 * Stream boot events as server-sent events until the client goes away. Returns a function
 * that ends the stream (server shutdown).
 */
export function sseStream(
  req: Request,
  res: Response,
  events: Pick<LiveEvents, 'subscribe' | 'after'>,
  filter: EventFilter,
  heartbeatMs = 15000,
  onEnd?: () => void,
): () => void {
  res.status(200).set({
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
  res.write('retry: 3000\n\n');
  let done = false;
  const end = () => {
    if (done) return;
    done = true;
    clearInterval(hb);
    unsubscribe();
    res.end();
    onEnd?.();
  };
  // Resuming (ordered source and Last-Event-ID): what the client missed, read and sent in this
  // same event-loop turn as the subscription below, so nothing falls between them; the live
  // feed then only sends ids above the last one sent (exactly once).
  const ordered = typeof events.after === 'function';
  let sent = ordered ? lastEventId(req) : undefined;
  if (sent !== undefined && events.after) {
    for (;;) {
      const page = events.after(sent, filter, 1000);
      for (const ev of page) {
        res.write(sseFrame(ev, true));
        sent = ev.id ?? sent;
      }
      // Too far behind to send at once: the client reconnects from the last id it got.
      if (res.writableLength > MAX_BACKLOG) {
        done = true;
        res.end();
        onEnd?.();
        return () => undefined;
      }
      if (page.length < 1000) break;
    }
  }
  const unsubscribe = events.subscribe((ev) => {
    if (done || !eventMatches(filter, ev)) return;
    if (ordered && sent !== undefined && ev.id !== undefined && ev.id <= sent) return;
    if (res.writableLength > MAX_BACKLOG) return end();
    if (ordered && ev.id !== undefined) sent = ev.id;
    res.write(sseFrame(ev, ordered));
  });
  const hb = setInterval(() => res.write(': keep-alive\n\n'), heartbeatMs);
  hb.unref();
  req.on('close', end);
  return end;
}
