import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startAdmin } from './admin-fixture.js';
import { parseExposition, value } from '../unit/metrics-exposition.js';

const PORTS: [number, number] = [18220, 18229];

test('GET /metrics counts events of every protocol recorded into the store, in valid exposition format', async (t) => {
  const f = await startAdmin(PORTS);
  t.after(() => f.close());
  f.service.add({ mac: 'aa:bb:cc:00:00:01', name: 'n1' });
  f.service.add({ mac: 'aa:bb:cc:00:00:02', name: 'n2' });
  f.store.nodes.touch('aa:bb:cc:00:00:01', 'ready', '10.0.0.11');
  const mac = 'aa:bb:cc:00:00:01';
  // One simulated boot, as the protocol servers record it.
  const boot = [
    { kind: 'dhcp.discover', mac },
    { kind: 'dhcp.offer', mac, node: 'n1', detail: { ip: '10.0.0.11', boot: 'bios-pxe', file: 'undionly.kpxe' } },
    { kind: 'dhcp.request', mac },
    { kind: 'dhcp.ack', mac, node: 'n1', detail: { ip: '10.0.0.11' } },
    { kind: 'tftp.start', detail: { file: 'undionly.kpxe', peer: '10.0.0.11' } },
    { kind: 'tftp.done', detail: { file: 'undionly.kpxe', peer: '10.0.0.11', bytes: 70_000, durationMs: 40 } },
    { kind: 'tftp.error', detail: { file: 'missing.efi', refused: true, code: 1 } },
    { kind: 'http.ipxe', mac, node: 'n1', detail: { mode: 'provision' } },
    { kind: 'http.kernel', mac, node: 'n1', detail: { status: 200, bytes: 8_000_000, ms: 50 } },
    { kind: 'http.initrd', mac, node: 'n1', detail: { status: 200, bytes: 30_000_000, ms: 200 } },
    { kind: 'provision.start', mac, node: 'n1', detail: { state: 'init', via: 'http' } },
    { kind: 'nodescript.fail', mac, node: 'n1', detail: { script: 'init/all/10-slow', reason: 'timed out after 60 s', timedOut: true } },
    { kind: 'provision.end', mac, node: 'n1', detail: { state: 'init', ok: false, durationMs: 60_150 } },
  ];
  for (const ev of boot) f.store.events.record(ev);

  const r = await fetch(`${f.base}/metrics`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const s = parseExposition(await r.text());
  assert.equal(value(s, 'pxeherd_dhcp_messages_total', { type: 'discover', result: 'received' }), 1);
  assert.equal(value(s, 'pxeherd_dhcp_messages_total', { type: 'ack', result: 'sent' }), 1);
  assert.equal(value(s, 'pxeherd_tftp_transfers_total', { result: 'ok' }), 1);
  assert.equal(value(s, 'pxeherd_tftp_bytes_sent_total'), 70_000);
  assert.equal(value(s, 'pxeherd_tftp_errors_total'), 1);
  assert.equal(value(s, 'pxeherd_http_requests_total', { route: 'kernel', status: '200' }), 1);
  assert.equal(value(s, 'pxeherd_http_bytes_sent_total', { route: 'initrd' }), 30_000_000);
  assert.equal(value(s, 'pxeherd_provision_duration_seconds_count', { result: 'fail' }), 1);
  assert.equal(value(s, 'pxeherd_nodescript_timeouts_total'), 1);
  assert.equal(value(s, 'pxeherd_nodes', { state: 'ready' }), 1);
  assert.equal(value(s, 'pxeherd_nodes', { state: 'none' }), 1);
  for (const p of ['dhcp', 'tftp', 'http', 'provision', 'nodescript']) assert.ok(value(s, 'pxeherd_events_total', { protocol: p })! > 0, p);

  // As Prometheus would see it: plain curl, no token.
  const { stdout } = await promisify(execFile)('curl', ['-sS', '--max-time', '10', '-D', '-', `${f.base}/metrics`], { encoding: 'utf8' });
  const [head, body] = stdout.split('\r\n\r\n');
  assert.match(head!, /^HTTP\/1\.1 200/);
  const s2 = parseExposition(body!);
  assert.equal(value(s2, 'pxeherd_dhcp_messages_total', { type: 'offer', result: 'sent' }), 1);
});

test('with metricsPublic false, /metrics needs a token (read-only is enough)', async (t) => {
  const f = await startAdmin(PORTS, { metricsPublic: false });
  t.after(() => f.close());
  const none = await fetch(`${f.base}/metrics`);
  assert.equal(none.status, 401);
  assert.match((await none.json()).error, /missing token/);
  const ro = await fetch(`${f.base}/metrics`, { headers: { authorization: `Bearer ${f.tokens.readonly}` } });
  assert.equal(ro.status, 200);
  parseExposition(await ro.text());
});
