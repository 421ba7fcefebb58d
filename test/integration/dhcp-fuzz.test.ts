/**
 * 100 000 random and mutated datagrams at the running server (inside a namespace); it must stay
 * up, count what it dropped, and still give a real client (udhcpc) its lease afterwards.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLab, eventEnv, labUnavailable, nsExec, ROOT, startServer, writeEnvScript, type Lab } from './dhcp-lab.js';

const skip = labUnavailable(['busybox']);
const COUNT = Number(process.env.PHDHCP_FUZZ_COUNT ?? 100_000);
const CMAC = '02:79:00:00:03:01';
let lab: Lab;
let dir: string;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'phdhcp-fuzz-'));
  lab = await createLab('fz', { clientMac: CMAC });
});

after(async () => {
  if (skip) return;
  await lab?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

test(`the server survives ${COUNT} random and mutated packets and then serves a real client`, { skip, timeout: 120_000 }, async () => {
  const fixtures = path.join(ROOT, 'test/fixtures/dhcp');
  const seeds = readdirSync(fixtures)
    .filter((f) => f.endsWith('.hex'))
    .map((f) => readFileSync(path.join(fixtures, f), 'utf8').replace(/\s+/g, ''));
  // The real client afterwards has a reservation, so whatever the fuzz leased cannot starve it.
  const server = await startServer(lab.server, {
    serverAddress: '10.79.0.1',
    dhcp: { mode: 'full', range: ['10.79.0.100', '10.79.0.200'] },
    statedir: dir, // the real SQLite lease store, so odd hostnames etc. go through putMany too
    nodes: [{ mac: CMAC, ip: '10.79.0.50', name: 'survivor' }],
  });
  let counters: Record<string, number> = {};
  try {
    await nsExec(lab.client, 'ip', ['addr', 'add', '10.79.0.99/24', 'dev', 'eth0']);
    const arg = { mode: 'fuzz', local: '10.79.0.99', to: { address: '10.79.0.1', port: 67 }, count: COUNT, seeds, seed: 20261121 };
    const t0 = Date.now();
    const { stdout } = await nsExec(lab.client, process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/integration/dhcp-client-tool.ts'), JSON.stringify(arg)], 100_000);
    assert.equal(stdout.trim(), `SENT ${COUNT}`);
    const secs = (Date.now() - t0) / 1000;
    await nsExec(lab.client, 'ip', ['addr', 'flush', 'dev', 'eth0']);
    assert.equal(server.proc.exitCode, null, 'server still running');
    const script = writeEnvScript(dir);
    const r = await nsExec(lab.client, 'busybox', ['udhcpc', '-f', '-q', '-n', '-t', '5', '-T', '1', '-i', 'eth0', '-s', script], 30_000);
    assert.equal(eventEnv(r.stdout, 'bound')?.ip, '10.79.0.50');
    counters = (await server.stop()).counters;
    console.log(`# fuzz: ${COUNT} datagrams in ${secs.toFixed(1)} s; server counters ${JSON.stringify(counters)}`);
  } finally {
    if (server.proc.exitCode === null) await server.stop();
  }
  // Most random datagrams are undecodable; they must have been counted, not thrown.
  assert.ok(counters.malformed! > COUNT / 10, `malformed counted (${counters.malformed})`);
  assert.ok(counters.received! > COUNT / 2, `most datagrams reached the handler (${counters.received})`);
});
