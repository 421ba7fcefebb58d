/**
 * Hostile requests from inside the client namespace, for the reliability suite: a list of
 * probes in, what the server answered out (status and the whole body, so the caller can look
 * for leaked bytes).
 *
 *   node --import tsx bench/storm-probe.ts '<json Probe[]>'   -> file named by "out"
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tftpGet, TftpClientError } from '../src/tftp/client.js';

export type Probe =
  | { kind: 'http'; host: string; port: number; path: string; local?: string }
  | { kind: 'tcp'; host: string; port: number; line: string; local?: string }
  | { kind: 'tftp'; host: string; file: string; options?: Record<string, string> };

export interface ProbeResult {
  probe: Probe;
  /** HTTP status, 0 for TCP, TFTP error code (or 0 when the file came). */
  status: number;
  body: string;
  /** TFTP: the options the server's OACK granted. */
  oack?: Record<string, string>;
  error?: string;
}

function httpProbe(p: Extract<Probe, { kind: 'http' }>): Promise<ProbeResult> {
  return new Promise((resolve) => {
    // The path goes on the wire exactly as written (no URL normalisation of ../ or %2e).
    const req = http.request({ host: p.host, port: p.port, path: p.path, method: 'GET', agent: false, localAddress: p.local, timeout: 15_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ probe: p, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('latin1') }));
      res.on('error', (e) => resolve({ probe: p, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('latin1'), error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ probe: p, status: -1, body: '', error: e.message }));
    req.end();
  });
}

function tcpProbe(p: Extract<Probe, { kind: 'tcp' }>): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const s = net.connect({ host: p.host, port: p.port, localAddress: p.local });
    const chunks: Buffer[] = [];
    s.setTimeout(15_000, () => s.destroy(new Error('timeout')));
    s.on('connect', () => s.write(p.line));
    s.on('data', (c) => chunks.push(c));
    s.on('close', () => resolve({ probe: p, status: 0, body: Buffer.concat(chunks).toString('latin1') }));
    s.on('error', (e) => resolve({ probe: p, status: -1, body: Buffer.concat(chunks).toString('latin1'), error: e.message }));
  });
}

async function tftpProbe(p: Extract<Probe, { kind: 'tftp' }>): Promise<ProbeResult> {
  try {
    // 1 s and 10 tries (a PXE ROM waits longer): a freshly started server on a loaded 2-core
    // machine answered its first RRQ after more than the 2.5 s of the former 500 ms x 4.
    const g = await tftpGet({ host: p.host, port: 69, file: p.file, options: p.options, timeoutMs: 1000, retries: 10, deadlineMs: 15_000 });
    return { probe: p, status: 0, body: g.data.toString('latin1'), oack: g.oack };
  } catch (e) {
    return { probe: p, status: e instanceof TftpClientError ? e.code : -1, body: '', error: (e as Error).message };
  }
}

export async function runProbes(probes: Probe[]): Promise<ProbeResult[]> {
  const out: ProbeResult[] = [];
  for (const p of probes) out.push(await (p.kind === 'http' ? httpProbe(p) : p.kind === 'tcp' ? tcpProbe(p) : tftpProbe(p)));
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { probes, out } = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as { probes: Probe[]; out: string };
  runProbes(probes).then((r) => {
    fs.writeFileSync(out, JSON.stringify(r));
    process.exit(0);
  });
}
