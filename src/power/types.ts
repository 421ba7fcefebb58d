import type { Node } from '../nodes/types.js';
import type { KeyPair } from '../remote/keys.js';
import type { SshRunner } from '../remote/ssh.js';
import type { Redactor } from '../remote/secrets.js';
import type { LocalRunner } from './local.js';
import type { HttpsRequester } from './https.js';

/** `pxe`: make the next boot (once) a network boot, e.g. `ipmitool chassis bootdev pxe`. */
export type PowerAction = 'on' | 'off' | 'cycle' | 'status' | 'pxe';
export const POWER_ACTIONS: readonly PowerAction[] = ['on', 'off', 'cycle', 'status', 'pxe'];
export type PowerDriverName = 'ssh' | 'ipmi' | 'command' | 'redfish';
export const POWER_DRIVERS: readonly PowerDriverName[] = ['ssh', 'ipmi', 'command', 'redfish'];

/** One node's answer; `error` and `output` have had every secret replaced. */
export interface PowerOutcome {
  node: string;
  action: PowerAction;
  driver: string;
  ok: boolean;
  /** For `status` (and when a driver prints it): what the BMC reported. */
  power?: 'on' | 'off' | 'unknown';
  output: string;
  error?: string;
  /** The driver has no way to do this action (e.g. `pxe` without power_pxe_cmd): nothing was done. */
  skipped?: boolean;
  ms: number;
}

/** What a driver gets: the node, its merged attributes, and the edges it may touch. */
export interface DriverCall {
  node: Node;
  attrs: Record<string, string>;
  action: PowerAction;
  /** Template values: the attributes (minus secrets) plus node, mac, ip, group, action, bmc_*. */
  vars: Record<string, string>;
  timeoutMs: number;
  statedir: string;
  key: () => KeyPair;
  ssh: SshRunner;
  local: LocalRunner;
  /** Secrets read for this call are added here so the service can scrub any text. */
  redactor: Redactor;
  /** HTTPS for the redfish driver (tests of request building pass their own). */
  https: HttpsRequester;
}

export interface DriverResult {
  ok: boolean;
  output: string;
  error?: string;
  skipped?: boolean;
  /** A driver that knows the power state without parsing text (redfish's PowerState). */
  power?: 'on' | 'off' | 'unknown';
}

export type PowerDriver = (call: DriverCall) => Promise<DriverResult>;
