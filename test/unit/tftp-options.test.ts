import { test } from 'node:test';
import assert from 'node:assert/strict';
import { negotiate, type Limits } from '../../src/tftp/options.js';

const limits: Limits = { maxBlksize: 65464, maxWindowsize: 64, defaultTimeoutMs: 1000 };
const ask = (o: Record<string, string>, l: Limits = limits, size = 1000) => negotiate(o, Object.keys(o), l, size);

test('no options: RFC 1350 defaults and no OACK', () => {
  const n = ask({});
  assert.equal(n.oack, undefined);
  assert.equal(n.blksize, 512);
  assert.equal(n.windowsize, 1);
  assert.equal(n.timeoutMs, 1000);
});

test('tsize is answered with the real size, in the client order', () => {
  const n = ask({ tsize: '0', blksize: '1468' }, limits, 4242);
  assert.deepEqual(n.oack, { tsize: '4242', blksize: '1468' });
  assert.deepEqual(n.oackOrder, ['tsize', 'blksize']);
});

test('blksize is capped by the configured maximum and invalid values are ignored', () => {
  assert.equal(ask({ blksize: '65464' }, { ...limits, maxBlksize: 1468 }).oack?.blksize, '1468');
  assert.equal(ask({ blksize: '70000' }).blksize, 65464);
  assert.equal(ask({ blksize: '8' }).blksize, 8);
  for (const bad of ['7', '0', '-5', 'abc', '', '1e3', ' 512']) {
    const n = ask({ blksize: bad });
    assert.equal(n.blksize, 512, bad);
    assert.equal(n.oack, undefined, bad);
  }
});

test('windowsize is capped by the configured maximum', () => {
  assert.equal(ask({ windowsize: '16' }).windowsize, 16);
  assert.equal(ask({ windowsize: '1000' }, { ...limits, maxWindowsize: 8 }).oack?.windowsize, '8');
  assert.equal(ask({ windowsize: '0' }).oack, undefined);
});

test('windowsize is lowered so one window fits the byte cap', () => {
  const l = { ...limits, maxWindowBytes: 64 * 1024 };
  const n = ask({ blksize: '8192', windowsize: '16' }, l);
  assert.equal(n.windowsize, 8);
  assert.equal(n.oack?.windowsize, '8');
  assert.equal(ask({ blksize: '1468', windowsize: '16' }, l).windowsize, 16);
  assert.equal(ask({ blksize: '65464', windowsize: '4' }, l).windowsize, 1);
});

test('timeout 1-255 is accepted verbatim, anything else ignored', () => {
  const n = ask({ timeout: '3' });
  assert.equal(n.timeoutMs, 3000);
  assert.equal(n.oack?.timeout, '3');
  assert.equal(ask({ timeout: '0' }).oack, undefined);
  assert.equal(ask({ timeout: '256' }).oack, undefined);
});

test('unknown options are declined silently', () => {
  const n = ask({ multicast: '', utimeout: '5000', blksize: '1024' });
  assert.deepEqual(n.oack, { blksize: '1024' });
});
