/**
 * Option negotiation (RFC 2347 OACK, 2348 blksize, 2349 timeout/tsize, 7440 windowsize).
 * Pure: what the client asked for + our limits + the file size -> the transfer's
 * parameters and the OACK to send (undefined when no option was accepted, in which case
 * RFC 1350 says DATA block 1 is the answer).
 */
import type { Options } from './codec.js';

export interface Limits {
  /** Largest blksize we agree to (RFC 2348 allows 8..65464). */
  maxBlksize: number;
  /** Largest windowsize we agree to (RFC 7440 allows 1..65535). */
  maxWindowsize: number;
  /** Retransmission interval when the client does not negotiate `timeout`. */
  defaultTimeoutMs: number;
  /**
   * Largest window in payload bytes (windowsize is lowered to fit). A window is sent in
   * one burst; Linux charges a datagram's full buffer (about twice an 8 KiB payload)
   * to the receiver's 208 KiB default socket buffer, so 16 x 8 KiB overflows it and
   * every window loses its tail. Undefined = no cap.
   */
  maxWindowBytes?: number;
}

export interface Negotiated {
  blksize: number;
  windowsize: number;
  timeoutMs: number;
  /** Options to put in the OACK, in the client's order; undefined = no OACK. */
  oack?: Options;
  oackOrder: string[];
}

const MIN_BLKSIZE = 8;
const MAX_BLKSIZE = 65464;

/** A decimal option value, or NaN. Rejects signs, spaces, hex and absurd lengths. */
function int(v: string): number {
  return /^[0-9]{1,10}$/.test(v) ? Number(v) : NaN;
}

export function negotiate(asked: Options, order: string[], limits: Limits, size: number): Negotiated {
  const out: Negotiated = { blksize: 512, windowsize: 1, timeoutMs: limits.defaultTimeoutMs, oackOrder: [] };
  const oack: Options = {};
  const maxBlk = Math.max(MIN_BLKSIZE, Math.min(MAX_BLKSIZE, limits.maxBlksize));
  const maxWin = Math.max(1, Math.min(65535, limits.maxWindowsize));
  for (const name of order) {
    const v = int(asked[name] ?? '');
    switch (name) {
      case 'blksize':
        // Below 8 is invalid: ignore the option (RFC 2348 lets the server decline it).
        if (v >= MIN_BLKSIZE) {
          out.blksize = Math.min(v, maxBlk);
          oack.blksize = String(out.blksize);
        }
        break;
      case 'windowsize':
        if (v >= 1) {
          out.windowsize = Math.min(v, maxWin);
          oack.windowsize = String(out.windowsize);
        }
        break;
      case 'timeout':
        // RFC 2349: the server must accept the exact value or ignore the option.
        if (v >= 1 && v <= 255) {
          out.timeoutMs = v * 1000;
          oack.timeout = String(v);
        }
        break;
      case 'tsize':
        // In a read request the client sends 0 and we answer with the real size.
        if (!Number.isNaN(v)) oack.tsize = String(size);
        break;
      default:
        // Unknown options (e.g. multicast, utimeout) are silently declined.
        break;
    }
  }
  if (limits.maxWindowBytes !== undefined && out.windowsize > 1 && out.windowsize * out.blksize > limits.maxWindowBytes) {
    out.windowsize = Math.max(1, Math.floor(limits.maxWindowBytes / out.blksize));
    if (oack.windowsize !== undefined) oack.windowsize = String(out.windowsize);
  }
  out.oackOrder = order.filter((n) => oack[n] !== undefined);
  if (out.oackOrder.length > 0) out.oack = oack;
  return out;
}
