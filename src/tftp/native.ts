/**
 * The native DATA pump (native/tftpdata/tftpdata.c; build: make -C native/tftpdata): one C
 * thread (or up to 4) running an epoll loop that does sendmmsg/recv for the transfers of
 * in-memory content. Same contract as the worker pool's Slot: start(spec, content, hooks)
 * returns an abort function, and hooks get onProgress once and onEnd exactly once, with the
 * Outcome session.ts would have produced.
 * Absent (not built, not Linux) -> undefined, and transfers run in JavaScript.
 */
import { createRequire } from 'node:module';
import { decode, errorPacket } from './codec.js';
import type { Outcome } from './session.js';
import type { TransferHooks, TransferSpec } from './transfer.js';

interface NativeResult {
  status: 'ok' | 'timeout' | 'client-error' | 'aborted' | 'socket-error';
  bytes: number;
  durationMs: number;
  retransmits: number;
  duplicateAcks: number;
  badPackets: number;
  dataPackets: number;
  duringNegotiation: boolean;
  error?: string;
  clientError?: Buffer;
}

interface Addon {
  start(
    content: Uint8Array,
    localAddress: string,
    peerAddress: string,
    peerPort: number,
    blksize: number,
    windowsize: number,
    timeoutMs: number,
    retries: number,
    oack: Uint8Array | null,
    timeoutPacket: Uint8Array,
    backoff: boolean,
    callback: (kind: 'progress' | 'started' | 'end', result?: NativeResult) => void,
  ): object;
  abort(handle: object, packet: Uint8Array | null): void;
  setWorkers(n: number): number;
  /** Absent in an addon built before the gate existed. */
  setStreams?(streams: number, holdMs: number, waitMs: number): void;
  streamStats?(): { held: number; queued: number; holdsExpired: number; workersPolling?: number; spinSwitches?: number; sleeps?: number; polls?: number };
  /** Absent in an addon built before the busy-poll policy existed. */
  setSpin?(mode: PumpPoll): void;
  maxWindow: number;
}

/**
 * Whether a pump thread with several transfers polls for SPIN_US before it sleeps (tftp.pump_poll):
 * 'auto' polls only while the machine has no more runnable threads than cores (tftpdata.c,
 * IDLE_CHECK_MS: polling then takes a core nobody else wants), 'off' always sleeps, 'on' always
 * polls first.
 */
export type PumpPoll = 'auto' | 'off' | 'on';

export type AbortFn = (code: number, message: string, notifyClient: boolean) => void;

export interface NativeEngine {
  /** Largest windowsize the C side takes; bigger windows run in JavaScript. */
  readonly maxWindow: number;
  /** C worker threads (each an epoll loop over its transfers), fixed by the first loader. */
  readonly workers: number;
  /** Throws (nothing started, hooks not called) when the socket or thread cannot be made. */
  start(spec: TransferSpec, content: Buffer, hooks: TransferHooks): AbortFn;
  /**
   * The stream gate in C (tftp.streams, see TftpServerOptions.streams), for the transfers started
   * afterwards: they wait in arrival order on the pump thread, and hooks.onStarted says when one
   * leaves the line. Per process (the addon is loaded once). False when the addon predates it.
   */
  setStreams(streams: number, holdMs: number, waitMs: number): boolean;
  /** Transfers holding a stream, waiting for one, and holds that expired (since the addon loaded). */
  streamStats(): { held: number; queued: number; holdsExpired: number };
  /** See PumpPoll. Per process. False when the addon predates it. */
  setPumpPoll(mode: PumpPoll): boolean;
  /**
   * The pump's busy-poll policy since the addon loaded: workers polling now, how often 'auto'
   * changed its decision, sleeps in epoll_wait and polling spells that found an ACK.
   */
  pollStats(): { workersPolling: number; switches: number; sleeps: number; polls: number };
}

/**
 * `workers`: C threads pumping DATA (1 when undefined, at most 4). The addon is loaded once
 * per process; the first start fixes the count.
 */
