import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry, escapeLabelValue, formatValue } from '../../src/metrics/registry.js';
import { parseExposition, value } from './metrics-exposition.js';

test('counters render HELP, TYPE and one sample per label set, and never go down', () => {
  const r = new Registry();
  const c = r.counter('x_requests_total', 'Requests.\nSecond line with a \\ backslash.', ['route', 'status']);
  c.inc({ route: 'ipxe', status: '200' });
  c.inc({ route: 'ipxe', status: '200' }, 2);
  c.inc({ status: '404', route: 'kernel' });
  assert.equal(
    r.render(),
    '# HELP x_requests_total Requests.\\nSecond line with a \\\\ backslash.\n' +
      '# TYPE x_requests_total counter\n' +
      'x_requests_total{route="ipxe",status="200"} 3\n' +
      'x_requests_total{route="kernel",status="404"} 1\n',
  );
  assert.equal(c.get({ route: 'ipxe', status: '200' }), 3);
  assert.throws(() => c.inc({ route: 'x', status: '1' }, -1), /only goes up/);
  assert.throws(() => c.inc({ route: 'x' }), /takes labels \{route,status\}/);
  assert.throws(() => c.inc({ route: 'x', status: '1', extra: 'y' }), /takes labels/);
  parseExposition(r.render());
});

test('label values are escaped so hostile text cannot break the exposition', () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const r = new Registry();
  r.counter('y_total', 'y', ['v']).inc({ v: 'evil"} 1\nfake_metric 99' });
  const samples = parseExposition(r.render());
  assert.equal(samples.length, 1);
  assert.equal(samples[0]!.labels.v, 'evil"} 1\nfake_metric 99');
  assert.equal(value(samples, 'fake_metric'), undefined);
});

test('unlabelled series read 0 before their first event; labelled families list only seen label sets', () => {
  const r = new Registry();
  r.counter('a_total', 'a');
  r.counter('b_total', 'b', ['k']);
  r.gauge('g', 'g');
  assert.equal(r.render(), '# HELP a_total a\n# TYPE a_total counter\na_total 0\n# HELP b_total b\n# TYPE b_total counter\n# HELP g g\n# TYPE g gauge\ng 0\n');
});

test('histograms render cumulative buckets, +Inf, _sum and _count per label set', () => {
  const r = new Registry();
  const h = r.histogram('d_seconds', 'durations', ['result'], [1, 0.5, 5]);
  assert.deepEqual(h.buckets, [0.5, 1, 5], 'buckets are sorted');
  for (const v of [0.2, 0.5, 0.7, 3, 100]) h.observe({ result: 'ok' }, v);
  h.observe({ result: 'fail' }, 2);
  h.observe({ result: 'fail' }, NaN); // ignored: not a duration
  const text = r.render();
  assert.match(text, /^d_seconds_bucket\{result="ok",le="0.5"\} 2$/m);
  assert.match(text, /^d_seconds_bucket\{result="ok",le="1"\} 3$/m);
  assert.match(text, /^d_seconds_bucket\{result="ok",le="5"\} 4$/m);
  assert.match(text, /^d_seconds_bucket\{result="ok",le="\+Inf"\} 5$/m);
  assert.match(text, /^d_seconds_sum\{result="ok"\} 104.4$/m);
  assert.match(text, /^d_seconds_count\{result="ok"\} 5$/m);
  assert.match(text, /^d_seconds_count\{result="fail"\} 1$/m);
  assert.equal(h.count({ result: 'fail' }), 1);
  parseExposition(text);
  assert.throws(() => r.histogram('e', 'e', [], []), /buckets/);
  assert.throws(() => r.histogram('f', 'f', ['le'], [1]), /label name "le"/);
});

test('gauges computed at scrape time replace their previous values', () => {
  let states = ['ready', 'ready', 'init'];
  const r = new Registry();
  r.gauge('n', 'nodes', ['state'], (g) => {
    for (const s of states) g.inc({ state: s });
  });
  assert.equal(value(parseExposition(r.render()), 'n', { state: 'ready' }), 2);
  states = ['init'];
  const s2 = parseExposition(r.render());
  assert.equal(value(s2, 'n', { state: 'ready' }), undefined, 'a state no node is in disappears');
  assert.equal(value(s2, 'n', { state: 'init' }), 1);
});

test('names are checked and a family is registered once', () => {
  const r = new Registry();
  assert.throws(() => r.counter('bad-name', 'x'), /not valid/);
  assert.throws(() => r.counter('ok_total', 'x', ['bad-label']), /not valid/);
  r.counter('ok_total', 'x');
  assert.throws(() => r.counter('ok_total', 'x'), /registered twice/);
  assert.equal(formatValue(Infinity), '+Inf');
  assert.equal(formatValue(NaN), 'NaN');
  assert.equal(formatValue(0.25), '0.25');
});

test('the test reader itself rejects broken expositions', () => {
  assert.throws(() => parseExposition('x 1\n'), /before its TYPE/);
  assert.throws(() => parseExposition('# TYPE x counter\nx{a="b} 1\n'), /unterminated|bad label/);
  assert.throws(() => parseExposition('# TYPE x counter\nx 1\nx 2\n'), /duplicate/);
  assert.throws(() => parseExposition('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n'), /not cumulative/);
  assert.throws(() => parseExposition('# TYPE x counter\nx 1'), /newline/);
});
