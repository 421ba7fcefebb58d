import type { Node } from '../nodes/types.js';
import { resolveVnfsRef } from '../images/resolve.js';

/** The image a node boots: its revision ('' / undefined for a kernel+initrd VNFS) and whether it has a root filesystem. */
export interface ImageEnv {
  rev?: number;
  root: boolean;
  /** INSTALL_* variables of a node installed to disk (src/install/env.ts). */
  install?: Record<string, string>;
}

/** Site-wide values every nodescript sees (from the config, read once by the caller). */
export interface EnvContext {
  statedir: string;
  vnfsMethod: string;
  vnfsMaster: string;
  vnfsPrefix: string;
  path: string;
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The variables every nodescript gets besides ATTR_* and INSTALL_* (set below, in this order). */
export const FIXED_VARS = [
  'STATE', 'NODENAME', 'NODEID', 'VNFS', 'VNFSREV', 'VNFSROOT', 'GROUPNAME', 'ENABLED', 'DEBUG', 'IPADDR',
  'STATEDIR', 'VNFSMETHOD', 'VNFSMASTER', 'VNFSPREFIX', 'PATH', 'NODETOKEN',
] as const;

const ATTR_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/**
 * The complete, clean environment of a nodescript on the master (nothing is inherited from
 * the server process: no secrets, no NODE_OPTIONS). `attrs` are the merged attributes (group
 * overridden by node). `ip` is the node's current address; Perceus always left IPADDR empty.
 * Keys that are not valid variable names and values holding NUL (which execve cannot pass)
 * are left out rather than failing the whole request.
 */
export function scriptEnv(
  node: Pick<Node, 'mac' | 'name' | 'group' | 'vnfs' | 'enabled' | 'debug' | 'ip'>,
  state: string,
  attrs: Record<string, string>,
  ctx: EnvContext,
  ip?: string,
  token?: string,
  image?: ImageEnv,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) {
    if (!ATTR_KEY_RE.test(k)) continue;
    const s = String(v ?? '');
    if (s.includes('\0')) continue;
    env[`ATTR_${k.toUpperCase()}`] = s;
  }
  // Fixed variables last, so no attribute can shadow them.
  const fixed: Record<string, string> = {
    STATE: state,
    NODENAME: node.name,
    NODEID: node.mac,
    // The bare name even for a pinned node (NAME@REV): scripts build paths from it.
    VNFS: resolveVnfsRef(node.vnfs).name,
    // The resolved revision ('' without a root filesystem); the manifest is at
    // $STATEDIR/vnfs/$VNFS/r$VNFSREV/manifest.json.
    VNFSREV: image?.rev !== undefined ? String(image.rev) : '',
    VNFSROOT: image?.root ? '1' : '',
    GROUPNAME: node.group,
    ENABLED: node.enabled ? '1' : '0',
    DEBUG: node.debug ? '1' : '0',
    IPADDR: ip ?? node.ip ?? '',
    STATEDIR: ctx.statedir,
    VNFSMETHOD: ctx.vnfsMethod,
    VNFSMASTER: ctx.vnfsMaster,
    VNFSPREFIX: ctx.vnfsPrefix,
    PATH: ctx.path || DEFAULT_PATH,
    // A fresh node token for this request ('' when security.node_tokens is off): lets a
    // script hand the node a token for later requests (the check-in loop outlives the boot's).
    NODETOKEN: token ?? '',
    ...(image?.install ?? {}),
  };
  for (const [k, v] of Object.entries(fixed)) env[k] = String(v ?? '').replace(/\0/g, '');
  return env;
}
