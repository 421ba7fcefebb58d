import type { Node } from '../nodes/types.js';

/** Site-wide values every nodescript sees (from the config, read once by the caller). */
export interface EnvContext {
  statedir: string;
  vnfsMethod: string;
  vnfsMaster: string;
  vnfsPrefix: string;
  path: string;
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

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
  /** The root-filesystem revision the node boots (issue 17); absent: a kernel+initrd VNFS. */
  image?: { name: string; rev?: number; root: boolean },
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
    // The bare name: a pinned revision (NAME@REV) goes to VNFSREV.
    VNFS: image?.name ?? node.vnfs.replace(/@[0-9]+$/, ''),
    // The resolved revision ('' for a kernel+initrd VNFS) and 1 when the VNFS has a root
    // filesystem; its manifest is $STATEDIR/vnfs/$VNFS/r$VNFSREV/manifest.json.
    VNFSREV: image?.root && image.rev !== undefined ? String(image.rev) : '',
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
  };
  for (const [k, v] of Object.entries(fixed)) env[k] = String(v ?? '').replace(/\0/g, '');
  return env;
}
