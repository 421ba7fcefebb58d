/**
 * One read transfer: OACK handshake, windowed DATA (RFC 7440; windowsize 1 is RFC 1350
 * lock-step), block-number rollover, retransmission on timeout with a bounded retry
 * count. No sockets and no clock of its own: `send`, `now` and timers are injected, so
 * the state machine is tested packet by packet.
 *
 * Per-packet cost is what limits lock-step throughput, so the ACK path decodes two bytes
 * in place, allocates only the 4-byte DATA header and sends header + payload as one
 * scatter/gather datagram (the payload is a view into the in-memory file).
 */
import { ackBlock, dataHeader, decode, errorPacket, OP_ERROR } from './codec.js';
import type { Source } from './source.js';

export interface SessionDeps {
  /** Send one datagram to the peer (a list is sent as one datagram, gathered). */
  send(msg: Buffer | Buffer[]): void;
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
  /** Called once, when the client first acknowledges something (OACK or a block). */
  onProgress?(): void;
}

export interface SessionParams {
  source: Source;
  blksize: number;
  windowsize: number;
  timeoutMs: number;
  /** Retransmissions of the same window/OACK before giving up. */
  retries: number;
  /**
   * Wait twice as long before the second retransmission of the same window, four times before
   * the later ones (timeoutMs, 2x, 4x, 4x...; back to timeoutMs on progress), as dnsmasq backs
   * off (2, 2, 3, 3, 5, 5, 9 s): a client that is slow rather than gone (a busy PXE ROM, a
   * loaded host) is not sent copies every timeoutMs that it must then also process. Off when
   * the client negotiated `timeout` (RFC 2349: then that is the interval).
   */
  backoff?: boolean;
  /** Encoded OACK to send first; undefined = start with DATA block 1. */
  oack?: Buffer;
}

export type Outcome =
  | { ok: true; bytes: number; durationMs: number; retransmits: number }
  | {
      ok: false;
      /** TFTP error code sent to (or received from) the client. */
      code: number;
      message: string;
      /** True when the client ended the transfer with an ERROR packet. */
      byClient: boolean;
      /** True when it ended while the OACK was unanswered (e.g. UEFI's tsize probe). */
      duringNegotiation: boolean;
      bytes: number;
      durationMs: number;
      retransmits: number;
    };

export class Session {
  /** Highest block (absolute, 1-based; 0 = none) the client acknowledged. */
  private acked = 0;
  /** Highest block (absolute) sent so far. */
  private sent = 0;
  /** Number of DATA blocks: the last one is shorter than blksize, possibly empty. */
  readonly totalBlocks: number;
  private awaitingOack: boolean;
  private lastSendAt = 0;
  private startedAt = 0;
  private retriesUsed = 0;
  private timer: unknown;
  private loading = false;
  private ended = false;
  retransmits = 0;
  duplicateAcks = 0;
  badPackets = 0;
  dataPackets = 0;

  constructor(
    private readonly p: SessionParams,
    private readonly deps: SessionDeps,
    private readonly onEnd: (outcome: Outcome) => void,
  ) {
    this.totalBlocks = Math.floor(p.source.size / p.blksize) + 1;
    this.awaitingOack = p.oack !== undefined;
  }

  get finished(): boolean {
    return this.ended;
  }

  /** True once the client acknowledged anything (OACK or a block). */
  get progressed(): boolean {
    return this.acked > 0 || (this.p.oack !== undefined && !this.awaitingOack);
  }

  start(): void {
    this.startedAt = this.deps.now();
    if (this.awaitingOack) {
      this.deps.send(this.p.oack!);
      this.lastSendAt = this.startedAt;
    } else {
      this.sendWindow();
    }
    this.arm(this.p.timeoutMs);
  }

  onPacket(msg: Buffer): void {
    if (this.ended) return;
    const blk = ackBlock(msg);
    if (blk >= 0) {
      this.onAck(blk);
      return;
    }
    if (msg.length >= 2 && msg[0] === 0 && msg[1] === OP_ERROR) {
      const d = decode(msg);
      const code = d.ok && d.packet.op === 'error' ? d.packet.code : 0;
      const text = d.ok && d.packet.op === 'error' ? d.packet.message : '';
      this.finish({
        ok: false,
        code,
        message: `client sent error ${code}${text ? `: ${text}` : ''}`,
        byClient: true,
        duringNegotiation: this.awaitingOack,
        bytes: this.bytesAcked(),
        durationMs: this.deps.now() - this.startedAt,
        retransmits: this.retransmits,
      });
      return;
    }
    // Anything else on a read transfer's socket is noise; the transfer carries on.
    this.badPackets++;
  }

  /** End the transfer from outside (server shutdown, replaced by a new request). */
  abort(code: number, message: string, notifyClient = true): void {
    if (this.ended) return;
    if (notifyClient) this.deps.send(errorPacket(code, message));
    this.finish(this.failure(code, message));
  }

