import https from 'node:https';
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';

/**
 * How a BMC's certificate is checked. BMCs mostly carry self-signed certificates, so besides
 * a CA file there is pinning: the SHA-256 fingerprint of the BMC's own certificate. `insecure`
 * (no check at all) is only ever what an attribute asked for.
 */
export interface TlsPolicy {
  /** PEM text of the CA(s) that signed the BMC's certificate. */
  ca?: string;
  /** SHA-256 fingerprint of the BMC's certificate: 64 hex digits, colons optional. */
  fingerprint?: string;
  insecure?: boolean;
}

export interface HttpsRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  host: string;
  port: number;
  path: string;
  headers: Record<string, string>;
  body?: string;
  tls: TlsPolicy;
  timeoutMs: number;
}

export interface HttpsResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export type HttpsRequester = (req: HttpsRequest) => Promise<HttpsResponse>;

export class TlsError extends Error {}

/** "AB:cd:..." or "abcd..." -> "ABCD..."; undefined when it is not 32 bytes of hex. */
export function normalizeFingerprint(v: string): string | undefined {
  const hex = v.replace(/^sha256[:=]/i, '').replace(/[:\s]/g, '').toUpperCase();
  return /^[0-9A-F]{64}$/.test(hex) ? hex : undefined;
}

/**
 * The node:https options for a policy. With a pin, the chain is not checked (a self-signed BMC
 * certificate has none) but the connection is refused unless the certificate is the pinned one.
 */
export function tlsOptions(p: TlsPolicy): { rejectUnauthorized: boolean; ca?: string; checkServerIdentity?: () => undefined } {
  if (p.insecure) return { rejectUnauthorized: false, checkServerIdentity: () => undefined };
  if (p.fingerprint) return { rejectUnauthorized: false, checkServerIdentity: () => undefined };
  // A BMC is usually reached by address and its certificate names the address or a host name
  // the operator gave it; Node checks the name against what we dialled.
  return p.ca ? { rejectUnauthorized: true, ca: p.ca } : { rejectUnauthorized: true };
}

/** Compare the peer certificate against the pin; the message says what to put in the attribute. */
export function checkPin(peerFingerprint256: string | undefined, pin: string): string | undefined {
  const got = peerFingerprint256 ? normalizeFingerprint(peerFingerprint256) : undefined;
  if (!got) return 'the BMC presented no certificate';
  if (got !== normalizeFingerprint(pin)) return `certificate fingerprint ${got} is not the pinned ${normalizeFingerprint(pin) ?? pin}: if the BMC's certificate was replaced on purpose, set bmc_fingerprint to the new one`;
  return undefined;
}

/**
 * One HTTPS request with a deadline for the whole exchange; the body is read up to 4 MiB. The
 * TLS connection is made and checked (pin included) before a single byte of the request, with
 * its credentials, is written.
 */
export const httpsRequest: HttpsRequester = (req) =>
  new Promise((resolve, reject) => {
    let settled = false;
    let sock: TLSSocket | undefined;
    const timer = setTimeout(() => fail(new Error(`no answer within ${req.timeoutMs / 1000} s`)), req.timeoutMs);
    function fail(e: Error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock?.destroy();
      reject(e);
    }
    const o = tlsOptions(req.tls);
    sock = tls.connect({ host: req.host, port: req.port, servername: net.isIP(req.host) ? undefined : req.host, ...o });
    sock.on('error', (e) => fail(e));
    sock.once('secureConnect', () => {
      if (req.tls.fingerprint && !req.tls.insecure) {
        const why = checkPin(sock!.getPeerCertificate()?.fingerprint256, req.tls.fingerprint);
        if (why) return fail(new TlsError(why));
      }
      const headers: Record<string, string> = { ...req.headers };
      if (req.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(req.body));
      const r = https.request({ method: req.method, host: req.host, port: req.port, path: req.path, headers, createConnection: () => sock! });
      r.on('error', (e) => fail(e));
      r.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size > 4 << 20) fail(new Error('answer larger than 4 MiB'));
          else chunks.push(d);
        });
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const h: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
          sock?.end();
          resolve({ status: res.statusCode ?? 0, headers: h, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (e) => fail(e));
      });
      r.end(req.body);
    });
  });
