import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCsv, parseNodes, formatNodes } from '../../src/nodes/io.js';
import { parseConfig } from '../../src/config/load.js';
import type { Node } from '../../src/nodes/types.js';

test('CSV parsing handles quotes, doubled quotes, embedded commas and newlines, CRLF', () => {
  const rows = parseCsv('a,b,c\r\n"x,1","he said ""hi""","multi\nline"\n\n1,2,3');
  assert.deepEqual(
    rows.map((r) => r.fields),
    [
      ['a', 'b', 'c'],
      ['x,1', 'he said "hi"', 'multi\nline'],
      ['1', '2', '3'],
    ],
  );
  assert.deepEqual(
    rows.map((r) => r.line),
    [1, 2, 5],
  );
});

test('CSV node import maps columns and attr.KEY, and names the line of a bad record', () => {
  const recs = parseNodes('mac,name,group,attr.rack\naa:bb:cc:dd:ee:01,n1,compute,r12\nAABB.CCDD.EE02,,,\n', 'csv');
  assert.deepEqual(recs[0]!.node, { mac: 'aa:bb:cc:dd:ee:01', name: 'n1', group: 'compute', attrs: { rack: 'r12' } });
  assert.deepEqual(recs[1]!.node, { mac: 'aa:bb:cc:dd:ee:02' });
  assert.throws(() => parseNodes('mac,name\naa:bb:cc:dd:ee:01,a\nnot-a-mac,b\n', 'csv'), /line 3: invalid MAC address "not-a-mac"/);
  assert.throws(() => parseNodes('name\nx\n', 'csv'), /line 1: the header must name a "mac" column/);
  assert.throws(() => parseNodes('mac,colour\naa:bb:cc:dd:ee:01,red\n', 'csv'), /unknown column "colour"/);
  assert.throws(() => parseNodes('mac,name\naa:bb:cc:dd:ee:01\n', 'csv'), /line 2: expected 2 fields, got 1/);
});

test('ethers and JSON import; export round-trips through every format', () => {
  assert.deepEqual(
    parseNodes('# comment\naa:bb:cc:dd:ee:01 n1\n\nAA-BB-CC-DD-EE-02   n2 # trailing\n', 'ethers').map((r) => [r.line, r.node]),
    [
      [2, { mac: 'aa:bb:cc:dd:ee:01', name: 'n1' }],
      [4, { mac: 'aa:bb:cc:dd:ee:02', name: 'n2' }],
    ],
  );
  assert.throws(() => parseNodes('aa:bb:cc:dd:ee:01\n', 'ethers'), /line 1: expected "MAC name"/);
  assert.throws(() => parseNodes('[{"mac": 5}]', 'json'), /record 1: "mac" must be a string/);
  assert.throws(() => parseNodes('{', 'json'), /not valid JSON/);
  const n: Node = {
    mac: 'aa:bb:cc:dd:ee:01', name: 'n1', group: 'g', vnfs: 'v', enabled: false, debug: true, state: 'ready', ip: '10.0.0.5',
    lastContact: null, boot: 'once', attrs: { note: 'has, comma "and quotes"' }, createdAt: 0, updatedAt: 0,
  };
  for (const f of ['csv', 'json'] as const) {
    const back = parseNodes(formatNodes([n], f), f)[0]!.node;
    assert.deepEqual(back, { mac: n.mac, name: 'n1', group: 'g', vnfs: 'v', ip: '10.0.0.5', enabled: false, debug: true, boot: 'once', attrs: n.attrs }, f);
  }
  assert.deepEqual(parseNodes(formatNodes([n], 'ethers'), 'ethers')[0]!.node, { mac: n.mac, name: 'n1' });
});

test('configuration: defaults for every key, unknown keys and bad values name the key', () => {
  const c = parseConfig({}, '/srv');
  assert.equal(c.statedir, '/srv/var');
  assert.equal(c.dhcp.mode, 'off', 'DHCP stays off until configured');
  assert.equal(c.nodes.name_pattern, 'n####');
  assert.equal(c.nodescripts.dir, '/srv/var/nodescripts');
  assert.equal(c.tftp.root, '/srv/var/tftproot');
  assert.equal(c.http.port, 8080);
  assert.equal(c.provisiond.port, 987);
  assert.equal(c.security.node_tokens, true);
  assert.equal(c.admin.listen, '127.0.0.1');
  assert.throws(() => parseConfig({ dchp: {} }), /dchp: unknown key/);
  assert.throws(() => parseConfig({ dhcp: { mode: 'ful' } }), /dhcp\.mode: .*"off"\|"full"\|"proxy"/);
  assert.throws(() => parseConfig({ dhcp: { lease_seconds: 'x' } }), /dhcp\.lease_seconds/);
  assert.throws(() => parseConfig({ dhcp: { mode: 'full' } }), /dhcp\.range: required when dhcp\.mode is full/);
  assert.throws(() => parseConfig({ http: { port: 70000 } }), /http\.port/);
  assert.throws(() => parseConfig({ address: 'example' }), /address/);
  assert.throws(() => parseConfig({ nodes: { name_pattern: 'node' } }), /nodes\.name_pattern: must contain at least one #/);
  assert.throws(() => parseConfig({ tftp: { bogus: 1 } }), /tftp\.bogus: unknown key/);
  assert.throws(() => parseConfig([1]), /top level must be a mapping/);
});
