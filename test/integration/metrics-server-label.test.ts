import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parseConfig } from '../../src/config/load.js';
import { startServer } from '../../src/server/server.js';
import { silentLogger } from '../../src/util/log.js';
import { parseExposition } from '../unit/metrics-exposition.js';

const ADMIN_PORT = 18962;

test('a running server labels every series of /metrics with server=<server_id>, process metrics included', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'phmetrics-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = parseConfig({ statedir: dir, server_id: 'boot-a', address: '127.0.0.1', http: { port: 0 }, tftp: { port: 0 }, provisiond: { port: 0 }, admin: { listen: '127.0.0.1', port: ADMIN_PORT }, nodes: { auto_register: false } });
  const server = await startServer(config, silentLogger());
  t.after(() => server.stop());
  assert.ok(server.services.find((s) => s.name === 'admin')?.ok, JSON.stringify(server.services));
  server.store.events.record({ kind: 'dhcp.discover', mac: 'aa:bb:cc:00:00:01' }); // a pxeherd counter with a series
  // As Prometheus scrapes it: curl, then the strict exposition reader (TYPE before samples, escaping, no duplicates).
  const { stdout } = await promisify(execFile)('curl', ['-sS', '--fail', '--max-time', '10', `http://127.0.0.1:${ADMIN_PORT}/metrics`], { encoding: 'utf8' });
  const samples = parseExposition(stdout);
  for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'pxeherd_events_total']) {
    assert.ok(samples.some((s) => s.name.startsWith(name)), `${name} is exported`);
  }
  const unlabelled = samples.filter((s) => s.labels.server !== 'boot-a');
  assert.deepEqual(unlabelled.map((s) => s.name), [], 'every series carries server="boot-a"');
});

test('server_id defaults to the host name, which becomes the server label', () => {
  const config = parseConfig({});
  assert.equal(config.server_id, os.hostname());
});
