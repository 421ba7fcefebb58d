import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import type { DB } from './db.js';

/**
 * WAL checkpoints on a worker thread, off the server's event loop.
 *
 * A commit in WAL mode appends the pages it changed to the -wal file. By default SQLite copies
 * them back into the database (a checkpoint, with an fsync of the WAL and one of the database)
 * inside the commit that takes the WAL past 1000 pages — in a DHCP storm that is every few
 * dozen slices, and the event loop (every DHCP answer, every TFTP request) stands still for it.
 * While this runs, the serving connection's autocheckpoint is off and a second connection on
 * a worker thread runs PASSIVE checkpoints: they never take the write lock, so the server's
 * transactions go on meanwhile, and SQLite starts the WAL over from its beginning at the next
 * write once everything in it has been copied.
 *
 * Durability is unchanged: a transaction is in the WAL when its commit returns (the DHCP server
 * sends an ACK only after that), and `synchronous = NORMAL` (src/store/db.ts) makes that commit
 * survive a crash or kill -9 of pxeherd, as before; the WAL is synced to the disk at each
 * checkpoint, here as by the autocheckpoint. (Power loss can take the last commits since the
 * previous checkpoint, at most `intervalMs` old here; Kea's memfile lease file, the reference in
 * BENCHMARKS.md, does not sync either.)
 */
export class BackgroundCheckpointer {
  private worker?: Worker;

  constructor(
    private readonly db: DB,
    private readonly file: string,
    private readonly intervalMs = 200,
    private readonly warn: (msg: string) => void = () => {},
  ) {}

  start(): void {
    if (this.worker || this.file === ':memory:') return;
    const require = createRequire(import.meta.url);
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const Database = require(workerData.module);
      const db = new Database(workerData.file);
      db.pragma('busy_timeout = 0');
      const run = () => {
        try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (e) { parentPort.postMessage(String(e && e.message)); }
      };
      const timer = setInterval(run, workerData.intervalMs);
      parentPort.on('message', (m) => {
        if (m !== 'stop') return;
        clearInterval(timer);
        run();
        db.close();
        parentPort.close();
      });`;
    const w = new Worker(code, { eval: true, workerData: { module: require.resolve('better-sqlite3'), file: this.file, intervalMs: this.intervalMs } });
    w.unref();
    w.on('message', (m) => this.warn(`WAL checkpoint: ${String(m)}`));
    w.on('error', (e) => {
      // Without the worker the serving connection checkpoints by itself again.
      this.warn(`WAL checkpoint thread failed (${e.message}): the server checkpoints in its own thread again`);
      this.restore();
    });
    this.worker = w;
    this.db.pragma('wal_autocheckpoint = 0');
  }

  /** Back to checkpoints by the serving connection (the default 1000 pages). */
  stop(): void {
    const w = this.worker;
    if (!w) return;
    w.postMessage('stop');
    this.restore();
  }

  private restore(): void {
    this.worker = undefined;
    if (this.db.open) this.db.pragma('wal_autocheckpoint = 1000');
  }
}
