/**
 * MAC address parsing. Accepts the spellings admins paste from switches, BMCs and
 * DHCP logs, and stores one canonical form: lower-case, colon separated.
 */
export type MacResult = { ok: true; mac: string } | { ok: false; error: string };

const HEX12 = /^[0-9a-f]{12}$/;

export function parseMac(input: string): MacResult {
  const raw = String(input ?? '').trim().toLowerCase();
  let s = raw;
  // pxelinux and Perceus prefix the hardware type: 01-aa-bb-... or 01:aa:bb:...
  if (/^01[:-]([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/.test(s)) s = s.slice(3);
  let hex: string | undefined;
  if (/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(s) || /^([0-9a-f]{2}-){5}[0-9a-f]{2}$/.test(s)) {
    hex = s.replace(/[:-]/g, '');
  } else if (/^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/.test(s)) {
    hex = s.replace(/\./g, '');
  } else if (HEX12.test(s)) {
    hex = s;
  }
  if (!hex) {
    return {
      ok: false,
      error: `invalid MAC address "${input}": use aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabb.ccdd.eeff`,
    };
  }
  return { ok: true, mac: hex.match(/../g)!.join(':') };
}

const CANONICAL_MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** parseMac that throws a UsageError-friendly Error; for call sites that already validate. */
export function normalizeMac(input: string): string {
  // Already canonical (every MAC the DHCP server passes on): as parseMac would return it.
  if (typeof input === 'string' && input.length === 17 && CANONICAL_MAC.test(input)) return input;
  const r = parseMac(input);
  if (!r.ok) throw new InvalidInput(r.error);
  return r.mac;
}

export function isMac(input: string): boolean {
  return parseMac(input).ok;
}

/** Bytes of a canonical MAC, for packet codecs. */
export function macToBuffer(mac: string): Buffer {
  return Buffer.from(normalizeMac(mac).replace(/:/g, ''), 'hex');
}

export function macFromBuffer(buf: Buffer, offset = 0): string {
  return Array.from(buf.subarray(offset, offset + 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Error for input the user can fix: CLI exits 2, API answers 400. */
export class InvalidInput extends Error {
  constructor(message: string, readonly field?: string) {
    super(message);
    this.name = 'InvalidInput';
  }
}
