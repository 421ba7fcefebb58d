import { InvalidInput } from '../nodes/mac.js';
import type { Node } from '../nodes/types.js';
import type { SshTarget } from './ssh.js';
import type { KeyPair } from './keys.js';
import { keptHostKeys } from '../stateless/identity.js';

export function parsePort(v: string | undefined, attr: string, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidInput(`${attr} must be a port number 1-65535, not "${v}"`, attr);
  return n;
}

/**
 * How pxeherd reaches a node itself: attributes `ssh_host` (default: the node's address),
 * `ssh_port` (22), `ssh_user` (root), always with the pxeherd key. With `statedir`, a node
 * whose host keys the master keeps (stateless nodes: <statedir>/hostkeys/<node>/) must
 * present one of them.
 */
export function nodeTarget(node: Node, attrs: Record<string, string>, key: KeyPair, statedir?: string): SshTarget {
  const kept = statedir ? keptHostKeys(statedir, node.name) : [];
  const host = attrs.ssh_host || node.ip;
  if (!host) throw new InvalidInput(`node ${node.name} has no address: set ip or attr.ssh_host`, 'ssh_host');
  return {
    host,
    port: parsePort(attrs.ssh_port, 'ssh_port', 22),
    user: attrs.ssh_user || 'root',
    privateKey: key.privateKey,
    credential: `key ${key.privatePath}`,
    ...(kept.length ? { hostKeys: kept, hostKeysFrom: `${statedir}/hostkeys/${node.name}/` } : {}),
  };
}