  private onAck(blk: number): void {
    if (this.awaitingOack) {
      if (blk !== 0) {
        this.badPackets++;
        return;
      }
      this.awaitingOack = false;
      this.resetRetries();
      this.deps.onProgress?.();
      this.sendWindow();
      return;
    }
    // Map the 16-bit number onto the absolute block counter: the nearest block at or
    // after the last acknowledged one. Anything beyond what we sent is bogus.
    const abs = this.acked + ((blk - this.acked) & 0xffff);
    if (abs > this.sent) {
      // An ACK from before the last acknowledged block (delayed or duplicated in the
      // network) wraps to "the future": stale, ignore it like a duplicate.
      this.duplicateAcks++;
      return;
    }
    if (abs === this.acked) {
      // Duplicate ACK: never answer it with data (the sorcerer's apprentice bug doubles
      // every packet from then on). A lost DATA is resent by our own timer.
      this.duplicateAcks++;
      return;
    }
    if (this.acked === 0 && this.p.oack === undefined) this.deps.onProgress?.();
    this.acked = abs;
    this.resetRetries();
    if (abs === this.totalBlocks) {
      this.finish({ ok: true, bytes: this.p.source.size, durationMs: this.deps.now() - this.startedAt, retransmits: this.retransmits });
      return;
    }
    // RFC 7440: an ACK inside the window means the client got blocks up to `abs` only;
    // either way the next window starts right after it.
    this.sendWindow();
  }

  private sendWindow(): void {
    if (this.loading) return;
    const bs = this.p.blksize;
    const from = this.acked + 1;
    const to = Math.min(this.acked + this.p.windowsize, this.totalBlocks);
    const off = (from - 1) * bs;
    const end = Math.min(to * bs, this.p.source.size);
    const data = this.p.source.slice(off, end - off);
    if (data === undefined) {
      this.loading = true;
      this.p.source.load(off, end - off).then(
        () => {
          this.loading = false;
          if (!this.ended) this.sendWindow();
        },
        (e: unknown) => this.abort(0, `read error: ${(e as Error).message}`),
      );
      return;
    }
    const send = this.deps.send;
    for (let b = from, o = 0; b <= to; b++, o += bs) {
      send([dataHeader(b & 0xffff), data.subarray(o, o + bs)]);
    }
    this.dataPackets += to - from + 1;
    if (to > this.sent) this.sent = to;
    this.lastSendAt = this.deps.now();
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    if (this.ended) return;
    const idle = this.deps.now() - this.lastSendAt;
    const interval = this.interval();
    if (idle < interval) {
      this.arm(interval - idle);
      return;
    }
    if (this.loading) {
      // Waiting for the disk is not the client's fault, but it must not hang forever.
      if (this.retriesUsed++ >= this.p.retries) this.abort(0, 'timed out reading the file');
      else this.arm(this.p.timeoutMs);
      return;
    }
    if (this.retriesUsed >= this.p.retries) {
      this.abort(0, `timed out after ${this.p.retries} retransmissions`);
      return;
    }
    this.retriesUsed++;
    this.retransmits++;
    if (this.awaitingOack) {
      this.deps.send(this.p.oack!);
      this.lastSendAt = this.deps.now();
    } else {
      this.sendWindow();
    }
    this.arm(this.interval());
  };

  /** The client made progress: a full retry budget again, and (backoff) the next wait is timeoutMs, not the backed-off one armed. */
  private resetRetries(): void {
    if (this.p.backoff && this.retriesUsed > 0 && this.timer !== undefined) {
      this.deps.clearTimer(this.timer);
      this.timer = undefined;
      this.retriesUsed = 0;
      this.arm(this.p.timeoutMs);
    }
    this.retriesUsed = 0;
  }

  /** Time without progress before the next retransmission (see SessionParams.backoff). */
  private interval(): number {
    return this.p.backoff && !this.loading ? this.p.timeoutMs * (1 << Math.min(this.retriesUsed, 2)) : this.p.timeoutMs;
  }

  private arm(ms: number): void {
    this.timer = this.deps.setTimer(this.onTimer, Math.max(1, Math.ceil(ms)));
  }

  private bytesAcked(): number {
    return Math.min(this.p.source.size, this.acked * this.p.blksize);
  }

  private failure(code: number, message: string): Outcome {
    return {
      ok: false,
      code,
      message,
      byClient: false,
      duringNegotiation: this.awaitingOack,
      bytes: this.bytesAcked(),
      durationMs: this.deps.now() - this.startedAt,
      retransmits: this.retransmits,
    };
  }

  private finish(o: Outcome): void {
    if (this.ended) return;
    this.ended = true;
    if (this.timer !== undefined) this.deps.clearTimer(this.timer);
    this.timer = undefined;
    this.onEnd(o);
  }
}
