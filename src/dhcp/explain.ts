/**
 * `pxeherd explain <MAC>`: the DHCP answer a client would get, computed by the real handler
 * against a read-only view of the backend (nothing is registered, stored or logged).
 */
import type { Node } from '../nodes/types.js';
import { normalizeMac, macToBuffer } from '../nodes/mac.js';
import type { DhcpBackend, ExplainBackend } from './backend.js';
import { emptyPacket } from './codec.js';
import { DhcpHandler, type Trace } from './handler.js';
import { enc, formatOption, MESSAGE_NAMES, OPTION_NAMES, Opt } from './options.js';
import type { DhcpConfig } from './pools.js';
import { compileSiteOptions } from './site-options.js';

export interface ExplainClient {
  mac: string;
  /** Client architecture (option 93); with none the client is not a PXE client unless `ipxe`/`httpClient`. */
  arch?: number;
  ipxe?: boolean;
  /** Ask as in ProxyDHCP mode (whatever dhcp.mode says). */
  proxy?: boolean;
  httpClient?: boolean;
}

export interface Explanation {
  mac: string;
  node?: string;
  mode: 'full' | 'proxy' | 'off';
  /** Message type of the answer (OFFER, or none when the client would be ignored). */
  reply?: string;
  address?: string;
  addressSource: 'reservation' | 'lease' | 'pool' | 'none';
  options: Array<{ code: number; name: string; value: string }>;
  nextServer?: string;
  bootFile?: string;
  bootUrl?: string;
  reasons: string[];
}

export interface ExplainContext {
  config: DhcpConfig;
  serverAddress: string;
  httpPort: number;
  /** nodes.auto_register: what happens to an unknown MAC. */
  autoRegister: boolean;
  now?: number;
}

export function explain(backend: ExplainBackend, ctx: ExplainContext, client: ExplainClient): Explanation {
  const mac = normalizeMac(client.mac);
  const mode = client.proxy ? 'proxy' : ctx.config.mode;
  const reasons: string[] = [];
  const base: Explanation = { mac, mode, addressSource: 'none', options: [], reasons };
  if (mode === 'off') {
    reasons.push('dhcp.mode is off: pxeherd does not answer DHCP');
    return base;
  }
  const known = backend.findNode(mac);
  if (known) reasons.push(`known node ${known.name}${known.ip ? ` (fixed address ${known.ip})` : ''}`);
  // A read-only backend: lookups answer as the real one would, writes go nowhere.
  const shadow: DhcpBackend = {
    lookupNode: (m: string) => {
      const n = backend.findNode(m);
      if (n) return { node: n, registered: false };
      if (!ctx.autoRegister) return undefined;
      return { node: placeholder(m, ctx.now ?? Date.now()), registered: true };
    },
    reservationOwner: (ip) => backend.reservationOwner(ip),
    bound: () => undefined,
    leases: { ...backend.leases, byMac: (m) => backend.leases.byMac(m), byIp: (ip) => backend.leases.byIp(ip), active: (n) => backend.leases.active(n), putMany: () => undefined },
    events: { record: () => undefined },
    attrsFor: backend.attrsFor,
  };
  const handler = new DhcpHandler({ config: { ...ctx.config, mode }, serverAddress: ctx.serverAddress, httpPort: ctx.httpPort, backend: shadow });
  const now = ctx.now ?? Date.now();
  handler.load(now);
  const req = emptyPacket(1);
  req.xid = 0x7e57;
  macToBuffer(mac).copy(req.chaddr);
  req.options.set(Opt.MessageType, enc.u8(1));
  if (client.httpClient) req.options.set(Opt.VendorClass, enc.str(`HTTPClient:Arch:${String(client.arch ?? 16).padStart(5, '0')}:UNDI:003016`));
  else if (client.arch !== undefined) req.options.set(Opt.VendorClass, enc.str(`PXEClient:Arch:${String(client.arch).padStart(5, '0')}:UNDI:002001`));
  if (client.arch !== undefined) req.options.set(Opt.ClientArch, enc.u16(client.arch));
  if (client.ipxe) req.options.set(Opt.UserClass, enc.str('iPXE'));
  // Ask for every site option, so the answer shows them (a real client gets those it lists).
  const site = new Set<number>([ctx.config.options ?? {}, ...ctx.config.subnets.map((s) => s.options ?? {})].flatMap((o) => [...compileSiteOptions(o).keys()]));
  if (site.size) {
    req.options.set(Opt.ParamRequestList, Buffer.from([Opt.SubnetMask, Opt.Router, Opt.DNS, Opt.Hostname, Opt.DomainName, Opt.Broadcast, ...site]));
    reasons.push(`site options (dhcp.options) go only to clients that list them in option 55; shown here as if requested: ${[...site].join(', ')}`);
  }
  const trace: Trace = { reasons };
  const out = handler.handle(req, { via: 'dhcp', from: { address: '0.0.0.0', port: 68 }, now, trace });
  const reply = out.replies[0]?.packet;
  if (!reply) return { ...base, addressSource: trace.addressSource ?? 'none', node: known?.name };
  const options: Explanation['options'] = [];
  for (const [code, v] of reply.options) options.push({ code, name: OPTION_NAMES[code] ?? `option-${code}`, value: formatOption(code, v) });
  return {
    mac,
    node: known?.name ?? (ctx.autoRegister ? '(new node, named on first contact)' : undefined),
    mode,
    reply: MESSAGE_NAMES[reply.options.get(Opt.MessageType)?.[0] ?? 0],
    address: reply.yiaddr !== '0.0.0.0' ? reply.yiaddr : undefined,
    addressSource: trace.addressSource ?? 'none',
    options,
    nextServer: reply.siaddr !== '0.0.0.0' ? reply.siaddr : undefined,
    bootFile: reply.file || undefined,
    bootUrl: trace.boot?.bootUrl,
    reasons,
  };
}

function placeholder(mac: string, now: number): Node {
  return { mac, name: '(new)', group: '', vnfs: '', enabled: true, debug: false, state: '', ip: '', lastContact: null, boot: 'provision', attrs: {}, createdAt: now, updatedAt: now };
}

export function formatExplanation(e: Explanation): string {
  const lines: string[] = [];
  lines.push(`client      ${e.mac}${e.node ? `  (${e.node})` : ''}`);
  lines.push(`dhcp mode   ${e.mode}`);
  lines.push(`answer      ${e.reply ?? 'none (ignored)'}`);
  if (e.mode !== 'proxy') lines.push(`address     ${e.address ?? '-'}  [${e.addressSource}]`);
  if (e.nextServer) lines.push(`next server ${e.nextServer}`);
  if (e.bootFile) lines.push(`boot file   ${e.bootFile}`);
  if (e.bootUrl) lines.push(`boot URL    ${e.bootUrl}`);
  return lines.concat(explainTail(e.options, e.reasons)).join('\n') + '\n';
}

/** One option as `explain` prints it: code, name, value. */
export function optionLine(o: { code: number; name: string; value: string }): string {
  return `  ${String(o.code).padStart(3)} ${o.name.padEnd(24)} ${o.value}`;
}

/** The options sent and the reasons, the end of every explanation (DHCPv4 and DHCPv6). */
export function explainTail(options: { code: number; name: string; value: string }[], reasons: string[]): string[] {
  const lines: string[] = [];
  if (options.length) lines.push('options', ...options.map(optionLine));
  if (reasons.length) lines.push('why', ...reasons.map((r) => `  - ${r}`));
  return lines;
}

