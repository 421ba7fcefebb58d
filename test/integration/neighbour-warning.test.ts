/**
 * `serve` says at start when the cluster it knows is larger than the kernel's neighbour (ARP)
 * table (src/server/neighbour-table.ts): 600 known nodes against this host's real limits, read
 * from /proc. With Linux's defaults (soft limit 512) the warning is there with the sysctl to run;
 * on a host whose table was raised it must not be.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { CLI, makeStateDir, pxeherd, type StateDir } from '../helpers/cli.js';
import { waitFor } from '../lab/lab.js';
import { readNeighbourLimits } from '../../src/server/neighbour-table.js';

const limits = readNeighbourLimits();
const skip = limits ? undefined : 'needs /proc/sys/net/ipv4/neigh/default (Linux)';
let server: ChildProcess | undefined;
let sd: StateDir | undefined;
let exited: Promise<unknown> = Promise.resolve();

after(async () => {
  server?.kill('SIGKILL');
  await exited;
  sd?.cleanup();
});

test('serve with 600 known nodes warns about the neighbour table with the numbers and the sysctl, or stays quiet where the table is big enough', { skip, timeout: 60_000 }, async () => {
  sd = makeStateDir();
  // One service on a free port (port 0 turns a service off, and serve with none exits).
  const http = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  fs.writeFileSync(sd.config, `statedir: ${sd.statedir}\naddress: 127.0.0.1\ndhcp: { mode: off }\ntftp: { port: 0 }\nprovisiond: { port: 0 }\nhttp: { port: ${http}, listen: 127.0.0.1 }\nadmin: { port: 0, listen: 127.0.0.1 }\n`);
  const csv = ['mac,name', ...Array.from({ length: 600 }, (_, i) => `52:54:00:aa:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')},nb${i}`)].join('\n');
  const imp = pxeherd(['node', 'import', '-', '--format', 'csv'], { config: sd.config, input: csv + '\n' });
  assert.equal(imp.code, 0, imp.stderr);
  const logFile = path.join(sd.dir, 'serve.log');
  const log = fs.openSync(logFile, 'a');
  server = spawn(process.execPath, [CLI, 'serve', '--config', sd.config], { stdio: ['ignore', log, log] });
  exited = new Promise((r) => server!.once('exit', r));
  fs.closeSync(log);
  const text = await waitFor('serve to start', 30_000, () => {
    const t = fs.readFileSync(logFile, 'utf8');
    if (server!.exitCode !== null) throw new Error(`serve exited: ${t}`);
    return /http listening/.test(t) && /dhcp is off/.test(t) && t;
  });
  server.kill('SIGTERM');
  const warning = text.split('\n').find((l) => /neighbour \(ARP\) table/.test(l));
  if (600 > limits!.thresh2) {
    assert.ok(warning, `a warning with thresh2 ${limits!.thresh2}:\n${text}`);
    const w = JSON.parse(warning) as { level: number; msg: string; machines: number; thresh3: number };
    assert.equal(w.level, 40);
    assert.equal(w.machines, 600);
    assert.equal(w.thresh3, limits!.thresh3);
    assert.match(w.msg, /may talk to 600 machines.*sysctl -w net\.ipv4\.neigh\.default\.gc_thresh1=512 net\.ipv4\.neigh\.default\.gc_thresh2=1024 net\.ipv4\.neigh\.default\.gc_thresh3=2048/);
  } else {
    assert.equal(warning, undefined, `no warning with thresh2 ${limits!.thresh2}`);
  }
});
