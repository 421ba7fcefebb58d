import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema } from '../../src/config/schema.js';
import { parseConfig } from '../../src/config/load.js';
import { emptyPacket } from '../../src/dhcp/codec.js';
import { DhcpHandler } from '../../src/dhcp/handler.js';
import { MemoryDhcpBackend } from '../../src/dhcp/memory-backend.js';
import { enc, MessageType, Opt } from '../../src/dhcp/options.js';
import { compileSiteOptions } from '../../src/dhcp/site-options.js';
import { macToBuffer } from '../../src/nodes/mac.js';

const hex = (m: Map<number, Buffer>) => Object.fromEntries([...m].map(([k, v]) => [k, v.toString('hex')]));

test('known options are written in their wire format', () => {
  const m = compileSiteOptions({
    'ntp-servers': ['10.0.0.1', '10.0.0.2'],
    'interface-mtu': 9000,
    'time-offset': -3600,
    'domain-search': ['cluster.example.org', 'example.org.'],
    'classless-static-routes': ['10.2.0.0/16 via 10.0.0.254', '0.0.0.0/0 via 10.0.0.1', '192.168.1.128/25 via 10.0.0.9'],
    'root-path': '/srv/nfsroot',
    'default-ip-ttl': '64',
  });
  assert.deepEqual(hex(m), {
    42: '0a0000010a000002',
    26: '2328',
    2: 'fffff1f0',
    // RFC 1035 labels, each name ends with a zero byte (RFC 3397 example format, no compression).
    119: '07636c7573746572076578616d706c65036f726700' + '076578616d706c65036f726700',
    // RFC 3442: width, significant octets, router.
    121: '100a020a0000fe' + '000a000001' + '19c0a801800a000009',
    17: Buffer.from('/srv/nfsroot').toString('hex'),
    23: '40',
  });
  assert.deepEqual([...m.keys()], [42, 26, 2, 119, 121, 17, 23], 'in the order given');
});

test('any code: hex bytes, an IP list or text; a known code keeps its type', () => {
  const m = compileSiteOptions({ '150': ['10.0.0.5'], '224': 'hex:01:02:ff', '225': 'site text', '42': ['10.0.0.7'], '26': 1500 });
  assert.deepEqual(hex(m), { 150: '0a000005', 224: '0102ff', 225: Buffer.from('site text').toString('hex'), 42: '0a000007', 26: '05dc' });
});

test('bad entries are refused with the key and what is expected', () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ 'ntp-servers': ['10.0.0.300'] }, /dhcp\.options\.ntp-servers: "10\.0\.0\.300" is not an IPv4 address$/],
    [{ 'ntp-servers': [] }, /ntp-servers: expected a list of IPv4 addresses/],
    [{ 'interface-mtu': 40 }, /interface-mtu: expected a whole number from 68 to 65535, got 40/],
    [{ 'interface-mtu': 'big' }, /interface-mtu: expected a whole number/],
    [{ 'domain-search': ['bad_name.example'] }, /domain-search: "bad_name\.example" is not a domain name/],
    [{ 'classless-static-routes': ['10.2.0.1/16 via 10.0.0.1'] }, /10\.2\.0\.1 has host bits set for \/16/],
    [{ 'classless-static-routes': ['10.2.0.0/16 10.0.0.1'] }, /is not "NETWORK\/PREFIX via GATEWAY"/],
    [{ 'ntp-server': ['10.0.0.1'] }, /ntp-server: unknown option name; use one of time-offset, .*ntp-servers.*, or a code number \(1-254\)/],
    [{ '3': ['10.0.0.1'] }, /option 3 \(router\) is written by pxeherd from dhcp\.router; set it there/],
    [{ '67': 'other.efi' }, /option 67 \(bootfile-name\) is written by pxeherd from dhcp\.boot_files/],
    [{ '255': 'x' }, /option codes run from 1 to 254/],
    [{ '0': 'x' }, /option codes run from 1 to 254/],
    [{ '200': 7 }, /a bare number is ambiguous .* write hex: bytes/],
    [{ '200': 'hex:0g' }, /"hex:0g" is not hex: followed by pairs of hex digits/],
    [{ '200': 'tab\there' }, /only printable ASCII is allowed/],
    [{ 'root-path': '' }, /root-path: expected a non-empty string/],
    [{ 'ntp-servers': ['10.0.0.1'], '42': ['10.0.0.2'] }, /option 42 is given twice/],
  ];
  for (const [entries, re] of bad) assert.throws(() => compileSiteOptions(entries as never), re, JSON.stringify(entries));
});

test('the configuration refuses a bad entry at load time, naming the key', () => {
  assert.throws(() => parseConfig({ dhcp: { options: { 'interface-mtu': 10 } } }), /configuration: dhcp\.options: interface-mtu: expected a whole number from 68 to 65535/);
  assert.throws(
    () => parseConfig({ dhcp: { mode: 'full', range: ['10.0.0.10', '10.0.0.20'], subnets: [{ network: '10.2.0.0/24', range: ['10.2.0.10', '10.2.0.20'], options: { '6': ['1.1.1.1'] } }] } }),
    /dhcp\.subnets\.0\.options: 6: option 6 \(dns-server\) is written by pxeherd from dhcp\.dns/,
  );
  assert.deepEqual(parseConfig({}).dhcp.options, {});
});

