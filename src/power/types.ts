import type { Node } from '../nodes/types.js';
import type { KeyPair } from '../remote/keys.js';
import type { SshRunner } from '../remote/ssh.js';
import type { Redactor } from '../remote/secrets.js';
import type { LocalRunner } from './local.js';

export type PowerAction = 'on' | 'off' | 'cycle' | 'status';
export const POWER_ACTIONS: readonly PowerAction[] = ['on', 'off', 'cycle', 'status'];
export type PowerDriverName = 'ssh' | 'ipmi' | 'command';
export const POWER_DRIVERS: readonly PowerDriverName[] = ['ssh', 'ipmi', 'command'];

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
}

export interface DriverResult {
  ok: boolean;
  output: string;
  error?: string;
}

export type PowerDriver = (call: DriverCall) => Promise<DriverResult>;
