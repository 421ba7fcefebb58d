/**
 * Bounds how many nodescripts run at once across all requests. Waiters are served in
 * order of their priority (lower first), then arrival: the engine passes the request's
 * sequence number, so a request that started earlier gets its next script before a newer
 * request gets its first one. Nodes therefore finish one after another instead of all
 * crawling to the end together, and nothing starves (every request eventually is oldest).
 */
export class Semaphore {
  private running = 0;
  private seq = 0;
  private readonly waiters: { prio: number; seq: number; wake: () => void }[] = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`semaphore limit must be a positive integer, got ${limit}`);
  }

  get active(): number {
    return this.running;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  acquire(prio = 0): Promise<() => void> {
    if (this.running < this.limit && this.waiters.length === 0) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => {
      const w = { prio, seq: this.seq++, wake: () => resolve(this.releaser()) };
      // Binary search insertion keeps the queue ordered by (prio, seq).
      let lo = 0;
      let hi = this.waiters.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const m = this.waiters[mid]!;
        if (m.prio < w.prio || (m.prio === w.prio && m.seq < w.seq)) lo = mid + 1;
        else hi = mid;
      }
      this.waiters.splice(lo, 0, w);
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next) next.wake();
      else this.running--;
    };
  }
}
