/**
 * Socket options Node's dgram lacks, from the optional native addon
 * native/bindtodevice (build: make -C native/bindtodevice): SO_BINDTODEVICE, and SO_RCVBUFFORCE
 * for listening sockets that must absorb a whole rack powering on. Without the addon (not built,
 * not Linux) callers get undefined and fall back to what dgram offers.
 */
import { createRequire } from 'node:module';
import type dgram from 'node:dgram';

export interface SocketAddon {
  bindToDevice?: (fd: number, device: string) => void;
  forceRecvBuffer?: (fd: number, bytes: number) => number;
}

let addon: SocketAddon | null | undefined;

export function loadSocketAddon(): SocketAddon | undefined {
  if (addon === undefined) {
    try {
      const require = createRequire(import.meta.url);
      // src/util/ and dist/util/ are both two levels below the package root.
      addon = require(new URL('../../native/bindtodevice/build/Release/bindtodevice.node', import.meta.url).pathname) as SocketAddon;
    } catch {
      addon = null;
    }
  }
  return addon ?? undefined;
}

/** The OS file descriptor of a bound dgram socket, without touching the deprecated `_handle`. */
export function socketFd(sock: dgram.Socket): number | undefined {
  for (const sym of Object.getOwnPropertySymbols(sock)) {
    const state = (sock as unknown as Record<symbol, { handle?: { fd?: number } } | undefined>)[sym];
    const fd = state?.handle?.fd;
    if (typeof fd === 'number' && fd >= 0) return fd;
  }
  return undefined;
}

export interface RecvBuffer {
  /** Bytes asked for. */
  requested: number;
  /** What the kernel grants for packets (SO_RCVBUF reads back twice that; this is half of it). */
  effective: number;
  /** How it was set: plain SO_RCVBUF (capped by net.core.rmem_max) or SO_RCVBUFFORCE. */
  via: 'rcvbuf' | 'force';
  /** Set when the buffer is smaller than asked, with what to do about it. */
  warning?: string;
}

/**
 * Give a bound listening socket a deep receive buffer. Plain SO_RCVBUF is capped by
 * net.core.rmem_max (212992 bytes on a stock kernel, i.e. ~150 queued requests); when that cap
 * bites and we may (root or CAP_NET_ADMIN, which a server on ports 67/69 usually is), the addon's
 * SO_RCVBUFFORCE lifts it. Never throws: a shallow buffer means retransmissions, not failure.
 */
export function deepenRecvBuffer(sock: dgram.Socket, bytes: number, what: string): RecvBuffer {
  try {
    sock.setRecvBufferSize(bytes);
  } catch {
    /* reported below through what the kernel gives */
  }
  // SO_RCVBUF reads back twice the request (the kernel counts its bookkeeping): halve it.
  let effective = 0;
  try {
    effective = Math.floor(sock.getRecvBufferSize() / 2);
  } catch {
    /* not bound: nothing queues yet, so nothing to report but the shortfall */
  }
  if (effective >= bytes) return { requested: bytes, effective, via: 'rcvbuf' };
  const force = loadSocketAddon()?.forceRecvBuffer;
  const fd = socketFd(sock);
  let why = 'the socket options addon (native/bindtodevice) is not built';
  if (force && fd !== undefined) {
    try {
      effective = Math.floor(force(fd, bytes) / 2);
      if (effective >= bytes) return { requested: bytes, effective, via: 'force' };
      why = 'SO_RCVBUFFORCE was granted less';
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      why = err.code === 'EPERM' ? `${err.message}: lifting the cap needs root or CAP_NET_ADMIN` : err.message;
    }
  }
  return {
    requested: bytes,
    effective,
    via: 'rcvbuf',
    warning:
      `${what}: receive buffer is ${Math.round(effective / 1024)} KiB, not ${Math.round(bytes / 1024)} KiB (net.core.rmem_max caps it; ${why}); ` +
      `requests from many machines booting at once will be dropped and retried: raise it with sysctl -w net.core.rmem_max=${bytes}`,
  };
}
