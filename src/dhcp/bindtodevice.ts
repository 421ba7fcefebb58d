/**
 * The optional native addon's SO_BINDTODEVICE (src/util/sockopts.ts). Absent (not built, not
 * Linux) -> undefined, and the server answers on all interfaces with a warning.
 */
import { loadSocketAddon } from '../util/sockopts.js';
import type { BindToDevice } from './server.js';

export function loadBindToDevice(): BindToDevice | undefined {
  const f = loadSocketAddon()?.bindToDevice;
  return typeof f === 'function' ? f : undefined;
}
