import { test } from 'node:test';
import assert from 'node:assert/strict';
import { raArgs } from '../../src/server/ra.js';
import { macFromNeighbourTable } from '../../src/dhcp6/neighbour.js';
import { ipv6Host } from '../../src/http/boot.js';
import { checkNode } from '../../src/security/authorize.js';
import { createMetrics } from '../../src/metrics/pxeherd.js';
import { NodeTokens } from '../../src/security/tokens.js';
import { nodeRecord, type BootEvent } from '../../src/nodes/types.js';

test('router advertisement: empty without DHCPv6, M/O and the prefix (A with SLAAC) with it', () => {
  assert.deepEqual(raArgs(undefined), []);
  assert.deepEqual(raArgs({ managed: true, other: true, prefix: 'fd00:77::/64', autonomous: true, lifetimeSeconds: 600 }), ['-M', '-O', '-p', 'fd00:77::/64', '-A', '-l', '600']);
  assert.deepEqual(raArgs({ managed: true, other: true, prefix: 'fd00:77::/64' }), ['-M', '-O', '-p', 'fd00:77::/64', '-l', '3600']);
});

test('neighbour table: the MAC of a complete entry, nothing for failed or other addresses', () => {
  const text = [
    'fe80::1234 dev br0 lladdr 52:54:00:aa:bb:cc REACHABLE',
    'fe80::99 dev br0 FAILED',
    'fd00::5 dev br0 lladdr 52:54:00:00:00:05 STALE',
  ].join('\n');
  assert.equal(macFromNeighbourTable(text, 'fe80::1234'), '52:54:00:aa:bb:cc');
  assert.equal(macFromNeighbourTable(text, 'FE80:0:0::1234'), '52:54:00:aa:bb:cc', 'any spelling of the address');
  assert.equal(macFromNeighbourTable(text, 'fe80::99'), undefined);
  assert.equal(macFromNeighbourTable(text, 'fe80::7'), undefined);
});

test('a boot script asked over IPv6 names the master by the address it was asked at; IPv4 and mapped IPv4 keep the configured one', () => {
  assert.equal(ipv6Host('fd00:77::1'), '[fd00:77::1]');
  assert.equal(ipv6Host('fe80::1%br0'), '[fe80::1]');
  assert.equal(ipv6Host('::ffff:10.0.0.1'), undefined);
  assert.equal(ipv6Host('10.0.0.1'), undefined);
  assert.equal(ipv6Host(undefined), undefined);
});

test('a node known by its IPv4 address asking over IPv6: judged by its token (the IPv4 check cannot apply), still refused without one', () => {
  const tokens = new NodeTokens({ key: Buffer.alloc(32, 7), ttlSeconds: 600 });
  const log: BootEvent[] = [];
  const opts = { enabled: true, tokens, events: { record: (e: BootEvent) => void log.push(e) } };
  const node = nodeRecord({ mac: '52:54:00:aa:bb:cc', name: 'n0001', ip: '10.0.0.5' });
  const tok = tokens.issueToken(node.mac);
  assert.deepEqual(checkNode(opts, node, { token: tok, state: 'ready', registered: false, ip: 'fd00:77::1000' }), { ok: true });
  assert.equal(checkNode(opts, node, { token: undefined, state: 'ready', registered: false, ip: 'fd00:77::1000' }).ok, false);
  assert.equal(checkNode(opts, node, { token: tok, state: 'ready', registered: false, ip: '10.0.0.6' }).ok, false, 'IPv4 still checked');
});

test('metrics count DHCPv6 messages by type and result, and dhcp6 events under their own protocol', async () => {
  let emit: (ev: BootEvent) => void = () => {};
  const m = createMetrics({ nodes: { all: () => [] }, events: { subscribe: (fn: (ev: BootEvent) => void) => ((emit = fn), () => undefined) } } as never);
  for (const kind of ['dhcp6.solicit', 'dhcp6.advertise', 'dhcp6.request', 'dhcp6.reply', 'dhcp6.ignored', 'dhcp.discover']) emit({ kind });
  const text = await m.render();
  assert.match(text, /pxeherd_dhcp6_messages_total\{type="solicit",result="received"\} 1/);
  assert.match(text, /pxeherd_dhcp6_messages_total\{type="reply",result="sent"\} 1/);
  assert.match(text, /pxeherd_dhcp6_messages_total\{type="any",result="ignored"\} 1/);
  assert.match(text, /pxeherd_events_total\{protocol="dhcp6"\} 5/);
  assert.match(text, /pxeherd_events_total\{protocol="dhcp"\} 1/);
});
