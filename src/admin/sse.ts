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
 * UI. JSON never holds a raw newline, so `data:` stays one line.
 */
export function sseFrame(ev: BootEvent): string {
  return `event: boot\ndata: ${JSON.stringify({ ...eventJson(ev), summary: summarize(ev), failed: isFailure(ev) })}\n\n`;
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
  events: { subscribe(fn: (ev: BootEvent) => void): () => void },
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
  const unsubscribe = events.subscribe((ev) => {
    if (done || !eventMatches(filter, ev)) return;
    if (res.writableLength > MAX_BACKLOG) return end();
    res.write(sseFrame(ev));
  });
  const hb = setInterval(() => res.write(': keep-alive\n\n'), heartbeatMs);
  hb.unref();
  req.on('close', end);
  return end;
}
