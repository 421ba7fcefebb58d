import type { EventSink, Node } from '../nodes/types.js';
import type { NodeTokens } from './tokens.js';
import { peerIp } from '../util/net.js';

export type AuthorizeResult = { ok: true } | { ok: false; status: 403; reason: string };

/** What the check needs from a request, whichever protocol carried it. */
export interface AuthorizeInput {
  /** token= as sent (undefined when absent, null when repeated/ambiguous). */
  token: string | undefined | null;
  /** Peer address of the connection (IPv4-mapped IPv6 accepted). */
  ip?: string;
  state: string;
  /** True when this very request registered the node (discovery, state init). */
  registered: boolean;
}

export interface AuthorizerOptions {
  /** security.node_tokens; off = allow everything (trusted provisioning LAN). */
  enabled: boolean;
  tokens: NodeTokens;
  events: EventSink;
}

/**
 * The decision, shared by HTTP /provision and the provisiond TCP protocol:
 *  - tokens off: allow;
 *  - a node this request just registered (unknown MAC asking for init, no token yet): allow;
 *  - otherwise a valid, unexpired token for the node's MAC is required, and when the node's
 *    address is known the request must come from it.
 * A refusal says why, and is recorded as `security.denied`.
 */
export function checkNode(opts: AuthorizerOptions, node: Node, input: AuthorizeInput): AuthorizeResult {
  if (!opts.enabled) return { ok: true };
  if (input.registered && input.state === 'init') return { ok: true };
  const deny = (reason: string): AuthorizeResult => {
    opts.events.record({ mac: node.mac, node: node.name, kind: 'security.denied', detail: { reason, state: input.state, ip: peerIp(input.ip) ?? null } });
    return { ok: false, status: 403, reason: `node ${node.name} (${node.mac}): ${reason}` };
  };
  if (input.token === null) return deny('token= given more than once');
  if (input.token === undefined || input.token === '') {
    return deny('no token: the node must boot through pxeherd (its iPXE script passes pxeherd.token=), or turn security.node_tokens off');
  }
  const v = opts.tokens.verifyToken(node.mac, input.token);
  if (!v.ok) return deny(v.reason);
  const ip = peerIp(input.ip);
  // node.ip is the IPv4 address; a request over IPv6 is judged by its token alone.
  if (node.ip !== '' && ip !== undefined && !ip.includes(':') && ip !== node.ip) {
    return deny(`request came from ${ip}, but the node's address is ${node.ip}`);
  }
  return { ok: true };
}

function single(v: unknown): string | undefined | null {
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : null;
}

/**
 * The hook for provisionRouter (src/provision/http.ts):
 * `(node, req, {registered, state}) => {ok:true} | {ok:false, status:403, reason}`.
 * Only `req.query` and the socket's peer address are read.
 */
export function httpAuthorizer(opts: AuthorizerOptions) {
  return (node: Node, req: { query: Record<string, unknown>; socket: { remoteAddress?: string } }, ctx: { registered: boolean; state: string }): AuthorizeResult =>
    checkNode(opts, node, { token: single(req.query.token), ip: req.socket.remoteAddress, state: ctx.state, registered: ctx.registered });
}

/** The hook for ProvisiondServer (src/provisiond/server.ts): token= from the request line. */
export function provisiondAuthorizer(opts: AuthorizerOptions) {
  return (node: Node, ctx: { params: Record<string, string>; ip?: string; registered: boolean; state: string }): AuthorizeResult =>
    checkNode(opts, node, { token: ctx.params.token, ip: ctx.ip, state: ctx.state, registered: ctx.registered });
}
