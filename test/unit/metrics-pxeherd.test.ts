import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics, nodescriptFailureReason } from '../../src/metrics/pxeherd.js';
import type { BootEvent, Node } from '../../src/nodes/types.js';
import { parseExposition, value } from './metrics-exposition.js';

function fakeSource(nodes: Partial<Node>[] = []) {
  const listeners = new Set<(ev: BootEvent) => void>();
  return {
    nodes: { all: () => nodes as Node[] },
    events: {
      subscribe(fn: (ev: BootEvent) => void) {
        listeners.add(fn);
        return () => listeners.delete(fn);
      },
    },
    emit: (ev: BootEvent) => listeners.forEach((fn) => fn(ev)),
    listeners,
  };
}

test('DHCP events count by message type and result', async () => {
  const src = fakeSource();
  const m = createMetrics(src);
  for (const kind of ['dhcp.discover', 'dhcp.discover', 'dhcp.offer', 'dhcp.request', 'dhcp.ack', 'dhcp.nak', 'dhcp.ignored', 'dhcp.release']) src.emit({ kind });
  src.emit({ kind: 'dhcp.proxy', detail: { reply: 'ACK' } });
  const s = parseExposition(await m.render());
  const v = (type: string, result: string) => value(s, 'pxeherd_dhcp_messages_total', { type, result });
  assert.equal(v('discover', 'received'), 2);
  assert.equal(v('offer', 'sent'), 1);
  assert.equal(v('request', 'received'), 1);
  assert.equal(v('ack', 'sent'), 1);
  assert.equal(v('nak', 'sent'), 1);
  assert.equal(v('release', 'received'), 1);
  assert.equal(v('any', 'ignored'), 1);
  assert.equal(v('ack', 'proxy'), 1);
  assert.equal(value(s, 'pxeherd_events_total', { protocol: 'dhcp' }), 9);
});

test('TFTP transfers, bytes and errors; a UEFI tsize probe is not an error', async () => {
  const m = createMetrics(fakeSource(), { subscribe: false });
  m.observeEvent({ kind: 'tftp.start', detail: { file: 'ipxe.efi' } });
  m.observeEvent({ kind: 'tftp.done', detail: { bytes: 1000 } });
  m.observeEvent({ kind: 'tftp.done', detail: { bytes: 24 } });
  m.observeEvent({ kind: 'tftp.error', detail: { bytes: 512, error: 'timeout' } });
  m.observeEvent({ kind: 'tftp.error', detail: { refused: true, code: 1 } });
  m.observeEvent({ kind: 'tftp.error', detail: { probe: true, byClient: true, bytes: 0 } });
  const s = parseExposition(await m.render());
  assert.equal(value(s, 'pxeherd_tftp_transfers_total', { result: 'ok' }), 2);
  assert.equal(value(s, 'pxeherd_tftp_transfers_total', { result: 'error' }), 1);
  assert.equal(value(s, 'pxeherd_tftp_transfers_total', { result: 'refused' }), 1);
  assert.equal(value(s, 'pxeherd_tftp_transfers_total', { result: 'probe' }), 1);
  assert.equal(value(s, 'pxeherd_tftp_bytes_sent_total'), 1536);
  assert.equal(value(s, 'pxeherd_tftp_errors_total'), 2);
});

test('HTTP requests count by route and status, with bytes; unknown routes stay in a bounded "other"', async () => {
  const m = createMetrics(fakeSource(), { subscribe: false });
  m.observeEvent({ kind: 'http.ipxe', detail: { mode: 'provision' } });
  m.observeEvent({ kind: 'http.kernel', detail: { status: 200, bytes: 5000 } });
  m.observeEvent({ kind: 'http.initrd', detail: { status: 206, bytes: 100 } });
  m.observeEvent({ kind: 'http.error', detail: { path: '/vnfs/x/y', status: 404 } });
  m.observeEvent({ kind: 'http.error', detail: { path: '/boot/zz.ipxe', status: 500 } });
  m.observeEvent({ kind: 'http.error', detail: { path: '/random-' + 'x'.repeat(50), status: 404 } });
  const s = parseExposition(await m.render());
  const v = (route: string, status: string) => value(s, 'pxeherd_http_requests_total', { route, status });
  assert.equal(v('ipxe', '200'), 1);
  assert.equal(v('kernel', '200'), 1);
  assert.equal(v('initrd', '206'), 1);
  assert.equal(v('vnfs', '404'), 1);
  assert.equal(v('boot', '500'), 1);
  assert.equal(v('other', '404'), 1);
  assert.equal(value(s, 'pxeherd_http_bytes_sent_total', { route: 'kernel' }), 5000);
});

