/**
 * `pxeherd explain <MAC> --v6`: the DHCPv6 answer a client would get, computed by the real
 * handler from the Solicit such a client sends, against a read-only view of the backend
 * (nothing is registered, stored or logged). The answer is shown decoded, option by option.
 */
import type { Node } from '../nodes/types.js';
import { normalizeMac } from '../nodes/mac.js';
import type { BootFiles } from '../dhcp/boot.js';
import type { Dhcp6Backend, Lease6Store } from './backend.js';
import { decode, encode, MSG_NAMES, MsgType, OPTION6_NAMES, type Dhcp6Message, type Dhcp6Option } from './codec.js';
import { Dhcp6Handler, type Trace6 } from './handler.js';
import { duidLl, enc6, first, formatOption6, iaNaOption, Opt6, parseIaNa } from './options.js';
import type { Dhcp6Config } from './pool.js';
import { explainTail, optionLine } from '../dhcp/explain.js';

export interface Explain6Client {
  mac: string;
  /** Client architecture (option 61): 7 UEFI x64 PXE, 16 UEFI x64 HTTP... */
  arch?: number;
  ipxe?: boolean;
  /** UEFI HTTP boot firmware (vendor class HTTPClient). */
  httpClient?: boolean;
}

export interface Explanation6 {
  mac: string;
  node?: string;
  mode: 'full' | 'off';
  /** ADVERTISE (or none when the client would be ignored). */
  reply?: string;
  address?: string;
  addressSource: 'lease' | 'pool' | 'none';
  /** The Solicit that was asked, decoded. */
  request: Array<{ code: number; name: string; value: string }>;
  options: Array<{ code: number; name: string; value: string }>;
  bootUrl?: string;
  reasons: string[];
}

export interface Explain6Context {
  config: Dhcp6Config;
  serverAddress: string;
  serverDuid: Buffer;
  httpPort: number;
  bootFiles: BootFiles;
  autoRegister: boolean;
  findNode(mac: string): Node | undefined;
  leases: Pick<Lease6Store, 'byKey' | 'byIp' | 'byDuid' | 'forMac' | 'active'>;
  now?: number;
}

const decoded = (options: Dhcp6Option[]) => options.map((o) => ({ code: o.code, name: OPTION6_NAMES[o.code] ?? `option-${o.code}`, value: formatOption6(o) }));

/** The Solicit a client of this kind sends (DUID-LL of its MAC, one IA_NA, IAID 1). */
export function solicitFor(c: Explain6Client): Dhcp6Message {
  const options: Dhcp6Option[] = [
    { code: Opt6.ClientId, data: duidLl(c.mac) },
    iaNaOption(1, 0, 0, []),
    { code: Opt6.Oro, data: Buffer.concat([Opt6.DnsServers, Opt6.DomainList, Opt6.BootfileUrl, Opt6.BootfileParam].map(enc6.u16)) },
  ];
  if (c.arch !== undefined || c.httpClient) options.push({ code: Opt6.ClientArchType, data: enc6.u16(c.arch ?? 16) });
  const cls = c.httpClient ? 'HTTPClient' : c.arch !== undefined ? 'PXEClient' : undefined;
  if (cls) options.push({ code: Opt6.VendorClass, data: Buffer.concat([enc6.u32(343), enc6.opaqueList([`${cls}:Arch:${String(c.arch ?? 16).padStart(5, '0')}:UNDI:003016`])]) });
  if (c.ipxe) options.push({ code: Opt6.UserClass, data: enc6.opaqueList(['iPXE']) });
  return { type: MsgType.Solicit, xid: 0x7e57, options };
}

export function explain6(ctx: Explain6Context, client: Explain6Client): Explanation6 {
  const mac = normalizeMac(client.mac);
  const reasons: string[] = [];
  const req = solicitFor({ ...client, mac });
  const base: Explanation6 = { mac, mode: ctx.config.mode, addressSource: 'none', request: decoded(req.options), options: [], reasons };
  if (ctx.config.mode === 'off') {
    reasons.push('dhcp6.mode is off: pxeherd does not answer DHCPv6');
    return base;
  }
  const known = ctx.findNode(mac);
  if (known) reasons.push(`known node ${known.name}`);
  const now = ctx.now ?? Date.now();
  const shadow: Dhcp6Backend = {
    lookupNode: (m) => {
      const n = ctx.findNode(m);
      if (n) return { node: n, registered: false };
      if (!ctx.autoRegister) return undefined;
      return { node: placeholder(m, now), registered: true };
    },
    bound: () => undefined,
    leases: { byKey: (d, i, m) => ctx.leases.byKey(d, i, m), byIp: (ip) => ctx.leases.byIp(ip), byDuid: (d) => ctx.leases.byDuid(d), forMac: (m) => ctx.leases.forMac(m), active: (n) => ctx.leases.active(n), putMany: () => undefined },
    events: { record: () => undefined },
  };
  const handler = new Dhcp6Handler({ config: ctx.config, serverDuid: ctx.serverDuid, serverAddress: ctx.serverAddress, httpPort: ctx.httpPort, bootFiles: ctx.bootFiles, backend: shadow });
  handler.load(now);
  const trace: Trace6 = { reasons };
  // Through the codec both ways, as on the wire.
  const wire = decode(encode(req));
  if (!wire.ok) throw new Error(`explain --v6 built an undecodable Solicit: ${wire.detail}`);
  const out = handler.handle(wire.packet, { from: { address: eui64LinkLocal(mac), port: 546 }, now, trace });
  const replyMsg = out.replies[0]?.message;
  if (!replyMsg) return { ...base, node: known?.name, addressSource: trace.addressSource ?? 'none' };
  const reply = decode(encode(replyMsg));
  const msg = (reply.ok ? reply.packet : replyMsg) as Dhcp6Message;
  const ia = first(msg.options, Opt6.IaNa);
  return {
    ...base,
    node: known?.name ?? (ctx.autoRegister ? '(new node, named on first contact)' : undefined),
    reply: MSG_NAMES[msg.type],
    address: ia ? parseIaNa(ia).addresses[0]?.address : undefined,
    addressSource: trace.addressSource ?? 'none',
    options: decoded(msg.options),
    bootUrl: first(msg.options, Opt6.BootfileUrl)?.toString('utf8'),
  };
}

/** fe80::/64 with the modified EUI-64 of the MAC: where the client's Solicit would come from. */
function eui64LinkLocal(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  const g = [(((b[0]! ^ 2) << 8) | b[1]!), ((b[2]! << 8) | 0xff), (0xfe00 | b[3]!), ((b[4]! << 8) | b[5]!)];
  return `fe80::${g.map((x) => x.toString(16)).join(':')}`;
}

function placeholder(mac: string, now: number): Node {
  return { mac, name: '(new)', group: '', vnfs: '', enabled: true, debug: false, state: '', ip: '', lastContact: null, boot: 'provision', attrs: {}, createdAt: now, updatedAt: now };
}

export function formatExplanation6(e: Explanation6): string {
  const lines: string[] = [];
  lines.push(`client      ${e.mac}${e.node ? `  (${e.node})` : ''}`);
  lines.push(`dhcp6 mode  ${e.mode}`);
  lines.push('request     SOLICIT');
  for (const o of e.request) lines.push(optionLine(o));
  lines.push(`answer      ${e.reply ?? 'none (ignored)'}`);
  lines.push(`address     ${e.address ?? '-'}  [${e.addressSource}]`);
  if (e.bootUrl) lines.push(`boot URL    ${e.bootUrl}`);
  return lines.concat(explainTail(e.options, e.reasons)).join('\n') + '\n';
}
