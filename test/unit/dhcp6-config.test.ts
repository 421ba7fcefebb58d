import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';

test('dhcp6: off by default; full needs a prefix; bad values name the key and what to do', () => {
  const d = parseConfig({}, '/tmp');
  assert.equal(d.dhcp6.mode, 'off');
  assert.equal(d.http.listen, '::', 'HTTP listens dual-stack by default');
  assert.equal(d.provisiond.listen, '::');
  const ok = parseConfig({ dhcp6: { mode: 'full', prefix: 'fd00:77::/64', range: ['fd00:77::10', 'fd00:77::20'], dns: ['fd00:77::53'] } }, '/tmp');
  assert.deepEqual([ok.dhcp6.lease_seconds, ok.dhcp6.rapid_commit, ok.dhcp6.ra, ok.dhcp6.slaac, ok.dhcp6.port], [3600, true, true, true, 547]);
  const bad: Array<[unknown, RegExp]> = [
    [{ mode: 'full' }, /dhcp6\.prefix: dhcp6\.mode is full: set dhcp6\.prefix/],
    [{ mode: 'full', prefix: 'fd00::/48' }, /SLAAC needs a \/64 prefix, not \/48/],
    [{ mode: 'full', prefix: 'not-a-prefix' }, /dhcp6\.prefix: "not-a-prefix" is not an IPv6 prefix/],
    [{ mode: 'full', prefix: 'fd00::/64', range: ['fd01::1', 'fd00::2'] }, /dhcp6\.range: .* is not inside dhcp6\.prefix fd00::\/64/],
    [{ mode: 'full', prefix: 'fd00::/64', range: ['fd00::9', 'fd00::2'] }, /starts after it ends/],
    [{ mode: 'full', prefix: 'fd00::/64', dns: ['10.0.0.1'] }, /dhcp6\.dns\.0: must be an IPv6 address/],
    [{ mode: 'full', prefix: 'fd00::/64', lease_seconds: 5 }, /dhcp6\.lease_seconds/],
    [{ mdoe: 'full' }, /mdoe/],
  ];
  for (const [v, re] of bad) assert.throws(() => parseConfig({ dhcp6: v }, '/tmp'), re, JSON.stringify(v));
});
