import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Views, ago } from '../../src/admin/views.js';
import { buildTimeline, summarize, isFailure, nodeEvents } from '../../src/admin/timeline.js';
import type { BootEvent, Node } from '../../src/nodes/types.js';

const HOSTILE = '<script>alert("x")</script>&\'"';

test('pages escape node names, attributes, summaries and stderr; only the page body is inserted raw', () => {
  const v = new Views(undefined, () => 0);
  const boots = buildTimeline([
    { id: 1, time: 1000, kind: 'dhcp.discover', mac: 'aa:bb:cc:00:00:01' },
    { id: 2, time: 1500, kind: 'nodescript.fail', mac: 'aa:bb:cc:00:00:01', detail: { script: HOSTILE, reason: 'exit code 1', stderr: `boom ${HOSTILE}` } },
  ]);
  const html = v.render(
    'node',
    {
      node: { name: 'n1', mac: 'aa:bb:cc:00:00:01', state: HOSTILE, ip: '', group: 'g', vnfs: '', lastContact: null, boot: 'provision', enabled: true },
      attrs: [{ key: 'rack', value: HOSTILE, from: 'node' }],
      boots,
      eventCount: 2,
      modes: [{ mode: 'provision', current: true }],
      canWrite: true,
      csrf: 'tok"en',
    },
    { title: HOSTILE, role: 'admin', canWrite: true, csrf: 'tok"en', signedIn: true, nav: {} },
  );
  assert.equal(html.includes('<script>alert'), false, 'no hostile markup survives');
  assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;&quot;'), 'the text is there, escaped');
  assert.match(html, /<pre class="stderr">boom &lt;script&gt;/);
  assert.match(html, /<title>&lt;script&gt;/);
  assert.match(html, /name="csrf" value="tok&quot;en"/);
  assert.equal((html.match(/<script\b/g) ?? []).length, 1, 'the only script element is the UI\'s own app.js');
  assert.match(html, /<script src="\/ui\/static\/app\.js" defer><\/script>/);
});

test('the node table renders each node with state, IP, group, VNFS and last contact', () => {
  const v = new Views(undefined, () => 120_000);
  const html = v.render('nodes', {
    q: 'group:x',
    nodes: [{ name: 'n0001', mac: 'aa:bb:cc:00:00:01', state: 'ready', ip: '10.0.0.5', group: 'compute', vnfs: 'deb', lastContact: 60_000, boot: 'local', enabled: false }],
    count: 1,
    total: 3,
  });
  assert.match(html, /<tr data-mac="aa:bb:cc:00:00:01" data-node="n0001" class="disabled">/);
  assert.match(html, /<td class="state">ready<\/td>/);
  assert.match(html, /<td class="contact" title="1970-01-01T00:01:00.000Z">1m ago<\/td>/);
  assert.match(html, /value="group:x"/);
  assert.equal(ago(null), 'never');
});

test('the timeline groups events into boots at each DHCP DISCOVER, newest first, with offsets and deltas', () => {
  const ev = (id: number, time: number, kind: string, detail: Record<string, unknown> = {}): BootEvent => ({ id, time, kind, detail, mac: 'aa:bb:cc:00:00:01' });
  const boots = buildTimeline([
    ev(5, 10_000, 'dhcp.discover'),
    ev(1, 0, 'dhcp.discover'),
    ev(2, 120, 'dhcp.offer', { ip: '10.0.0.5', boot: 'bios-pxe', file: 'undionly.kpxe' }),
    ev(3, 900, 'tftp.done', { file: 'undionly.kpxe', bytes: 70_000, durationMs: 40 }),
    ev(4, 2_500, 'provision.end', { ok: false, durationMs: 1200, failed: ['init/all/10-x'] }),
    ev(6, 10_250, 'http.kernel', { status: 200, bytes: 5 * 1024 * 1024, ms: 80 }),
  ]);
  assert.equal(boots.length, 2);
  assert.deepEqual(boots[0]!.rows.map((r) => [r.kind, r.offset, r.delta]), [
    ['dhcp.discover', '+0.000 s', '0.000 s'],
    ['http.kernel', '+0.250 s', '0.250 s'],
  ]);
  assert.equal(boots[0]!.failed, false);
  assert.equal(boots[1]!.durationS, '2.500');
  assert.equal(boots[1]!.failed, true);
  assert.deepEqual(boots[1]!.rows.map((r) => r.offset), ['+0.000 s', '+0.120 s', '+0.900 s', '+2.500 s']);
  assert.equal(boots[1]!.rows[1]!.summary, 'ip 10.0.0.5 · boot bios-pxe · file undionly.kpxe');
  assert.equal(boots[1]!.rows[2]!.summary, 'undionly.kpxe · 68.4 KiB · 40 ms');
  assert.equal(boots[1]!.rows[3]!.summary, '1200 ms · FAILED · failed: init/all/10-x');
  assert.equal(boots[0]!.rows[1]!.summary, 'status 200 · 5.0 MiB · 80 ms');
  assert.equal(isFailure({ kind: 'tftp.error', detail: { probe: true } }), false, 'a UEFI tsize probe is normal');
  assert.equal(isFailure({ kind: 'http.file', detail: { status: 404 } }), true);
  assert.equal(summarize({ kind: 'node.register', detail: { via: 'http', ip: '10.0.0.9' } }), 'via http · ip 10.0.0.9');
});

test("a node's events include TFTP transfers from its address, which carry no MAC", () => {
  const node = { mac: 'aa:bb:cc:00:00:01', ip: '10.0.0.5' } as Node;
  const all: BootEvent[] = [
    { id: 1, time: 1, kind: 'dhcp.ack', mac: node.mac },
    { id: 2, time: 2, kind: 'tftp.done', detail: { peer: '10.0.0.5' } },
    { id: 3, time: 3, kind: 'tftp.done', detail: { peer: '10.0.0.6' } },
  ];
  const q = (f: { mac?: string; kind?: string }) => all.filter((e) => (f.mac ? e.mac === f.mac : true) && (f.kind ? e.kind.startsWith(f.kind + '.') : true));
  assert.deepEqual(nodeEvents(q, node).map((e) => e.id), [2, 1]);
  assert.deepEqual(nodeEvents(q, { ...node, ip: '' }).map((e) => e.id), [1]);
});
