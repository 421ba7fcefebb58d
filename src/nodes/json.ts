import type { Group, Lease, Node, Vnfs, BootEvent } from './types.js';
import { redactAttrs, redactEvent } from '../security/secrets.js';

/**
 * The stable JSON shapes of `--json` output and the REST API. Keys are snake_case, times
 * are ISO 8601 strings (or null), and new keys may be added but none renamed or removed.
 */
export function nodeJson(n: Node, extra: { stale?: boolean; hardware?: unknown; health?: unknown; checkinInterval?: number; rootPassword?: 'set' | 'unset' } = {}) {
  return {
    name: n.name,
    mac: n.mac,
    group: n.group,
    vnfs: n.vnfs,
    enabled: n.enabled,
    debug: n.debug,
    state: n.state,
    ip: n.ip,
    last_contact: n.lastContact === null ? null : new Date(n.lastContact).toISOString(),
    boot: n.boot,
    // Secrets (root_password_hash) show as "(set, hidden)", never their value.
    attrs: sortKeys(redactAttrs(n.attrs)),
    created: new Date(n.createdAt).toISOString(),
    updated: new Date(n.updatedAt).toISOString(),
    ...(extra.stale !== undefined ? { stale: extra.stale } : {}),
    ...(extra.hardware !== undefined ? { hardware: extra.hardware } : {}),
    ...(extra.health !== undefined ? { health: extra.health } : {}),
    ...(extra.checkinInterval !== undefined ? { checkin_interval: extra.checkinInterval } : {}),
    ...(extra.rootPassword !== undefined ? { root_password: extra.rootPassword } : {}),
  };
}

export function groupJson(g: Group & { nodes?: number }) {
  return { name: g.name, nodes: g.nodes ?? 0, attrs: sortKeys(redactAttrs(g.attrs)) };
}

export function vnfsJson(v: Vnfs & { nodes?: number }) {
  return { name: v.name, kernel: v.kernel, initrd: v.initrd, cmdline: v.cmdline, nodes: v.nodes ?? 0, attrs: sortKeys(redactAttrs(v.attrs)), currentRev: v.currentRev ?? null, arch: v.arch ?? 'x86_64' };
}

export function leaseJson(l: Lease) {
  return { mac: l.mac, ip: l.ip, state: l.state, hostname: l.hostname, subnet: l.subnet, expires: new Date(l.expiresAt).toISOString() };
}

export function eventJson(e: BootEvent) {
  e = redactEvent(e);
  // `server`: which server recorded it, on PostgreSQL where several do (StoredEvent.serverId).
  const server = (e as { serverId?: string }).serverId;
  return { id: e.id ?? null, time: new Date(e.time ?? 0).toISOString(), mac: e.mac ?? null, node: e.node ?? null, kind: e.kind, detail: e.detail ?? {}, ...(server ? { server } : {}) };
}

function sortKeys(o: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(o).sort()) out[k] = o[k]!;
  return out;
}
