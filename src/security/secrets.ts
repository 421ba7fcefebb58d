import type { BootEvent } from '../nodes/types.js';

/**
 * Attributes whose values are secrets. They are stored and handed to the node (through
 * /node/identity.tar, never through a nodescript's text), but every view of them — REST JSON,
 * `node/group/vnfs show|list|set`, the web UI, events and logs — says only whether one is set.
 * `node export` is the one place the value leaves: it is a backup the admin asked for.
 */
export const SECRET_ATTRS: ReadonlySet<string> = new Set(['root_password_hash']);

/** What a view shows instead of a secret's value. */
export const HIDDEN = '(set, hidden)';

/** key may be spelled as `node set` takes it: attr.KEY. */
export function isSecretAttr(key: string): boolean {
  return SECRET_ATTRS.has(key.toLowerCase().replace(/^attr\./, ''));
}

/** The value to display for an attribute: secrets are replaced by HIDDEN. */
export function shownValue(key: string, value: string): string {
  return isSecretAttr(key) ? HIDDEN : value;
}

/** A copy of attrs with every secret value replaced (keys kept: the view says it is set). */
export function redactAttrs(attrs: Record<string, string>): Record<string, string> {
  let out: Record<string, string> | undefined;
  for (const k of Object.keys(attrs)) {
    if (!isSecretAttr(k)) continue;
    out ??= { ...attrs };
    out[k] = HIDDEN;
  }
  return out ?? attrs;
}

/** 'set' or 'unset': the root password state a node boots with (its effective attributes). */
export function rootPasswordState(effective: Record<string, string>): 'set' | 'unset' {
  return effective.root_password_hash ? 'set' : 'unset';
}

/**
 * crypt(3) hashes in free text ($1$, $5$, $6$, yescrypt $y$/$gy$, scrypt $7$, bcrypt $2b$...):
 * a nodescript's stderr, a node's console line or an error message that quotes one must not
 * carry it into the event log.
 */
const CRYPT_HASH = /\$(?:1|5|6|y|gy|7|2[abxy]|sha1|md5)\$[./A-Za-z0-9$=,]{8,}/g;

export function redactText(s: string): string {
  return s.includes('$') ? s.replace(CRYPT_HASH, '<hash hidden>') : s;
}

function redactValue(v: unknown, key: string | undefined, depth: number): unknown {
  if (key !== undefined && isSecretAttr(key) && typeof v === 'string' && v !== '') return HIDDEN;
  if (typeof v === 'string') return redactText(v);
  if (depth > 4 || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => redactValue(x, undefined, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = redactValue(x, k, depth + 1);
  return out;
}

/**
 * The event as it may be stored, logged and streamed: secret attributes (by key, e.g. a
 * {key: 'root_password_hash', value} detail) and crypt hashes anywhere in its text replaced.
 * Cheap for the common case: details without a '$' or a secret key come back as they are.
 */
export function redactEvent(ev: BootEvent): BootEvent {
  if (!ev.detail) return ev;
  return mayHoldSecret(JSON.stringify(ev.detail)) ? redactDetail(ev) : ev;
}

/**
 * redactEvent, and the JSON text of the returned event's detail ('{}' when it has none): the
 * event log stores that text, so an event is serialised once, not twice (DHCP records four
 * or five events per exchange).
 */
export function redactEventJson(ev: BootEvent): { event: BootEvent; detailJson: string } {
  const json = JSON.stringify(ev.detail ?? {});
  if (!ev.detail || !mayHoldSecret(json)) return { event: ev, detailJson: json };
  const event = redactDetail(ev);
  return { event, detailJson: JSON.stringify(event.detail) };
}

/** Cheap pre-check on the detail's JSON: no '$' (crypt hashes) and no secret key, nothing to hide. */
function mayHoldSecret(json: string): boolean {
  if (json.includes('$')) return true;
  for (const k of SECRET_ATTRS) if (json.includes(k)) return true;
  return false;
}

function redactDetail(ev: BootEvent): BootEvent {
  const d = ev.detail!;
  const detail = redactValue(d, undefined, 0) as Record<string, unknown>;
  // A {key, value} pair naming a secret attribute.
  if (typeof detail.key === 'string' && isSecretAttr(detail.key) && typeof detail.value === 'string' && detail.value !== '') detail.value = HIDDEN;
  return { ...ev, detail };
}
