import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { makeStateDir, ROOT } from '../helpers/cli.js';
import { Store } from '../../src/store/store.js';

function worker(statedir: string, prefix: string, count: number): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/helpers/register-worker.ts'), statedir, prefix, String(count)], { cwd: ROOT });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

test('two processes auto-registering 500 new MACs each at the same time end with 1000 distinct names and no error', async (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  Store.open(s.statedir).close(); // schema first, so both workers race on registration only
  const [a, b] = await Promise.all([worker(s.statedir, '52:54:00:aa', 500), worker(s.statedir, '52:54:00:bb', 500)]);
  assert.equal(a.code, 0, a.err);
  assert.equal(b.code, 0, b.err);
  assert.equal(JSON.parse(a.out).created + JSON.parse(b.out).created, 1000);
  const store = Store.open(s.statedir);
  try {
    const nodes = store.nodes.all();
    assert.equal(nodes.length, 1000);
    assert.equal(new Set(nodes.map((n) => n.name)).size, 1000);
    assert.deepEqual(
      nodes.map((n) => n.name),
      Array.from({ length: 1000 }, (_, i) => 'n' + String(i).padStart(4, '0')),
      'names are the first 1000 of the pattern, no gaps',
    );
    assert.equal(store.integrityCheck(), 'ok');
  } finally {
    store.close();
  }
});

test('registering a known MAC again returns the same node; leases and events persist in one transaction each', (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const store = Store.open(s.statedir);
  const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };
  const a = store.nodes.register('52:54:00:00:00:01', policy, { preferredName: '../evil' });
  assert.equal(a.created, true);
  assert.equal(a.node.name, 'n0000', 'an invalid requested name is ignored');
  const b = store.nodes.register('52-54-00-00-00-01', policy);
  assert.equal(b.created, false);
  assert.equal(b.node.name, 'n0000');
  const c = store.nodes.register('52:54:00:00:00:02', policy, { preferredName: 'login1' });
  assert.equal(c.node.name, 'login1');
  const now = Date.now();
  store.leases.putMany([
    { mac: '52:54:00:00:00:01', ip: '10.0.0.100', expiresAt: now + 1000, hostname: 'n0000', state: 'bound', subnet: '10.0.0.0/24', updatedAt: now },
    { mac: '52:54:00:00:00:02', ip: '10.0.0.101', expiresAt: now + 1000, hostname: '', state: 'offered', subnet: '10.0.0.0/24', updatedAt: now },
  ]);
  // The address moves to another MAC: the old holder's row goes, never two rows for one IP.
  store.leases.putMany([{ mac: '52:54:00:00:00:03', ip: '10.0.0.101', expiresAt: now + 1000, hostname: '', state: 'bound', subnet: '10.0.0.0/24', updatedAt: now }]);
  assert.equal(store.leases.byIp('10.0.0.101')!.mac, '52:54:00:00:00:03');
  assert.equal(store.leases.byMac('52:54:00:00:00:02'), undefined);
  assert.deepEqual(store.leases.active(now).map((l) => l.ip), ['10.0.0.100', '10.0.0.101']);
  store.events.record({ mac: '52:54:00:00:00:01', node: 'n0000', kind: 'dhcp.ack', detail: { ip: '10.0.0.100' } });
  store.events.record({ mac: '52:54:00:00:00:01', node: 'n0000', kind: 'provision.start' });
  store.close();
  const again = Store.open(s.statedir);
  try {
    assert.equal(again.leases.all().length, 2, 'leases survive a reopen');
    const evs = again.events.query({ node: 'n0000', kind: 'dhcp', order: 'asc' });
    assert.deepEqual(evs.map((e) => [e.kind, e.detail]), [['dhcp.ack', { ip: '10.0.0.100' }]]);
    assert.equal(again.events.query({ mac: '52:54:00:00:00:01' }).length, 2);
  } finally {
    again.close();
  }
});

test('registration fills the first gap left by a delete, a rename or an explicit name, and otherwise appends', (t) => {
  const s = makeStateDir();
  t.after(s.cleanup);
  const store = Store.open(s.statedir);
  t.after(() => store.close());
  const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };
  let i = 0;
  const reg = () => store.nodes.register(`52:54:00:10:00:${(i++).toString(16).padStart(2, '0')}`, policy).node.name;
  assert.deepEqual([reg(), reg(), reg(), reg()], ['n0000', 'n0001', 'n0002', 'n0003']);
  store.nodes.delete([store.nodes.byName('n0001')!.mac]);
  assert.equal(reg(), 'n0001', 'a deleted name is reused first');
  assert.equal(reg(), 'n0004');
  store.nodes.add({ mac: '52:54:00:20:00:01', name: 'n0009' }, policy);
  assert.deepEqual([reg(), reg(), reg(), reg(), reg()], ['n0005', 'n0006', 'n0007', 'n0008', 'n0010'], 'an explicit name opens a gap that is filled first');
  store.nodes.set([store.nodes.byName('n0002')!.mac], 'name', 'login1');
  assert.equal(reg(), 'n0002', 'a renamed node frees its number');
  assert.equal(reg(), 'n0011');
  const names = store.nodes.all().map((n) => n.name);
  assert.equal(new Set(names).size, names.length);
});

test('two processes auto-registering the same 300 new MACs at the same time create each node exactly once, names without gaps', async (t) => {
  // Registration reads no MAC before its INSERT (the MAC's conflict is the check): both
  // processes race on every MAC; exactly one of them may report it created.
  const s = makeStateDir();
  t.after(s.cleanup);
  Store.open(s.statedir).close();
  const [a, b] = await Promise.all([worker(s.statedir, '52:54:00:cc', 300), worker(s.statedir, '52:54:00:cc', 300)]);
  assert.equal(a.code, 0, a.err);
  assert.equal(b.code, 0, b.err);
  assert.equal(JSON.parse(a.out).created + JSON.parse(b.out).created, 300);
  const store = Store.open(s.statedir);
  try {
    const nodes = store.nodes.all();
    assert.equal(nodes.length, 300);
    assert.deepEqual(
      nodes.map((n) => n.name),
      Array.from({ length: 300 }, (_, i) => 'n' + String(i).padStart(4, '0')),
    );
    // A known MAC registered again is returned as it is and uses up no name.
    const policy = { pattern: 'n####', firstNumber: 0, defaultGroup: 'cluster', defaultVnfs: '' };
    const again = store.nodes.register('52:54:00:cc:00:05', policy, { preferredName: 'other' });
    assert.deepEqual([again.created, again.node.name], [false, 'n0005']);
    assert.equal(store.nodes.register('52:54:00:cc:09:99', policy).node.name, 'n0300');
  } finally {
    store.close();
  }
});
