import { stateError } from '../nodes/names.js';

/**
 * The Perceus provisiond wire protocol, request side. One line:
 *   <state>[ key=value ...]     keys: nodeid=<MAC> (optional 01: prefix), nodename=<name>
 *   ping <token>                echoed back
 *   log <message>               recorded as an event
 * Pure and total: returns a request or a typed error, never throws.
 */
export type ProvisiondRequest =
  | { kind: 'state'; state: string; nodeid?: string; nodename?: string; params: Record<string, string> }
  | { kind: 'ping'; token: string }
  | { kind: 'log'; message: string };

export type ParseResult = { ok: true; req: ProvisiondRequest } | { ok: false; error: string };

export const PERCEUSD_START = '# PERCEUSD START\n';
export const PROVISIOND_END = '# PROVISIOND END\n';

/** Printable ASCII only: anything echoed back or logged must not carry control bytes. */
// eslint-disable-next-line no-control-regex
const NON_PRINTABLE = /[^\x20-\x7e]/;
const KEY_RE = /^[a-z][a-z0-9_]{0,31}$/;

export function parseRequestLine(raw: string): ParseResult {
  const line = raw.replace(/\r?\n$/, '').replace(/\r$/, '');
  if (NON_PRINTABLE.test(line.replace(/\t/g, ' '))) return { ok: false, error: 'request contains control or non-ASCII characters' };
  const trimmed = line.trim();
  if (!trimmed) return { ok: false, error: 'empty request: send "<state> nodeid=<MAC>"' };
  const [word, ...rest] = trimmed.split(/[ \t]+/);
  if (word === 'ping') {
    const token = trimmed.slice(4).trim();
    if (token.length > 256) return { ok: false, error: 'ping token longer than 256 characters' };
    return { ok: true, req: { kind: 'ping', token } };
  }
  if (word === 'log') {
    return { ok: true, req: { kind: 'log', message: trimmed.slice(3).trim() } };
  }
  const sErr = stateError(word!);
  if (sErr) return { ok: false, error: sErr };
  const params: Record<string, string> = {};
  for (const tok of rest) {
    const eq = tok.indexOf('=');
    if (eq <= 0) return { ok: false, error: `expected key=value, got "${tok.slice(0, 64)}"` };
    const key = tok.slice(0, eq).toLowerCase();
    if (!KEY_RE.test(key)) return { ok: false, error: `bad key "${tok.slice(0, 32)}"` };
    if (Object.hasOwn(params, key)) return { ok: false, error: `key ${key} given twice` };
    params[key] = tok.slice(eq + 1);
  }
  return {
    ok: true,
    req: {
      kind: 'state',
      state: word!,
      nodeid: params.nodeid || undefined,
      nodename: params.nodename || undefined,
      params,
    },
  };
}