export function loadNativeEngine(workers?: number): NativeEngine | undefined {
  let addon: Addon;
  try {
    const require = createRequire(import.meta.url);
    // src/tftp/ and dist/tftp/ are both two levels below the package root.
    addon = require(new URL('../../native/tftpdata/build/Release/tftpdata.node', import.meta.url).pathname) as Addon;
    if (typeof addon.start !== 'function' || typeof addon.abort !== 'function' || typeof addon.setWorkers !== 'function') return undefined;
  } catch {
    return undefined;
  }
  const running = addon.setWorkers(workers ?? 0);
  return {
    maxWindow: addon.maxWindow,
    workers: running,
    setStreams(streams, holdMs, waitMs) {
      if (!addon.setStreams) return false;
      addon.setStreams(streams, holdMs, waitMs);
      return true;
    },
    streamStats: () => {
      const s = addon.streamStats?.();
      return { held: s?.held ?? 0, queued: s?.queued ?? 0, holdsExpired: s?.holdsExpired ?? 0 };
    },
    setPumpPoll(mode) {
      if (!addon.setSpin) return false;
      addon.setSpin(mode);
      return true;
    },
    pollStats: () => {
      const s = addon.streamStats?.();
      return { workersPolling: s?.workersPolling ?? 0, switches: s?.spinSwitches ?? 0, sleeps: s?.sleeps ?? 0, polls: s?.polls ?? 0 };
    },
    start(spec, content, hooks) {
      // Set by abort() so the outcome carries the caller's code and message.
      let aborted: { code: number; message: string } | undefined;
      let ended = false;
      const handle = addon.start(
        content,
        spec.address,
        spec.peer.address,
        spec.peer.port,
        spec.blksize,
        spec.windowsize,
        spec.timeoutMs,
        spec.retries,
        spec.oack ?? null,
        timeoutPacket(spec.retries),
        spec.backoff === true,
        (kind, r) => {
          if (kind === 'progress') return hooks.onProgress();
          if (kind === 'started') return hooks.onStarted?.();
          ended = true;
          hooks.onEnd(toOutcome(r!, content.length, spec.retries, aborted), {
            badPackets: r!.badPackets,
            duplicateAcks: r!.duplicateAcks,
            retransmits: r!.retransmits,
            dataPackets: r!.dataPackets,
          });
        },
      );
      return (code, message, notifyClient) => {
        // After the end callback the handle's memory is gone: never touch it again.
        if (ended || aborted) return;
        aborted = { code, message };
        addon.abort(handle, notifyClient ? errorPacket(code, message) : null);
      };
    },
  };
}

/** The ERROR a timed-out transfer sends, per retry count (the addon copies it: one per count is enough). */
const timeoutPackets = new Map<number, Buffer>();
function timeoutPacket(retries: number): Buffer {
  let p = timeoutPackets.get(retries);
  if (!p) timeoutPackets.set(retries, (p = errorPacket(0, `timed out after ${retries} retransmissions`)));
  return p;
}

function toOutcome(r: NativeResult, size: number, retries: number, aborted: { code: number; message: string } | undefined): Outcome {
  const common = { bytes: r.bytes, durationMs: r.durationMs, retransmits: r.retransmits };
  switch (r.status) {
    case 'ok':
      return { ok: true, ...common, bytes: size };
    case 'client-error': {
      const d = decode(r.clientError ?? Buffer.alloc(0));
      const code = d.ok && d.packet.op === 'error' ? d.packet.code : 0;
      const text = d.ok && d.packet.op === 'error' ? d.packet.message : '';
      return { ok: false, code, message: `client sent error ${code}${text ? `: ${text}` : ''}`, byClient: true, duringNegotiation: r.duringNegotiation, ...common };
    }
    case 'timeout':
      return { ok: false, code: 0, message: `timed out after ${retries} retransmissions`, byClient: false, duringNegotiation: r.duringNegotiation, ...common };
    case 'aborted':
      return { ok: false, code: aborted?.code ?? 0, message: aborted?.message ?? 'aborted', byClient: false, duringNegotiation: r.duringNegotiation, ...common };
    case 'socket-error':
      return { ok: false, code: 0, message: `socket error: ${r.error ?? 'unknown'}`, byClient: false, duringNegotiation: r.duringNegotiation, ...common };
  }
}
