/**
 * Inventory logic without sockets: parsing and refusing reports, the facts `hw:` queries see,
 * the diff between two reports, staleness, health parameters, and the store's current/previous
 * versions with the shared query context.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseInventory, hardwareFacts, diffInventory, isStale, checkinInterval, parseHealth, type Inventory } from '../../src/inventory/inventory.js';
import { parseQuery, evalQuery } from '../../src/nodes/query.js';
import { queryContextFor, nodeExtras } from '../../src/inventory/context.js';
import { Store } from '../../src/store/store.js';
import { openDatabase } from '../../src/store/db.js';
import { nodeRecord, type Node } from '../../src/nodes/types.js';

function inv(over: Partial<Inventory> = {}): Inventory {
  return {
    version: 1,
    cpu: { model: 'Xeon', count: 32 },
    memory_kb: 131_000_000,
    memory_phys_bytes: 128 * 1024 ** 3,
    disks: [
      { name: 'sda', size_bytes: 480e9, model: 'SSD', serial: 'S1', rotational: 0, removable: 0 },
      { name: 'sdb', size_bytes: 4e12, model: 'HDD', serial: 'S2', rotational: 1, removable: 0 },
    ],
    nics: [{ name: 'eno1', mac: 'e4:43:4b:00:00:01', driver: 'ixgbe', speed_mbps: 10000, carrier: 1 }],
    dmi: { vendor: 'Dell Inc.', product: 'PowerEdge R740', serial: 'ABC123', uuid: 'u-1' },
    firmware: 'uefi',
    ...over,
  };
}

const node = (mac: string, over: Partial<Node> = {}): Node => nodeRecord({ mac, name: 'n' + mac.slice(-2), group: 'compute', state: 'ready', ...over });

test('a report is refused with a message naming the field: not JSON, not an object, wrong types, bad MAC, unknown firmware', () => {
  const bad = (body: string, re: RegExp) => {
    const r = parseInventory(body);
    assert.equal(r.ok, false, body);
    if (!r.ok) assert.match(r.error, re);
  };
  bad('{"version":1,', /not JSON/);
  bad('[1,2]', /must be a JSON object/);
  bad(JSON.stringify({ ...inv(), memory_kb: 'lots' }), /memory_kb/);
  bad(JSON.stringify({ ...inv(), disks: [{ name: 'sda', size_bytes: -1 }] }), /disks\.0\.size_bytes/);
  bad(JSON.stringify({ ...inv(), nics: [{ name: 'eth0', mac: 'zz' }] }), /nics\.0\.mac: not a MAC address/);
  bad(JSON.stringify({ ...inv(), firmware: 'coreboot' }), /firmware/);
  bad(JSON.stringify({ ...inv(), version: 2 }), /version/);
  const ok = parseInventory(JSON.stringify({ ...inv(), nics: [{ name: 'eth0', mac: 'E4-43-4B-00-00-09', driver: 'e1000' }] }));
  assert.ok(ok.ok);
  if (ok.ok) assert.equal(ok.inventory.nics[0]!.mac, 'e4:43:4b:00:00:09', 'MACs are stored in canonical form');
});

test('hardware facts: memory in GiB from installed memory, disk_gb in decimal GB summed, counts, DMI and firmware', () => {
  const f = hardwareFacts(inv());
  assert.equal(f.mem_gb, 128);
  assert.equal(f.cpus, 32);
  assert.equal(f.disks, 2);
  assert.equal(f.disk_gb, 4480);
  assert.equal(f.nics, 1);
  assert.equal(f.vendor, 'Dell Inc.');
  assert.equal(f.firmware, 'uefi');
  assert.equal(hardwareFacts(inv({ memory_phys_bytes: null, memory_kb: 1024 * 1024 })).mem_gb, 1, 'MemTotal when the memory blocks are unknown');
});

test('hw: queries select on the facts of the context, and a node without a report matches no hw: term', () => {
  const facts: Record<string, ReturnType<typeof hardwareFacts>> = {
    'aa:00:00:00:00:01': hardwareFacts(inv()),
    'aa:00:00:00:00:02': hardwareFacts(inv({ memory_phys_bytes: 32 * 1024 ** 3, disks: [inv().disks[0]!], dmi: { vendor: 'HPE', product: 'DL360', serial: '', uuid: '' }, firmware: 'bios', cpu: { model: 'Epyc', count: 8 } })),
  };
  const nodes = [node('aa:00:00:00:00:01'), node('aa:00:00:00:00:02'), node('aa:00:00:00:00:03')];
  const ctx = { hardware: (mac: string) => facts[mac] };
  const sel = (q: string) => nodes.filter((n) => evalQuery(parseQuery(q), n, ctx)).map((n) => n.mac.slice(-1));
  assert.deepEqual(sel('hw:mem_gb>=64'), ['1']);
  assert.deepEqual(sel('hw:disks>=2'), ['1']);
  assert.deepEqual(sel('hw:vendor,Dell*'), ['1']);
  assert.deepEqual(sel('hw:vendor,hpe'), ['2'], 'globs are case-insensitive');
  assert.deepEqual(sel('hw:cpus<16'), ['2']);
  assert.deepEqual(sel('hw:firmware,uefi'), ['1']);
  assert.deepEqual(sel('hw:nics=1'), ['1', '2']);
  assert.deepEqual(sel('hw:disk_gb>1000'), ['1']);
  assert.deepEqual(sel('not hw:mem_gb'), ['3'], 'hw:KEY tests presence: only the node without a report lacks it');
  assert.deepEqual(sel('hw:mem_gb>=16 and not hw:firmware,uefi'), ['2']);
});

test('diff of two reports: a disk gone, a NIC added, memory and DMI serial changed; link speed and MemTotal drift are not changes', () => {
  const before = inv();
  const after = inv({
    memory_kb: 260_000_000,
    memory_phys_bytes: 256 * 1024 ** 3,
    disks: [before.disks[0]!],
    nics: [{ ...before.nics[0]!, speed_mbps: 1000, carrier: 0 }, { name: 'eno2', mac: 'e4:43:4b:00:00:02', driver: 'ixgbe', speed_mbps: null, carrier: 0 }],
    dmi: { ...before.dmi, serial: 'XYZ999' },
  });
  const d = diffInventory(before, after);
  assert.deepEqual(d.removed.map((r) => [r.kind, r.item.name]), [['disk', 'sdb']]);
  assert.deepEqual(d.added.map((r) => [r.kind, r.item.name]), [['nic', 'eno2']]);
  assert.deepEqual(
    d.changed.map((c) => c.field).sort(),
    ['dmi.serial', 'mem_gb'],
  );
  assert.ok(d.changes.includes('disk sdb (serial S2, 4000 GB) gone'), d.changes.join(' | '));
  assert.ok(d.changes.includes('NIC e4:43:4b:00:00:02 (eno2, ixgbe) added'), d.changes.join(' | '));
  const same = diffInventory(before, inv({ memory_kb: 130_999_000, nics: [{ ...before.nics[0]!, speed_mbps: 100 }] }));
  assert.deepEqual(same.changes, []);
  // Disks are matched by serial: a renamed device (sda <-> sdb after a cable swap) is a change of name, not gone+added.
  const swapped = diffInventory(before, inv({ disks: [{ ...before.disks[0]!, name: 'sdb' }, { ...before.disks[1]!, name: 'sda' }] }));
  assert.deepEqual(swapped.added, []);
  assert.deepEqual(swapped.removed, []);
  assert.equal(swapped.changed.length, 2);
});

test('stale: last contact older than three check-in intervals (attribute checkin_interval, default 300 s); never-seen nodes are not stale', () => {
  const now = 1_000_000_000;
  assert.equal(checkinInterval({}), 300);
  assert.equal(checkinInterval({ checkin_interval: '60' }), 60);
  assert.equal(checkinInterval({ checkin_interval: 'soon' }), 300, 'a malformed attribute falls back to the default');
  assert.equal(isStale(null, {}, now), false);
  assert.equal(isStale(now - 900_000, {}, now), false, 'exactly three intervals is not yet stale');
  assert.equal(isStale(now - 900_001, {}, now), true);
  assert.equal(isStale(now - 3_500, { checkin_interval: '1' }, now), true);
  assert.equal(isStale(now - 2_500, { checkin_interval: '1' }, now), false);
});

test('health parameters: numbers kept, malformed ones named and dropped, none at all is no health', () => {
  assert.deepEqual(parseHealth({ uptime: '3605.27', load: '0.42', memfree_kb: '123456' }), { health: { uptime: 3605, load: 0.42, memfree_kb: 123456 }, invalid: [] });
  assert.deepEqual(parseHealth({ uptime: '12', load: '1;rm', memfree_kb: ['1', '2'] }), { health: { uptime: 12 }, invalid: ['load', 'memfree_kb'] });
  assert.deepEqual(parseHealth({ mac: 'x' }), { health: undefined, invalid: [] });
});

test('the store keeps the current and previous report: first, unchanged (seen moves, no new version), changed (diff); replace carries it, delete removes it', () => {
  const store = new Store(openDatabase(':memory:'));
  try {
    store.nodes.add({ mac: 'aa:00:00:00:00:01', name: 'n01' }, { pattern: 'n##', firstNumber: 0, defaultGroup: '', defaultVnfs: '' });
    const mac = 'aa:00:00:00:00:01';
    const a = store.inventory.save(mac, inv(), 1000);
    assert.equal(a.result, 'first');
    const b = store.inventory.save(mac, inv({ nics: [{ ...inv().nics[0]!, speed_mbps: 1000 }] }), 2000);
    assert.equal(b.result, 'unchanged');
    assert.equal(store.inventory.current(mac)!.version, 1);
    assert.equal(store.inventory.current(mac)!.seen, 2000);
    assert.equal(store.inventory.previous(mac), undefined);
    const c = store.inventory.save(mac, inv({ disks: [inv().disks[0]!] }), 3000);
    assert.equal(c.result, 'changed');
    if (c.result === 'changed') assert.deepEqual(c.diff.changes, ['disk sdb (serial S2, 4000 GB) gone']);
    assert.equal(store.inventory.current(mac)!.version, 2);
    assert.equal(store.inventory.previous(mac)!.version, 1);
    assert.equal(store.inventory.facts(mac)!.disks, 1);
    store.inventory.recordHealth(mac, { uptime: 5, load: 0.1, memfree_kb: 99 }, 3500);
    assert.deepEqual(store.inventory.health(mac), { time: 3500, uptime: 5, load: 0.1, memfree_kb: 99 });
    assert.throws(() => store.inventory.save('aa:00:00:00:00:99', inv()), /FOREIGN KEY/, 'no report without a node');

    store.nodes.replace(mac, 'aa:00:00:00:00:02');
    assert.equal(store.inventory.current('aa:00:00:00:00:02')!.version, 2, 'replace keeps the history: the new machine\'s report shows as a change');
    assert.equal(store.inventory.current(mac), undefined);
    store.nodes.delete(['aa:00:00:00:00:02']);
    assert.equal(store.inventory.current('aa:00:00:00:00:02'), undefined);
    assert.equal(store.inventory.health('aa:00:00:00:00:02'), undefined);
  } finally {
    store.close();
  }
});

test('queryContextFor(store) answers hw: from stored reports and state:stale from last contact and the group\'s checkin_interval', () => {
  const store = new Store(openDatabase(':memory:'));
  try {
    const policy = { pattern: 'n##', firstNumber: 0, defaultGroup: '', defaultVnfs: '' };
    store.nodes.add({ mac: 'aa:00:00:00:00:01', name: 'n01', group: 'fast' }, policy);
    store.nodes.add({ mac: 'aa:00:00:00:00:02', name: 'n02' }, policy);
    store.groups.set('fast', 'checkin_interval', '10');
    let now = 100_000_000;
    store.nodes.touch('aa:00:00:00:00:01', 'ready', undefined, now);
    store.nodes.touch('aa:00:00:00:00:02', 'ready', undefined, now);
    store.inventory.save('aa:00:00:00:00:02', inv());
    const ctx = queryContextFor(store, () => now);
    const sel = (q: string) => store.nodes.all().filter((n) => evalQuery(parseQuery(q), n, ctx)).map((n) => n.name);
    assert.deepEqual(sel('hw:mem_gb>=64'), ['n02']);
    assert.deepEqual(sel('state:stale'), []);
    now += 31_000; // three intervals of the group's 10 s, not of the default 300 s
    assert.deepEqual(sel('state:stale'), ['n01']);
    assert.deepEqual(sel('state:ready and not state:stale'), ['n02']);
    assert.equal(nodeExtras(store, store.nodes.byName('n01')!, { now }).stale, true);
    now += 900_000;
    assert.deepEqual(sel('state:stale'), ['n01', 'n02']);
  } finally {
    store.close();
  }
});
