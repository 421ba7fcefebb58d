/**
 * Loads the optional native addon that restricts a UDP socket to one interface
 * (native/bindtodevice/bindtodevice.c; build: make -C native/bindtodevice). Absent (not built,
 * not Linux) -> undefined, and the server answers on all interfaces with a warning.
 */
import { createRequire } from 'node:module';
import type dgram from 'node:dgram';
import type { BindToDevice } from './server.js';

export function loadBindToDevice(): BindToDevice | undefined {
  try {
    const require = createRequire(import.meta.url);
    // src/dhcp/ and dist/dhcp/ are both two levels below the package root.
    const mod = require(new URL('../../native/bindtodevice/build/Release/bindtodevice.node', import.meta.url).pathname) as { bindToDevice?: BindToDevice };
    return typeof mod.bindToDevice === 'function' ? mod.bindToDevice : undefined;
  } catch {
    return undefined;
  }
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
