/**
 * A transfer worker thread. One Node thread tops out at one core's worth of datagrams;
 * with many clients booting at once, transfers are spread over a few of these. The
 * server's thread keeps the listener, every decision and all events; a worker only pumps
 * DATA for the transfers it is handed. File contents arrive as views on the server's
 * SharedArrayBuffer-backed file cache, so nothing is copied.
 */
import { parentPort } from 'node:worker_threads';
import type { Outcome } from './session.js';
import { BufferSource } from './source.js';
import { startTransfer, type RunningTransfer, type TransferCounters, type TransferSpec } from './transfer.js';

export type ToWorker =
  | { type: 'start'; id: number; spec: TransferSpec; content: Uint8Array }
  | { type: 'abort'; id: number; code: number; message: string; notify: boolean };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'progress'; id: number }
  | { type: 'end'; id: number; outcome: Outcome; counters: TransferCounters };

const port = parentPort;
if (port) {
  const running = new Map<number, RunningTransfer>();
  const abortedEarly = new Map<number, Extract<ToWorker, { type: 'abort' }>>();
  const post = (m: FromWorker): void => port.postMessage(m);

  port.on('message', (m: ToWorker) => {
    if (m.type === 'abort') {
      const t = running.get(m.id);
      if (t) t.abort(m.code, m.message, m.notify);
      else abortedEarly.set(m.id, m);
      return;
    }
    const content = Buffer.from(m.content.buffer, m.content.byteOffset, m.content.byteLength);
    startTransfer(m.spec, new BufferSource(content), {
      onProgress: () => post({ type: 'progress', id: m.id }),
      onEnd: (outcome, counters) => {
        running.delete(m.id);
        post({ type: 'end', id: m.id, outcome, counters });
      },
    }).then(
      (t) => {
        running.set(m.id, t);
        const a = abortedEarly.get(m.id);
        if (a) {
          abortedEarly.delete(m.id);
          t.abort(a.code, a.message, a.notify);
        }
      },
      (e: unknown) => {
        abortedEarly.delete(m.id);
        post({
          type: 'end',
          id: m.id,
          outcome: { ok: false, code: 0, message: `cannot open transfer socket: ${(e as Error).message}`, byClient: false, duringNegotiation: false, bytes: 0, durationMs: 0, retransmits: 0 },
          counters: { badPackets: 0, duplicateAcks: 0, retransmits: 0, dataPackets: 0 },
        });
      },
    );
  });
  post({ type: 'ready' });
}
