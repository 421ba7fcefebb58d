import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load.js';

test('tftp.pump_poll: auto by default, off and on accepted, anything else refused naming the key and the choices', () => {
  assert.equal(parseConfig({}, '/tmp').tftp.pump_poll, 'auto');
  for (const v of ['off', 'on', 'auto'] as const) assert.equal(parseConfig({ tftp: { pump_poll: v } }, '/tmp').tftp.pump_poll, v);
  assert.throws(() => parseConfig({ tftp: { pump_poll: 'sometimes' } }, '/tmp'), (e: Error) => /tftp\.pump_poll/.test(e.message) && /auto/.test(e.message) && /off/.test(e.message));
});
