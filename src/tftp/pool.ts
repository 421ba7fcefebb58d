/**
 * Transfer worker threads (see worker.ts) and the choice of where a new transfer runs:
 * the least busy of this thread and the workers. A worker that dies ends its transfers
 * as failed and is not used again; the server keeps serving on the threads left.
 */
import { Worker } from 'node:worker_threads';
import type { Outcome } from './session.js';
import type { TransferCounters, TransferHooks, TransferSpec } from './transfer.js';
import type { FromWorker, ToWorker } from './worker.js';

export interface Slot {
  /** Hand a transfer to the worker; returns its abort function. */
  start(spec: TransferSpec, content: Buffer, hooks: TransferHooks): (code: number, message: string, notifyClient: boolean) => void;
}

interface W {
  worker: Worker;
  alive: boolean;
  transfers: Map<number, TransferHooks>;
  ready: Promise<void>;
}

const NO_COUNTERS: TransferCounters = { badPackets: 0, duplicateAcks: 0, retransmits: 0, dataPackets: 0 };

function spawn(): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    // Running from source under tsx (tests, bench): a worker does not inherit tsx's
    // loader, so register it before importing the TypeScript entry.
    const entry = new URL('./worker.ts', here).href;
    // Resolved here, from this module, so it does not depend on the worker's cwd.
    const api = import.meta.resolve('tsx/esm/api');
    return new Worker(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`, { eval: true });
  }
  // '../tftp/': this module may run from the CLI bundle in dist/bin/ (scripts/bundle.mjs).
  return new Worker(new URL('../tftp/worker.js', here));
}

export class WorkerPool {
  private readonly workers: W[] = [];
  private nextId = 1;

  constructor(
    count: number,
    private readonly warn: (msg: string) => void,
  ) {
    for (let i = 0; i < count; i++) this.workers.push(this.create());
  }

  private create(): W {
    let onReady!: () => void;
    const w: W = { worker: spawn(), alive: true, transfers: new Map(), ready: new Promise((r) => (onReady = r)) };
    w.worker.on('message', (m: FromWorker) => {
      if (m.type === 'ready') return onReady();
      const hooks = w.transfers.get(m.id);
      if (!hooks) return;
      if (m.type === 'progress') hooks.onProgress();
      else {
        w.transfers.delete(m.id);
        hooks.onEnd(m.outcome, m.counters);
      }
    });
    const die = (why: string): void => {
      onReady();
      if (!w.alive) return;
      w.alive = false;
      if (w.transfers.size) this.warn(`transfer worker stopped (${why}); ${w.transfers.size} transfer(s) lost`);
      for (const [id, hooks] of w.transfers) {
        w.transfers.delete(id);
        const o: Outcome = { ok: false, code: 0, message: `transfer thread stopped: ${why}`, byClient: false, duringNegotiation: false, bytes: 0, durationMs: 0, retransmits: 0 };
        hooks.onEnd(o, NO_COUNTERS);
      }
    };
    w.worker.on('error', (e) => die(e.message));
    w.worker.on('exit', (code) => die(`exit ${code}`));
    return w;
  }

  /** Resolves when every worker has loaded (or died): transfers then start without delay. */
  async ready(timeoutMs = 10_000): Promise<void> {
    await Promise.race([Promise.all(this.workers.map((w) => w.ready)), new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  /** The least busy worker, or undefined when this thread (with `localActive` transfers) is. */
  pick(localActive: number): Slot | undefined {
    let best: W | undefined;
    let bestLoad = localActive;
    for (const w of this.workers) {
      if (w.alive && w.transfers.size < bestLoad) {
        best = w;
        bestLoad = w.transfers.size;
      }
    }
    if (!best) return undefined;
    const w = best;
    return {
      start: (spec, content, hooks) => {
        const id = this.nextId++;
        w.transfers.set(id, hooks);
        const msg: ToWorker = { type: 'start', id, spec, content };
        w.worker.postMessage(msg);
        return (code, message, notify) => {
          const abort: ToWorker = { type: 'abort', id, code, message, notify };
          if (w.alive) w.worker.postMessage(abort);
        };
      },
    };
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0);
    for (const w of ws) w.alive = false;
    await Promise.all(ws.map((w) => w.worker.terminate()));
  }
}
