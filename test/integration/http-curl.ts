/** curl as the client for the HTTP integration tests: real requests, real parsing of the answer. */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';

export interface CurlResult {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

let seq = 0;

/** curl ARGS... URL; --path-as-is so '..' reaches the server unnormalised. */
export function curl(url: string, args: string[] = []): Promise<CurlResult> {
  // Headers go to a file: stdio here are sockets, which /dev/stderr cannot be opened on.
  const hfile = path.join(os.tmpdir(), `pxeherd-curl-${process.pid}-${seq++}.h`);
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-s', '--path-as-is', '-D', hfile, '-o', '-', '--max-time', '20', ...args, url],
      { encoding: 'buffer', maxBuffer: 64 << 20 },
      (err, stdout) => {
        let head = '';
        try {
          head = fs.readFileSync(hfile, 'latin1');
          fs.rmSync(hfile);
        } catch {
          /* no headers: reported below */
        }
        const blocks = head.split(/\r\n\r\n/).filter((b) => b.startsWith('HTTP/'));
        const last = blocks[blocks.length - 1];
        if (!last) return reject(new Error(`curl ${url}: no response (${err?.message ?? ''} ${head})`));
        const lines = last.split('\r\n');
        const status = Number(lines[0]!.split(' ')[1]);
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
        }
        resolve({ status, headers, body: stdout });
      },
    );
  });
}

export async function listen(app: Express, port: number): Promise<{ server: http.Server; base: string; close: () => Promise<void> }> {
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    server,
    base: `http://127.0.0.1:${a.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The last element matching (Array.prototype.findLast is ES2023, newer than the project's target). */
export function lastOf<T>(xs: T[], p: (x: T) => boolean): T | undefined {
  for (let i = xs.length - 1; i >= 0; i--) if (p(xs[i]!)) return xs[i];
  return undefined;
}
