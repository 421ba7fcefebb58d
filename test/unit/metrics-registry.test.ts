import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry, escapeLabelValue, formatValue } from '../../src/metrics/registry.js';
import { parseExposition, value } from './metrics-exposition.js';

test('counters render HELP, TYPE and one sample per label set, and never go down', async () => {
  const r = new Registry();
  const c = r.counter('x_requests_total', 'Requests.\nSecond line with a \\ backslash.', ['route', 'status']);
  c.inc({ route: 'ipxe', status: '200' });
  c.inc({ route: 'ipxe', status: '200' }, 2);
  c.inc({ status: '404', route: 'kernel' });
  assert.equal(
    (await r.render()),
    '# HELP x_requests_total Requests.\\nSecond line with a \\\\ backslash.\n' +
      '# TYPE x_requests_total counter\n' +
      'x_requests_total{route="ipxe",status="200"} 3\n' +
      'x_requests_total{route="kernel",status="404"} 1\n',
  );
  assert.equal(await c.get({ route: 'ipxe', status: '200' }), 3);
  assert.throws(() => c.inc({ route: 'x', status: '1' }, -1), /only goes up/);
  assert.throws(() => c.inc({ route: 'x' }), /takes labels \{route,status\}/);
  assert.throws(() => c.inc({ route: 'x', status: '1', extra: 'y' }), /takes labels/);
  parseExposition((await r.render()));
});

test('label values are escaped so hostile text cannot break the exposition', async () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const r = new Registry();
  r.counter('y_total', 'y', ['v']).inc({ v: 'evil"} 1\nfake_metric 99' });
  const samples = parseExposition((await r.render()));
  assert.equal(samples.length, 1);
  assert.equal(samples[0]!.labels.v, 'evil"} 1\nfake_metric 99');
  assert.equal(value(samples, 'fake_metric'), undefined);
});

test('unlabelled series read 0 before their first event; labelled families list only seen label sets', async () => {
  const r = new Registry();
  r.counter('a_total', 'a');
  r.counter('b_total', 'b', ['k']);
  r.gauge('g', 'g');
  assert.equal((await r.render()), '# HELP a_total a\n# TYPE a_total counter\na_total 0\n\n# HELP b_total b\n# TYPE b_total counter\n\n# HELP g g\n# TYPE g gauge\ng 0\n');
});

test('histograms render cumulative buckets, +Inf, _sum and _count per label set', async () => {
  const r = new Registry();
  const h = r.histogram('d_seconds', 'durations', ['result'], [1, 0.5, 5]);
  assert.deepEqual(h.buckets, [0.5, 1, 5], 'buckets are sorted');
  for (const v of [0.2, 0.5, 0.7, 3, 100]) h.observe({ result: 'ok' }, v);
  h.observe({ result: 'fail' }, 2);
  h.observe({ result: 'fail' }, NaN); // ignored: not a duration
  const text = (await r.render());
  assert.match(text, /^d_seconds_bucket\{le="0.5",result="ok"\} 2$/m);
  assert.match(text, /^d_seconds_bucket\{le="1",result="ok"\} 3$/m);
  assert.match(text, /^d_seconds_bucket\{le="5",result="ok"\} 4$/m);
  assert.match(text, /^d_seconds_bucket\{le="\+Inf",result="ok"\} 5$/m);
  assert.match(text, /^d_seconds_sum\{result="ok"\} 104.4$/m);
  assert.match(text, /^d_seconds_count\{result="ok"\} 5$/m);
  assert.match(text, /^d_seconds_count\{result="fail"\} 1$/m);
  assert.equal(await h.count({ result: 'fail' }), 1);
  parseExposition(text);
  assert.throws(() => r.histogram('e', 'e', [], []), /buckets/);
  assert.throws(() => r.histogram('f', 'f', ['le'], [1]), /label name "le"/);
});

test('gauges computed at scrape time replace their previous values', async () => {
  let states = ['ready', 'ready', 'init'];
  const r = new Registry();
  r.gauge('n', 'nodes', ['state'], (g) => {
    for (const s of states) g.inc({ state: s });
  });
  assert.equal(value(parseExposition((await r.render())), 'n', { state: 'ready' }), 2);
  states = ['init'];
  const s2 = parseExposition((await r.render()));
  assert.equal(value(s2, 'n', { state: 'ready' }), undefined, 'a state no node is in disappears');
  assert.equal(value(s2, 'n', { state: 'init' }), 1);
});

test('names are checked and a family is registered once', async () => {
  const r = new Registry();
  assert.throws(() => r.counter('bad-name', 'x'), /not valid/);
  assert.throws(() => r.counter('ok_total', 'x', ['bad-label']), /not valid/);
  r.counter('ok_total', 'x');
  assert.throws(() => r.counter('ok_total', 'x'), /registered twice/);
  assert.equal(formatValue(Infinity), '+Inf');
  assert.equal(formatValue(NaN), 'NaN');
  assert.equal(formatValue(0.25), '0.25');
});

test('the test reader itself rejects broken expositions', async () => {
  assert.throws(() => parseExposition('x 1\n'), /before its TYPE/);
  assert.throws(() => parseExposition('# TYPE x counter\nx{a="b} 1\n'), /unterminated|bad label/);
  assert.throws(() => parseExposition('# TYPE x counter\nx 1\nx 2\n'), /duplicate/);
  assert.throws(() => parseExposition('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n'), /not cumulative/);
  assert.throws(() => parseExposition('# TYPE x counter\nx 1'), /newline/);
});

test('process and runtime metrics come from prom-client when asked for; default labels mark every series', async () => {
  const r = new Registry({ processMetrics: true, defaultLabels: { server: 'boot1' } });
  r.counter('x_total', 'x').inc();
  const samples = parseExposition(await r.render());
  for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
    assert.ok(samples.some((s) => s.name === name), `${name} is exported`);
  }
  assert.equal(value(samples, 'x_total', { server: 'boot1' }), 1);
  assert.ok(samples.every((s) => s.labels.server === 'boot1'), 'every series carries server=');
});
