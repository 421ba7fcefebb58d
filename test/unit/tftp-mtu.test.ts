import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { blksizeCeiling, interfaceMtu } from '../../src/tftp/mtu.js';

test('the blksize ceiling is the configured maximum, capped at the MTU minus the 32 header bytes', () => {
  assert.equal(blksizeCeiling(65464, 1500), 1468);
  assert.equal(blksizeCeiling(65464, 9000), 8968);
  assert.equal(blksizeCeiling(1024, 1500), 1024, 'a lower configured maximum stands');
  assert.equal(blksizeCeiling(65464, undefined), 65464, 'unknown MTU: no cap');
  assert.equal(blksizeCeiling(65464, 65536), 65464, 'loopback');
  assert.equal(blksizeCeiling(65464, 20), 65464, 'an absurd MTU is ignored');
});

test('the MTU comes from sysfs; hostile or unknown interface names give none', () => {
  const sys = fs.mkdtempSync(path.join(os.tmpdir(), 'phmtu-'));
  try {
    fs.mkdirSync(path.join(sys, 'eth1'));
    fs.writeFileSync(path.join(sys, 'eth1', 'mtu'), '9000\n');
    fs.mkdirSync(path.join(sys, 'bad'));
    fs.writeFileSync(path.join(sys, 'bad', 'mtu'), 'x\n');
    assert.equal(interfaceMtu('eth1', sys), 9000);
    assert.equal(interfaceMtu('bad', sys), undefined);
    assert.equal(interfaceMtu('nope', sys), undefined);
    assert.equal(interfaceMtu('../eth1', sys), undefined);
    assert.equal(interfaceMtu('', sys), undefined);
    assert.equal(interfaceMtu('lo'), 65536, 'the real loopback');
  } finally {
    fs.rmSync(sys, { recursive: true, force: true });
  }
});