test('provision durations fill the histogram; nodescript failures count by reason with timeouts apart', async () => {
  const m = createMetrics(fakeSource(), { subscribe: false });
  m.observeEvent({ kind: 'provision.start', detail: { state: 'init' } });
  m.observeEvent({ kind: 'provision.end', detail: { ok: true, durationMs: 300 } });
  m.observeEvent({ kind: 'provision.end', detail: { ok: false, ms: 61000 } });
  m.observeEvent({ kind: 'nodescript.fail', detail: { reason: 'timed out after 60 s', timedOut: true } });
  m.observeEvent({ kind: 'nodescript.fail', detail: { reason: 'exit code 3', code: 3 } });
  m.observeEvent({ kind: 'nodescript.fail', detail: { reason: 'timeout' } });
  m.observeEvent({ kind: 'node.register', detail: {} });
  m.observeEvent({ kind: 'security.denied', detail: {} });
  const s = parseExposition(await m.render());
  assert.equal(value(s, 'pxeherd_provision_duration_seconds_count', { result: 'ok' }), 1);
  assert.equal(value(s, 'pxeherd_provision_duration_seconds_sum', { result: 'ok' }), 0.3);
  assert.equal(value(s, 'pxeherd_provision_duration_seconds_bucket', { result: 'ok', le: '0.25' }), 0);
  assert.equal(value(s, 'pxeherd_provision_duration_seconds_bucket', { result: 'ok', le: '0.5' }), 1);
  assert.equal(value(s, 'pxeherd_provision_duration_seconds_bucket', { result: 'fail', le: '60' }), 0);
  assert.equal(value(s, 'pxeherd_provision_duration_seconds_bucket', { result: 'fail', le: '+Inf' }), 1);
  assert.equal(value(s, 'pxeherd_provision_total', { result: 'fail' }), 1);
  assert.equal(value(s, 'pxeherd_nodescript_failures_total', { reason: 'timeout' }), 2);
  assert.equal(value(s, 'pxeherd_nodescript_failures_total', { reason: 'exit' }), 1);
  assert.equal(value(s, 'pxeherd_nodescript_timeouts_total'), 2);
  assert.equal(value(s, 'pxeherd_nodes_registered_total'), 1);
  assert.equal(value(s, 'pxeherd_security_denied_total'), 1);
  assert.equal(nodescriptFailureReason({ reason: 'cannot execute: EACCES' }), 'spawn');
  assert.equal(nodescriptFailureReason({ reason: 'killed by SIGKILL', signal: 'SIGKILL' }), 'signal');
  assert.equal(nodescriptFailureReason({ reason: 'output larger than 1048576 bytes' }), 'output');
});

test('nodes by state are read from the store at scrape time; close() stops following events', async () => {
  const nodes: Partial<Node>[] = [
    { state: 'ready', enabled: true },
    { state: 'ready', enabled: false },
    { state: '', enabled: true },
  ];
  const src = fakeSource(nodes);
  const m = createMetrics(src);
  let s = parseExposition(await m.render());
  assert.equal(value(s, 'pxeherd_nodes', { state: 'ready' }), 2);
  assert.equal(value(s, 'pxeherd_nodes', { state: 'none' }), 1);
  assert.equal(value(s, 'pxeherd_nodes_disabled'), 1);
  nodes.push({ state: 'init', enabled: true });
  s = parseExposition(await m.render());
  assert.equal(value(s, 'pxeherd_nodes', { state: 'init' }), 1);
  assert.equal(src.listeners.size, 1);
  m.close();
  assert.equal(src.listeners.size, 0);
  src.emit({ kind: 'dhcp.discover' });
  assert.equal(value(parseExposition(await m.render()), 'pxeherd_dhcp_messages_total', { type: 'discover', result: 'received' }), undefined);
});

test('udpDropsByPort sums the drops column of /proc/net/udp per local port', async () => {
  const { udpDropsByPort } = await import('../../src/metrics/pxeherd.js');
  const text = [
    '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            ',
    ' 1234: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41231 2 0000000000000000 17         ',
    ' 1235: 0100540A:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41232 2 0000000000000000 3          ',
    ' 1236: 00000000:0045 00000000:0000 07 00000000:00004400 00:00000000 00000000     0        0 41233 2 0000000000000000 0          ',
    ' 1237: 00000000:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41234 2 0000000000000000 99         ',
    'garbage',
  ].join('\n');
  assert.deepEqual([...udpDropsByPort(text, [67, 69, 4011])], [[67, 20], [69, 0], [4011, 0]]);
});
