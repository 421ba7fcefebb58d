/**
 * Runs one Session on its own UDP socket: bound to the server's address on a fresh
 * ephemeral port (RFC 1350's TID) and connected to the client, so the kernel drops
 * datagrams from anyone else and sends need no per-packet address handling. Used both on
 * the server's thread and inside transfer worker threads (worker.ts).
 */
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { ErrorCode } from './codec.js';
import type { Peer } from './generated.js';
import { Session, type Outcome } from './session.js';
import type { Source } from './source.js';

export interface TransferSpec {
  /** Local address to bind (the listener's). */
  address: string;
  peer: Peer;
  blksize: number;
  windowsize: number;
  timeoutMs: number;
  retries: number;
  /** Back off (see SessionParams.backoff): the client did not negotiate `timeout`. */
  backoff?: boolean;
  /** Encoded OACK, when options were accepted. */
  oack?: Uint8Array;
}

export interface TransferCounters {
  badPackets: number;
  duplicateAcks: number;
  retransmits: number;
  dataPackets: number;
}

export interface TransferHooks {
  onProgress(): void;
  /** Native engine with its stream gate on (NativeEngine.setStreams): the transfer left the line and sent its first packet. */
  onStarted?(): void;
  onEnd(outcome: Outcome, counters: TransferCounters): void;
}

export interface RunningTransfer {
  abort(code: number, message: string, notifyClient: boolean): void;
}

export async function startTransfer(spec: TransferSpec, source: Source, hooks: TransferHooks): Promise<RunningTransfer> {
  const sock = dgram.createSocket({ type: spec.address.includes(':') ? 'udp6' : 'udp4' });
  await new Promise<void>((resolve, reject) => {
    const fail = (e: Error): void => {
      sock.close();
      reject(e);
    };
    sock.once('error', fail);
    sock.bind({ port: 0, address: spec.address, exclusive: true }, () => {
      sock.connect(spec.peer.port, spec.peer.address, () => {
        sock.off('error', fail);
        resolve();
      });
    });
  });
  const session = new Session(
    {
      source,
      blksize: spec.blksize,
      windowsize: spec.windowsize,
      timeoutMs: spec.timeoutMs,
      retries: spec.retries,
      backoff: spec.backoff,
      oack: spec.oack ? Buffer.from(spec.oack.buffer, spec.oack.byteOffset, spec.oack.byteLength) : undefined,
    },
    {
      send: (m) => sock.send(m),
      now: () => performance.now(),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
      onProgress: () => hooks.onProgress(),
    },
    (outcome) => {
      try {
        sock.close();
      } catch {
        /* already closed */
      }
      hooks.onEnd(outcome, {
        badPackets: session.badPackets,
        duplicateAcks: session.duplicateAcks,
        retransmits: session.retransmits,
        dataPackets: session.dataPackets,
      });
    },
  );
  sock.on('message', (m) => session.onPacket(m));
  sock.on('error', (e) => session.abort(ErrorCode.NOT_DEFINED, `socket error: ${e.message}`, false));
  session.start();
  return { abort: (code, message, notify) => session.abort(code, message, notify) };
}