function handler(options: Record<string, unknown>, subnetOptions?: Record<string, unknown>) {
  const cfg = configSchema.parse({
    dhcp: {
      mode: 'full',
      range: ['10.0.0.100', '10.0.0.150'],
      router: '10.0.0.1',
      dns: ['10.0.0.53'],
      options,
      subnets: [{ network: '10.2.0.0/24', range: ['10.2.0.10', '10.2.0.20'], router: '10.2.0.1', ...(subnetOptions ? { options: subnetOptions } : {}) }],
    },
  }).dhcp;
  const h = new DhcpHandler({ config: cfg, serverAddress: '10.0.0.1', httpPort: 8080, backend: new MemoryDhcpBackend() });
  h.load(1_700_000_000_000);
  return h;
}

function discover(h: DhcpHandler, prl?: number[], giaddr = '0.0.0.0') {
  const p = emptyPacket(1);
  p.xid = 7;
  p.giaddr = giaddr;
  macToBuffer('52:54:00:00:00:09').copy(p.chaddr);
  p.options.set(Opt.MessageType, enc.u8(MessageType.Discover));
  if (prl) p.options.set(Opt.ParamRequestList, Buffer.from(prl));
  const out = h.handle(p, { via: 'dhcp', from: { address: giaddr === '0.0.0.0' ? '0.0.0.0' : giaddr, port: giaddr === '0.0.0.0' ? 68 : 67 }, now: 1_700_000_000_000 });
  assert.equal(out.replies.length, 1);
  return out.replies[0]!.packet;
}

test('site options go to clients that request them, in the order requested', () => {
  const h = handler({ 'ntp-servers': ['10.0.0.1'], 'interface-mtu': 9000, 'domain-search': ['c.example'] });
  const offer = discover(h, [1, 42, 3, 26, 6]);
  assert.equal(offer.options.get(42)?.toString('hex'), '0a000001');
  assert.equal(offer.options.get(26)?.toString('hex'), '2328');
  assert.equal(offer.options.has(119), false, 'domain-search was not requested');
  const order = [...offer.options.keys()];
  assert.deepEqual(order.slice(0, 7), [Opt.MessageType, Opt.ServerId, 1, 42, 3, 26, 6], `options in the order asked for: ${order}`);
  // Without a request list a client gets what pxeherd always sends, and no site options.
  const plain = discover(h);
  assert.equal(plain.options.has(42) || plain.options.has(26) || plain.options.has(119), false);
  assert.ok(plain.options.has(Opt.Router));
});

test("a subnet's own options replace the global ones entry by entry for its relayed clients", () => {
  const h = handler({ 'ntp-servers': ['10.0.0.1'], 'interface-mtu': 9000 }, { 'ntp-servers': ['10.2.0.1'] });
  const relayed = discover(h, [42, 26], '10.2.0.1');
  assert.equal(relayed.yiaddr.startsWith('10.2.0.'), true);
  assert.equal(relayed.options.get(42)?.toString('hex'), '0a020001');
  assert.equal(relayed.options.get(26)?.toString('hex'), '2328');
  const local = discover(h, [42]);
  assert.equal(local.options.get(42)?.toString('hex'), '0a000001');
});

test('explain shows domain-search and classless routes decoded', async () => {
  const { formatOption } = await import('../../src/dhcp/options.js');
  const m = compileSiteOptions({ 'domain-search': ['cluster.example.org', 'example.org'], 'classless-static-routes': ['10.2.0.0/16 via 10.0.0.254', '0.0.0.0/0 via 10.0.0.1', '192.168.1.128/25 via 10.0.0.9'] });
  assert.equal(formatOption(119, m.get(119)!), 'cluster.example.org, example.org');
  assert.equal(formatOption(121, m.get(121)!), '10.2.0.0/16 via 10.0.0.254, 0.0.0.0/0 via 10.0.0.1, 192.168.1.128/25 via 10.0.0.9');
  assert.equal(formatOption(121, Buffer.from([33, 1, 2, 3, 4, 5])), '2101020304' + '05', 'malformed: hex');
  assert.equal(formatOption(119, Buffer.from([5, 0x61])), '0561');
});

test('an option pxeherd writes itself is named with the key to use, by name as by code', () => {
  assert.throws(() => compileSiteOptions({ router: ['10.0.0.1'] }), /router: option 3 \(router\) is written by pxeherd from dhcp\.router; set it there/);
  assert.throws(() => compileSiteOptions({ 'dns-server': ['10.0.0.1'] }), /option 6 \(dns-server\) is written by pxeherd from dhcp\.dns/);
});

test('the shipped example configuration (examples/pxeherd.yaml) loads, site options included', async () => {
  const { loadConfig } = await import('../../src/config/load.js');
  const path = await import('node:path');
  const c = loadConfig(path.resolve(import.meta.dirname, '../../examples/pxeherd.yaml'));
  assert.equal(hex(compileSiteOptions(c.dhcp.options))[42], '0a000001');
});

test('a hostile request list (repeats, 0, 255, 53, 82, every code) changes only the order, never the content', () => {
  const h = handler({ 'ntp-servers': ['10.0.0.1'], '224': 'hex:0102' });
  const base = discover(h, [1, 3, 42]);
  const want = new Map([...base.options].map(([k, v]) => [k, v.toString('hex')]));
  for (const prl of [[42, 42, 42, 1, 1], [0, 255, 53, 54, 82, 42, 224], Array.from({ length: 255 }, (_, i) => 255 - i), []]) {
    const p = discover(h, prl);
    const got = new Map([...p.options].map(([k, v]) => [k, v.toString('hex')]));
    for (const [k, v] of want) if (k !== 224 && k !== 42) assert.equal(got.get(k), v, `option ${k} with PRL ${prl.slice(0, 8)}`);
    assert.equal([...p.options.keys()][0], Opt.MessageType, 'message type first');
    assert.equal(new Set(p.options.keys()).size, p.options.size);
    assert.equal(p.options.has(224), prl.includes(224));
    assert.equal(p.options.has(42), prl.includes(42));
  }
});
